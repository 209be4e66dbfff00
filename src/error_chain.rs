//! The one error-chain formatter: an error and its causes (`source()`) on one line, each cause once; and the
//! shared cause types that make that possible without rebuilding text.
//!
//! Used wherever an error is shown to a person: `main`'s last line, `check`'s lines, the log's error fields,
//! the ledger's `error` column. Every error type of this crate keeps its cause as a typed `#[source]` and says
//! only its own context in its message, so the chain reads "context: cause: cause" as it is. Not here:
//! deciding what an error means (each boundary classifies its own).
//!
//! Secrets: an error's text must not hold any. The one cause that could carry one on its own, a `reqwest`
//! error (its message names the request's URL, query included), is kept as a [`Transport`], which drops the
//! URL and shows the failure's kind instead.

use std::error::Error;
use std::fmt;

/// A cause whose type varies (the warehouse boundary wraps SQLite's, BigQuery's and the file system's).
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// `error: cause: cause…`.
pub fn format(e: &(dyn Error + 'static)) -> String {
    with_causes(e.to_string(), e.source())
}

/// `head` followed by `source` and its own causes, as in [`format()`].
///
/// A cause is skipped only when the link just before it already ends with its text (`SQLite error: disk I/O
/// error` over `disk I/O error`): some crates' errors print their cause inside their own message and also
/// return it from `source()` (rusqlite's `SqliteFailure` without a message does). This crate's errors never do
/// (the tests below hold them to it), so nothing else is ever dropped.
pub fn with_causes(head: String, source: Option<&(dyn Error + 'static)>) -> String {
    let mut out = head;
    let mut previous = out.clone();
    let mut source = source;
    while let Some(s) = source {
        let text = s.to_string();
        let repeated = previous == text || previous.ends_with(&format!(": {text}"));
        if !text.is_empty() && !repeated {
            out.push_str(": ");
            out.push_str(&text);
        }
        previous = text;
        source = s.source();
    }
    out
}

/// An error and its causes, formatted by [`format()`] when displayed: for log fields
/// (`tracing::warn!(error = %Chain(&e), …)`).
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

/// A transport failure (no answer: a timeout, a refused or dropped connection) kept as a cause. It shows the
/// failure's kind and the causes below it (the OS's reason), never reqwest's own message, which names the
/// URL; the URL is dropped on construction (`without_url`), so `Debug` cannot show it either.
#[derive(Debug)]
pub struct Transport(reqwest::Error);

impl Transport {
    /// Keeps `e` without its URL.
    pub fn new(e: reqwest::Error) -> Self {
        Transport(e.without_url())
    }

    /// What went wrong, in words that do not depend on the URL.
    pub fn kind(&self) -> &'static str {
        let e = &self.0;
        if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_decode() {
            // A body that is not what was expected: e.g. a gateway's HTML 502/503 page where JSON was due.
            "unreadable response"
        } else if e.is_body() {
            "the connection dropped while reading the response"
        } else if e.is_request() {
            "the request failed (connection dropped?)"
        } else if e.is_builder() {
            "could not build the request"
        } else {
            "transport error"
        }
    }
}

impl From<reqwest::Error> for Transport {
    fn from(e: reqwest::Error) -> Self {
        Transport::new(e)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl Error for Transport {
    /// reqwest's own causes (hyper's, then the OS's): what it would have printed after its URL.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Test helpers: the links of a chain, the check that none repeats another, and a real transport failure.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Every link's own text, in order.
    pub(crate) fn links(e: &(dyn Error + 'static)) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut source = e.source();
        while let Some(s) = source {
            out.push(s.to_string());
            source = s.source();
        }
        out
    }

    /// `e`'s chain as [`format()`] prints it, after checking that no link repeats its cause's text (so the
    /// formatter dropped nothing) and that `secret` shows neither there nor in `Debug`.
    pub(crate) fn chain_without(e: &(dyn Error + 'static), secret: &str) -> String {
        let links = links(e);
        for pair in links.windows(2) {
            assert!(!pair[0].contains(&pair[1]), "{:?} repeats its cause {:?}", pair[0], pair[1]);
        }
        let shown = format(e);
        assert_eq!(shown, links.join(": "), "every link is printed, once");
        assert!(!shown.contains(secret), "the chain shows {secret:?}: {shown}");
        assert!(!format!("{e:?}").contains(secret), "Debug shows {secret:?}: {e:?}");
        shown
    }

    /// A request to `http://127.0.0.1:{a closed port}/{path_and_query}` and the error it failed with
    /// (connection refused: nothing listens there).
    pub(crate) async fn refused_request(path_and_query: &str) -> reqwest::Error {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/{path_and_query}"))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .expect_err("nothing listens on a port just released")
    }
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

    #[tokio::test]
    async fn a_transport_error_shows_its_kind_and_causes_never_its_url() {
        let e = testing::refused_request("crm/v8/users?access_token=s3cr3t").await;
        assert!(e.to_string().contains("s3cr3t"), "reqwest's own message names the URL: {e}");
        let shown = testing::chain_without(&Transport::new(e), "s3cr3t");
        assert!(shown.starts_with("could not connect: "), "{shown}");
        assert!(!shown.contains("127.0.0.1"), "no URL: {shown}");
    }
}
