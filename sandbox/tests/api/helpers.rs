//! Starting a sandbox per test and speaking HTTP to it.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use zoho_sandbox::{Sandbox, SandboxConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN};

/// A running sandbox plus a client for it.
pub struct TestSandbox {
    /// The running sandbox.
    pub sandbox: Sandbox,
    /// Its base URL.
    pub base: String,
    /// A client with a per-request timeout.
    pub http: Client,
}

/// Every request is bounded so a hung sandbox fails a test instead of stalling the suite.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts a sandbox with `config`.
pub async fn spawn(config: SandboxConfig) -> TestSandbox {
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let base = sandbox.base_url();
    let http = Client::builder().timeout(REQUEST_TIMEOUT).build().expect("client builds");
    TestSandbox { sandbox, base, http }
}

/// Starts a sandbox of `deals` deals with default settings.
pub async fn spawn_deals(deals: usize) -> TestSandbox {
    spawn(SandboxConfig { deals, ..SandboxConfig::default() }).await
}

/// Status and JSON body (`Null` when the body is empty, as for 204/304).
pub async fn body(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body reads");
    let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("body is JSON") };
    (status, v)
}

impl TestSandbox {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a form to the token endpoint.
    pub async fn token_form(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/oauth/v2/token"))
            .body(serde_urlencoded_pairs(form))
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await
            .expect("token request");
        body(resp).await
    }

    /// A refresh-token grant with the demo credentials.
    pub async fn refresh(&self) -> (StatusCode, Value) {
        self.token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", DEMO_REFRESH_TOKEN),
        ])
        .await
    }

    /// A fresh access token (asserts the mint succeeded).
    pub async fn token(&self) -> String {
        let (status, v) = self.refresh().await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["access_token"].as_str().expect("access_token").to_string()
    }

    /// A COQL call, unread.
    pub async fn coql_raw(&self, token: &str, query: &str) -> Response {
        self.http
            .post(self.url("/crm/v8/coql"))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .json(&json!({ "select_query": query }))
            .send()
            .await
            .expect("coql request")
    }

    /// A COQL call: status and JSON body.
    pub async fn coql(&self, token: &str, query: &str) -> (StatusCode, Value) {
        body(self.coql_raw(token, query).await).await
    }

    /// An authenticated GET.
    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .send()
            .await
            .expect("get request");
        body(resp).await
    }

    /// An unauthenticated JSON POST (the `/__sandbox/` endpoints).
    pub async fn post_json(&self, path: &str, v: Value) -> (StatusCode, Value) {
        let resp = self.http.post(self.url(path)).json(&v).send().await.expect("post request");
        body(resp).await
    }

    /// Changes fault knobs (asserts success) and returns the knobs in force.
    pub async fn control(&self, v: Value) -> Value {
        let (status, out) = self.post_json("/__sandbox/control", v).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        out
    }

    /// `GET /__sandbox/truth`.
    pub async fn truth(&self) -> Value {
        let resp = self.http.get(self.url("/__sandbox/truth")).send().await.expect("truth");
        body(resp).await.1
    }

    /// `GET /__sandbox/stats`.
    pub async fn stats(&self) -> Value {
        let resp = self.http.get(self.url("/__sandbox/stats")).send().await.expect("stats");
        body(resp).await.1
    }
}

fn serde_urlencoded_pairs(form: &[(&str, &str)]) -> String {
    form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes everything but unreserved characters.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Ids of the truth's deals in a won stage.
pub fn won_ids(truth: &Value) -> Vec<String> {
    let won: Vec<&str> = truth["won_stages"].as_array().expect("won_stages").iter().filter_map(Value::as_str).collect();
    let mut ids: Vec<String> = truth["deals"]
        .as_array()
        .expect("deals")
        .iter()
        .filter(|d| d["Stage"].as_str().is_some_and(|s| won.contains(&s)))
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}
