//! AdmissionReview bytes → decode → the request taken apart into its
//! context and the images to check (with UPDATE's oldObject) → each
//! reference parsed. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = sigil::admission::decode(data) {
        let (_context, images) = sigil::admission::split(req);
        if let Ok(Some(images)) = images {
            for i in images {
                if let Ok(r) = sigil::image::ImageRef::parse(&i.reference) {
                    let _ = r.glob_name();
                }
            }
        }
    }
});
