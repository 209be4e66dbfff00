//! The one error-chain formatter: an error and its causes (`source()`) on one line, each cause once.
//!
//! Used wherever an error is shown to a person: `main`'s last line, `check`'s lines, the log's error fields,
//! and a transport error's description (which starts from its kind, not its URL). Not here: deciding what an
//! error means (each boundary classifies its own) or hiding secrets (an error's text must not hold any).

use std::error::Error;

/// `error: cause: cause…`, skipping a cause whose text the line already holds (wrappers often repeat their
/// cause's message in their own).
pub fn format(e: &(dyn Error + 'static)) -> String {
    with_causes(e.to_string(), e.source())
}

/// `head` followed by `source` and its own causes, each once, as in [`format()`].
pub fn with_causes(head: String, source: Option<&(dyn Error + 'static)>) -> String {
    let mut out = head;
    let mut source = source;
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn chain(messages: &[&'static str]) -> E {
        let mut e: Option<Box<E>> = None;
        for m in messages.iter().rev() {
            e = Some(Box::new(E(m, e)));
        }
        *e.expect("at least one message")
    }

    #[test]
    fn a_chain_prints_each_cause_once_in_order() {
        let e = chain(&["could not read the ledger", "disk I/O error", "permission denied"]);
        assert_eq!(format(&e), "could not read the ledger: disk I/O error: permission denied");
    }

    #[test]
    fn a_cause_whose_message_the_line_already_holds_is_printed_once() {
        let e = chain(&["SQLite error on a.db: disk I/O error", "disk I/O error", "permission denied"]);
        assert_eq!(format(&e), "SQLite error on a.db: disk I/O error: permission denied");
        let e = chain(&["timed out", "timed out"]);
        assert_eq!(format(&e), "timed out");
    }

    #[test]
    fn an_error_without_a_cause_is_its_message() {
        assert_eq!(format(&chain(&["no grant token"])), "no grant token");
    }

    #[test]
    fn causes_can_follow_a_head_other_than_the_errors_own_message() {
        let e =
            chain(&["error sending request for url (https://accounts.zoho.eu/oauth/v2/token)", "connection refused"]);
        assert_eq!(with_causes("could not connect".into(), e.source()), "could not connect: connection refused");
    }
}
