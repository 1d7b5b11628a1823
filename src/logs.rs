//! How text logs look: colour only on a terminal (and never with
//! `NO_COLOR`), and every field value with its control characters escaped,
//! so that nothing a tenant wrote (a pull-secret name, an image reference,
//! a registry's error text) can start a new line or move the cursor in
//! `kubectl logs` or reorder what it shows (the rules are
//! [`crate::text`]'s). JSON logs are escaped by their encoder.

use std::io::IsTerminal as _;

/// Whether stderr gets ANSI colours: a terminal, and `NO_COLOR` unset or
/// empty (<https://no-color.org>).
pub fn colour_stderr() -> bool {
    colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// Whether stdout gets ANSI colours (`sigil check`'s human output).
pub fn colour_stdout() -> bool {
    colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `text` as a text log writes a value: escaped by the rules of
/// [`crate::text`] (controls, line separators, bidirectional controls).
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape(text)
}

/// The text format's field formatter: `message` as is, the rest as
/// `name=value`, each with control characters escaped.
pub fn escaped_fields(
) -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = escape_controls(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nFAKE 2026 ERROR x\r\t\u{1b}[31m"),
            "a\\nFAKE 2026 ERROR x\\r\\t\\u{1b}[31m"
        );
        // Bidirectional controls and line separators too: a terminal
        // would reorder or break what follows them.
        assert_eq!(
            escape_controls("image=\u{202e}lanigiro\u{2028}x"),
            "image=\\u{202e}lanigiro\\u{2028}x"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(!colour(false, None));
        assert!(colour(true, None));
        assert!(colour(true, Some(std::ffi::OsStr::new(""))));
        assert!(!colour(true, Some(std::ffi::OsStr::new("1"))));
    }

    #[test]
    fn text_log_lines_cannot_be_split_by_a_value() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let name = "x\n2026-12-01T00:00:00Z ERROR sigil: forged line";
            let span = tracing::info_span!("review", uid = %name);
            let _g = span.enter();
            tracing::warn!(secret = %name, other = ?name, "pull secret {}", name);
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            text.contains("secret=x\\n2026-12-01T00:00:00Z ERROR"),
            "{text}"
        );
    }
}
