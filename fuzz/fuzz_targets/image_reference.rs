//! Image references: parsing, normalisation and glob matching. Must never
//! panic, and normalising must be idempotent: the canonical name parses to
//! itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (reference, glob) = text.split_once('\n').unwrap_or((text, "**"));
    if let Ok(r) = sigil::image::ImageRef::parse(reference) {
        let name = r.glob_name();
        let again = sigil::image::ImageRef::parse(&name).expect("a canonical name parses");
        assert_eq!(again.glob_name(), name, "normalisation is idempotent");
        if let Ok(g) = sigil::policy::glob::ImageGlob::compile(glob) {
            let _ = g.matches(&r);
        }
    }
});
