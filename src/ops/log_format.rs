//! The text log's fields, with every control character escaped. A user name comes from a
//! client certificate's CN or a TokenReview; written as it is, a newline in it would forge a
//! second log line, and an escape sequence would repaint a terminal. (The JSON format escapes
//! through serde_json already.)

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// `message` as text, the other fields as `name=value`, space-separated, as the default
/// formatter writes them, but with control characters written as escapes (`\n`, `\u{1b}`).
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Escaping {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Escaping<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Escaping<'_> {
    fn field(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.writer.write_char(' ')?;
            }
            self.first = false;
            if field.name() != "message" {
                self.writer.write_str(field.name())?;
                self.writer.write_char('=')?;
            }
            write_escaped(&mut self.writer, value)
        })();
    }
}

impl Visit for Escaping<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, as their Display text.
        let text = format!("{value:?}");
        self.field(field, &text);
    }
}

/// `text` with each control character (C0, DEL, C1) as an escape.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(char::is_control) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_escaped(&mut out, s).expect("write");
        out
    }

    #[test]
    fn control_characters_become_escapes_and_nothing_else_changes() {
        assert_eq!(escaped("alice"), "alice");
        assert_eq!(escaped("évé ☃"), "évé ☃");
        assert_eq!(
            escaped("mallory\n2026-01-01T00:00:00Z INFO allowed user=admin"),
            "mallory\\n2026-01-01T00:00:00Z INFO allowed user=admin"
        );
        assert_eq!(
            escaped("a\r\tb\u{1b}[31mc\u{7f}\u{85}"),
            "a\\r\\tb\\u{1b}[31mc\\u{7f}\\u{85}"
        );
    }

    #[test]
    fn every_field_of_an_event_is_escaped() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = {
            let buffer = buffer.clone();
            move || Sink(buffer.clone())
        };
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(EscapedFields)
                .with_writer(writer)
                .with_ansi(false)
                .without_time(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let user = "eve\nINFO forged";
            tracing::info!(user = %user, path = "/pods\r", "forbidden\u{1b}");
        });
        let text = String::from_utf8(buffer.lock().expect("buffer").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.contains("forbidden\\u{1b} user=eve\\nINFO forged path=/pods\\r"),
            "{text:?}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
