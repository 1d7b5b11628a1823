//! How text that sigil did not write (an image reference, a registry's
//! error, a pull-secret name) is shown wherever a person reads it: text
//! logs, deny messages and warnings, Event notes, and the audit log's JSON.
//! One set of rules, so that no channel is laxer than another:
//!
//! - control characters (C0, DEL, C1), the line and paragraph separators
//!   (U+2028, U+2029) and the bidirectional controls (U+061C, U+200E,
//!   U+200F, U+202A–U+202E, U+2066–U+2069) are written as escapes, so that
//!   nothing a tenant wrote can start a new line, move the cursor or
//!   reorder what an auditor sees in a terminal;
//! - a value quoted in a reason is a short prefix and its length
//!   (`"\u{7f}\u{7f}…(4,000 bytes)"`), never the whole value;
//! - a whole text past its cap is cut on a character boundary and says how
//!   long it was.
//!
//! Pure functions, no I/O; a leaf module.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is written as an escape.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `c` as it is written: itself, or its escape (`\n`, `\r`, `\t`,
/// `\u{7f}`…). Written by hand, not with `format!`: a hostile value is
/// thousands of these.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u{");
            let n = c as u32;
            let digits = (32 - n.leading_zeros()).div_ceil(4).max(1);
            for i in (0..digits).rev() {
                out.push(char::from(HEX[((n >> (4 * i)) & 0xf) as usize]));
            }
            out.push('}');
        }
        c => out.push(c),
    }
}

/// `text` with every character of [`needs_escape`] written as an escape;
/// everything else unchanged (borrowed when nothing needs escaping).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// `n` with thousands separators (`4,000`).
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A value as a reason quotes it: escaped, and when its escaped form is
/// longer than `max` bytes, the prefix that fits followed by
/// `…(N bytes)`, N being the value's own length. The result is at most
/// `max` bytes plus the marker (under 24 bytes).
pub fn excerpt(value: &str, max: usize) -> Cow<'_, str> {
    // Escaped only as far as the excerpt goes: a value of 4,000 bytes
    // costs its first `max`, not all of it.
    if value.len() <= max && !value.chars().any(needs_escape) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(max.min(value.len() * 6) + 24);
    for c in value.chars() {
        let before = out.len();
        push_escaped(&mut out, c);
        if out.len() > max {
            out.truncate(before);
            let _ = write!(out, "…({} bytes)", thousands(value.len()));
            return Cow::Owned(out);
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes on a character boundary, ending in
/// `…(N bytes)` (its length before) when it was cut. `max` must leave room
/// for the marker; the result never exceeds `max`.
pub fn cap(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let marker = format!("…({} bytes)", thousands(text.len()));
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&marker);
    text
}

/// A serialised JSON text with the characters of [`needs_escape`] that
/// JSON leaves as they are (DEL, C1 controls, separators, bidirectional
/// controls) written as `\uXXXX` escapes: the same value for any JSON
/// reader, and nothing that reorders or breaks a line in a terminal.
/// JSON's structure is ASCII, so these can only be inside strings.
pub fn json_safe(json: Vec<u8>) -> Vec<u8> {
    // Only the valid UTF-8 serde_json writes reaches here; anything else
    // is returned as it is.
    let Ok(text) = std::str::from_utf8(&json) else {
        return json;
    };
    if !text.chars().any(|c| needs_escape(c) && c as u32 >= 0x20) {
        return json;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) && c as u32 >= 0x20 {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_bidi_are_escaped() {
        assert_eq!(escape("plain ü"), "plain ü");
        assert_eq!(
            escape("a\nFAKE\r\t\u{1b}[31m\u{7f}\u{9b}"),
            "a\\nFAKE\\r\\t\\u{1b}[31m\\u{7f}\\u{9b}"
        );
        assert_eq!(escape("x\u{2028}y\u{2029}z"), "x\\u{2028}y\\u{2029}z");
        // An auditor's terminal would show "allowed" for "dewolla".
        assert_eq!(
            escape("\u{202e}dewolla\u{202c} \u{2066}\u{2067}\u{2068}\u{2069}\u{200e}\u{200f}\u{61c}"),
            "\\u{202e}dewolla\\u{202c} \\u{2066}\\u{2067}\\u{2068}\\u{2069}\\u{200e}\\u{200f}\\u{61c}"
        );
    }

    #[test]
    fn an_excerpt_is_short_escaped_and_says_how_long_the_value_was() {
        assert_eq!(excerpt("short", 64), "short");
        let long = "\u{7f}".repeat(4_000);
        let e = excerpt(&long, 64);
        assert!(e.starts_with("\\u{7f}\\u{7f}"), "{e}");
        assert!(e.ends_with("…(4,000 bytes)"), "{e}");
        assert!(e.len() <= 64 + 24, "{}", e.len());
        // A cut never splits an escape.
        assert_eq!(e.matches("\\u{7f}").count(), 64 / 6);
        let wide = "é".repeat(100);
        let e = excerpt(&wide, 11);
        assert_eq!(e, "ééééé…(200 bytes)");
    }

    #[test]
    fn cap_cuts_on_a_char_boundary_within_the_limit() {
        assert_eq!(cap("short".into(), 100), "short");
        let cut = cap("é".repeat(1_000), 100);
        assert!(cut.len() <= 100, "{}", cut.len());
        assert!(cut.ends_with("…(2,000 bytes)"), "{cut}");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn json_keeps_its_value_and_loses_what_a_terminal_would_obey() {
        let value = "a\u{7f}b\u{202e}c\u{2028}d\u{9b}e\n";
        let json = serde_json::to_vec(&serde_json::json!({ "v": value })).unwrap();
        let safe = json_safe(json);
        let text = std::str::from_utf8(&safe).unwrap();
        assert!(text.is_ascii(), "{text}");
        assert_eq!(text, r#"{"v":"a\u007fb\u202ec\u2028d\u009be\n"}"#);
        let back: serde_json::Value = serde_json::from_slice(&safe).unwrap();
        assert_eq!(back["v"], value);
        // Nothing to do: the same bytes.
        let plain = br#"{"v":"plain"}"#.to_vec();
        assert_eq!(json_safe(plain.clone()), plain);
    }
}
