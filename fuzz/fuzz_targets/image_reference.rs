//! Image references: parsing, normalisation and glob matching. Must never
//! panic; the canonical registry host is a fixed point, and a canonical
//! name whose host is unambiguous (has a `.` or `:`, or is `localhost`)
//! parses back to itself. (A first component with capitals and no `.`/`:`
//! is a host by Docker's rules, e.g. `docyHOSa/foo`; lowercased it reads as
//! a Docker Hub path, so that case is not re-parsed.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use sigil::image::{canonical_registry, ImageRef};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (reference, glob) = text.split_once('\n').unwrap_or((text, "**"));
    if let Ok(r) = ImageRef::parse(reference) {
        assert_eq!(canonical_registry(&r.registry), r.registry);
        let name = r.glob_name();
        assert!(name.starts_with(&format!("{}/", r.registry)), "{name}");
        if r.registry.contains(['.', ':']) || r.registry == "localhost" {
            let again = ImageRef::parse(&name).expect("a canonical name parses");
            assert_eq!(again.glob_name(), name, "normalisation is idempotent");
        }
        if let Ok(g) = sigil::policy::glob::ImageGlob::compile(glob) {
            let _ = g.matches(&r);
        }
    }
});
