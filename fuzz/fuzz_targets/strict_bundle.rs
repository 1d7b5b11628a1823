//! The strict reading of Sigstore bundles (`verify::strict_bundle`): the
//! protobuf-JSON model, the duplicate-key walk, the C2SP signed-note
//! parser, and the trust-root checks of whatever parses. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;
use common::trust;
use sigil::verify::strict_bundle::{check_against, read, unique_keys, SignedNote};

fuzz_target!(|data: &[u8]| {
    let _ = unique_keys(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(note) = SignedNote::parse(text) {
            let _ = note.checkpoint();
            for log in &trust().facts.logs {
                let _ = note.verify_by(log);
            }
        }
    }
    if let Ok(strict) = read(data) {
        let _ = check_against(&strict.facts, &trust().facts);
    }
});
