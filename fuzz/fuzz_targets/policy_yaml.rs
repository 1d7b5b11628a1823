//! ClusterImagePolicy / TrustRoot YAML → parse → validate and compile.
//! Must never panic; an invalid policy is an error naming a field.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(defs) = sigil::policy::files::parse_documents(text) {
        let set = sigil::policy::PolicySet::new(
            defs.iter().map(sigil::policy::store::load).collect(),
        );
        if let Ok(r) = sigil::image::ImageRef::parse("reg.example/team/app:v1") {
            let _ = set.matching(&r);
        }
    }
});
