//! C2SP signed notes (the checkpoints of transparency logs), read with
//! golang.org/x/mod/sumdb/note's rules, and verified by one log's key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::model::hash;
use crate::model::keys::{HashAlgorithm, VerificationKey};
use crate::trust::KnownLog;

/// sigstore-go's cap on a signed note's signature lines.
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// A C2SP signed note, parsed with golang.org/x/mod/sumdb/note's rules.
#[derive(Debug)]
pub struct SignedNote<'a> {
    /// The signed text, ending in its newline.
    text: &'a str,
    /// (name, key hint, signature).
    signatures: Vec<(&'a str, [u8; 4], Vec<u8>)>,
}

impl<'a> SignedNote<'a> {
    /// Parses `note`; `Err` names the rule it breaks.
    pub fn parse(note: &'a str) -> Result<Self, String> {
        let bad = |why: &str| format!("the checkpoint is not a well-formed signed note: {why}");
        if let Some(c) = note.chars().find(|c| (*c as u32) < 0x20 && *c != '\n') {
            return Err(bad(&format!("it holds the control character {:?}", c)));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(bad("the signatures do not end with a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(bad(&format!(
                    "more than {MAX_NOTE_SIGNATURES} signature lines"
                )));
            }
            let rest = line
                .strip_prefix("— ")
                .ok_or_else(|| bad("a signature line does not start with \"— \""))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line has no signature"))?;
            if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
                return Err(bad(&format!("the key name {name:?} is not valid")));
            }
            let sig = B64
                .decode(b64)
                .map_err(|_| bad("a signature is not standard base64"))?;
            if sig.len() < 5 {
                return Err(bad("a signature is shorter than 5 bytes"));
            }
            let hint = [sig[0], sig[1], sig[2], sig[3]];
            signatures.push((name, hint, sig[4..].to_vec()));
        }
        Ok(SignedNote { text, signatures })
    }

    /// Every line by `log`'s key (its hint and name) verifies, and at least
    /// one does; lines by other keys (witnesses) are left alone.
    pub fn verify_by(&self, log: &KnownLog) -> Result<(), String> {
        let hint = log.key_id.get(..4).unwrap_or_default();
        let key = VerificationKey::from_spki_der(&log.key_der, HashAlgorithm::Sha256)
            .map_err(|e| format!("the log's key is unusable: {e}"))?;
        let mut verified = 0;
        for (name, h, sig) in &self.signatures {
            if h.as_slice() != hint {
                continue;
            }
            if *name != log.name {
                return Err(format!(
                    "the checkpoint is signed by the log's key under the name {name:?}, not {:?}",
                    log.name
                ));
            }
            if !key.verify(self.text.as_bytes(), sig) {
                return Err("a checkpoint signature by the log's key does not verify".into());
            }
            verified += 1;
        }
        if verified == 0 {
            return Err(format!(
                "the checkpoint carries no signature by the log {:?}",
                log.name
            ));
        }
        Ok(())
    }

    /// The checkpoint body: origin, tree size, root hash (C2SP
    /// tlog-checkpoint), then optional extension lines.
    pub fn checkpoint(&self) -> Result<(&'a str, u64, Vec<u8>), String> {
        let bad = |why: &str| format!("the checkpoint body is malformed: {why}");
        let mut lines = self.text[..self.text.len() - 1].split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin"))?;
        let size = lines.next().ok_or_else(|| bad("no tree size"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(&format!("tree size {size:?}")));
        }
        let size: u64 = size.parse().map_err(|_| bad("tree size out of range"))?;
        let root = lines.next().ok_or_else(|| bad("no root hash"))?;
        let root = hash("the checkpoint's root hash", root, 32)?;
        if lines.any(str::is_empty) {
            return Err(bad("an empty extension line"));
        }
        Ok((origin, size, root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_notes_are_read_as_c2sp_says() {
        let good = "log.example\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— log.example AAAAAAAA\n";
        let note = SignedNote::parse(good).unwrap();
        assert_eq!(note.checkpoint().unwrap().1, 1);
        for (bad, says) in [
            (good.trim_end_matches('\n'), "do not end with a newline"),
            (&good.replace('\n', "\r\n") as &str, "control character"),
            (&good.replace("— log", "—\tlog"), "control character"),
            (&good.replace("— log", "—  log"), "key name"),
            (&good.replace("— log", " — log"), "does not start with"),
            (
                &good.replace("AAAAAAAA\n", "AAAAAAAA extra\n"),
                "not standard base64",
            ),
            (&good.replace("— log.example", "— log+example"), "key name"),
        ] {
            let e = SignedNote::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let many = format!(
            "{}{}",
            good,
            "— witness.example AAAAAAAA\n".repeat(MAX_NOTE_SIGNATURES)
        );
        assert!(SignedNote::parse(&many)
            .unwrap_err()
            .contains("more than 100"));
        // A section after the signatures: not a signature line, or (a
        // whole second note) a body with a blank line in it.
        let extra = format!("{good}\nextra\n");
        assert!(SignedNote::parse(&extra).is_err());
        let twice = format!("{good}\n{good}");
        assert!(SignedNote::parse(&twice).unwrap().checkpoint().is_err());
        // The body: no leading zero in the size, a 32-byte root.
        let zero = good.replace("\n1\n", "\n01\n");
        assert!(SignedNote::parse(&zero).unwrap().checkpoint().is_err());
        let hex = good.replace(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            &"ab".repeat(32),
        );
        assert!(SignedNote::parse(&hex).unwrap().checkpoint().is_err());
    }
}
