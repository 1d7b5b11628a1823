//! AdmissionReview bytes → decode → the images to check (with UPDATE's
//! oldObject) → each reference parsed. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = sigil::admission::decode(data) {
        let _ = sigil::admission::context(&req);
        let _ = sigil::admission::with_pull_secrets(sigil::admission::context(&req), &req);
        if let Ok(Some(images)) = sigil::admission::images_to_check(&req) {
            for i in images {
                if let Ok(r) = sigil::image::ImageRef::parse(&i.reference) {
                    let _ = r.glob_name();
                }
            }
        }
    }
});
