//! User text in log events: names and error messages are recorded as values that cannot break
//! out of their field. A name built from input may hold a line break; written raw into a log
//! line it would start a line of its own that looks like any other event.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

/// `text` with its control characters (line breaks, escape sequences) and Unicode line and
/// paragraph separators written as escapes (`\n`, `\u{1b}`); borrowed when there are none.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An error's causes, one per line and each escaped, for a span's `exception.stacktrace` (the
/// place `tracing-opentelemetry` puts an error's chain: a Rust error has no stack to give).
/// A source that only repeats the message above it (an [`Error::Failed`](crate::Error) shows
/// its inner error's message) is left out; `None` when nothing is left.
pub(crate) fn causes(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut above = error.to_string();
    let mut next = error.source();
    let mut lines = Vec::new();
    while let Some(cause) = next {
        let message = cause.to_string();
        if message != above {
            lines.push(escape_controls(&message).into_owned());
        }
        above = message;
        next = cause.source();
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// An error as a log event records it: its message and every source's message, each with its
/// control characters escaped, kept as a chain of sources so that `tracing` subscribers (and
/// `tracing-opentelemetry`'s exception fields) still see the whole chain.
///
/// Built only when an event is enabled: `tracing` evaluates a field's value only then.
#[derive(Debug)]
pub(crate) struct LoggedError {
    message: String,
    source: Option<Box<LoggedError>>,
}

impl LoggedError {
    /// The escaped copy of `error` and its sources.
    pub(crate) fn of(error: &(dyn StdError + 'static)) -> LoggedError {
        let mut messages = Vec::new();
        let mut next = Some(error);
        while let Some(error) = next {
            messages.push(escape_controls(&error.to_string()).into_owned());
            next = error.source();
        }
        let mut chain: Option<Box<LoggedError>> = None;
        while let Some(message) = messages.pop() {
            chain = Some(Box::new(LoggedError {
                message,
                source: chain,
            }));
        }
        chain.map_or_else(
            || LoggedError {
                message: String::new(),
                source: None,
            },
            |top| *top,
        )
    }

    /// The value for an event's `error` field: an error, so subscribers see its sources.
    pub(crate) fn field(&self) -> &(dyn StdError + 'static) {
        self
    }
}

impl fmt::Display for LoggedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for LoggedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer\nline")
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape_controls("plain text"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        assert_eq!(escape_controls("x\u{2028}y"), "x\\u{2028}y");
    }

    #[test]
    fn the_source_chain_is_kept_and_escaped() {
        let error = Outer(std::io::Error::other("inner\rtext"));
        let logged = LoggedError::of(&error);
        assert_eq!(logged.to_string(), "outer\\nline");
        let source = logged.field().source().expect("a source");
        assert_eq!(source.to_string(), "inner\\rtext");
        assert!(source.source().is_none());
    }
}
