//! Credentials and a network that cannot be trusted: each test speaks real HTTP to a local server (the Zoho
//! sandbox, or a one-purpose server started here) and runs the real binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{RunOutput, TestApp};

/// A throwaway RSA key made for these tests only (`openssl genpkey -algorithm RSA`). It signs nothing but the
/// JWT a test's own local token endpoint receives; it is not, and never was, a key of any real account.
const THROWAWAY_TEST_ONLY_RSA_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC4RH4i10L8u/O5
orbZiypX9bNGhgOnoKiK8OM2KOdGaw908I3/IJqvhPl12LEjaCENXbonSWyBl94a
WMZXc5fucvrn5kk+4V/9YDYTigXgrK8LwuqbBrISRozW03bKMyLbi8A6igrfeIJJ
xlUzvv3rACY1nC8GD2QcKjWBHUFM6vzmZtmbaVcq0gxcZ0gZOCZnukA42FOpY8sb
GgpDamxlDbdUxoCN5kufKQ0neNBKgJAm6hcNCEBfCK+hy6X7tGdoyzE1IQh+J76F
uYOpeKVNhTTfnLLGD9ufrLZ5y5WOjWi2WyUGRfgMW62pN9rP5vfkTgp7xmEO8MTm
QRoCE6/FAgMBAAECggEAHBHI8ic+6894xNg5yOFHab9CmDVddKlHS2T/A5bPBj3U
TLDBPLI7hg24T4CbGUTpNgdHTmlDp2kaOwK3cgZoiDkJKg69LSA5VlhT3H2bwBom
DyFZyhRGx3xqQ2ZSk+Iexvleprw1BE4v8KuO+pM3TFdJOsToL+Dj09uFK34onp3y
ALiXrRq4TEMNW43Oo/kYvI6ycHeqQ1n2hdoGdzUF4rTPMG9CYHr/z0RTICktD44f
9Bfy/AGS5Dsap9ZBN26F9dri8Z9CQ6r8Yxxdh9avflL742Ci954sM40Yd/crROwm
Odyr9kH/P9Z452yIjGhSU3fpKfgIdvtE/e2duR472QKBgQDhr68tRMGyOMYGujHf
iOAmZqbc+KXN1nq/oSt/yzN9NSUXcwqU//5r6XY4/YdK4tkh4xBElr1eqOQw4zaT
CwElc+5wpDizbkUqfrJndKGpdx2bgVZoJiM31a6Ti48pi/Lt0CWa9LLZVcuIQ+1B
j2VWFWGC1L3OgD/GBILdQpvb3QKBgQDRBJvT3K/TsWyVeZySTAZcPOpOyjYh6yMa
i9k8fWUOpSmZnLruaezrB9yNd3KsLXI4rA2yIKF3vZeJ6DWkckY6AP7Pq2XeySsQ
IwlF/IJuL4O3sdGU4vbbU3APqIqWo6Ss/hKRHaj0a1i7W7pqWj+ysxa/Y/jciXRH
vBpXyEv5CQKBgQC7dVYoX8gT5Rx3UglDB0pIG1PWj6IJC3IB4jljeMFX6uDYTXIo
uUn3EIBmbhAGn86DWzuT/TFmgxqnkNMv6CAXn+gaIA4I3DsPRRWi4Tm2rX4mQJQp
BiSSqCbN30oW1GwAJLhXsZEs/RqGIQXdQuKFUlUgetz9vYE7VVvttPoI8QKBgHjq
mp8YpxrnJDLgtIQpuPA5SS8laeV7WsZrqtOEkybCw2sbMUTlQGrDFIM+W7dhXxeL
6SxoFiDoLDdaf1XPyfKaSs6mj/svE1t1eVLkfivyDtgA5YalOjutbEGStgHpT0XI
gcMzjl8/johsy03lQb5GPl2gHwKt/ffVyMOJmvHJAoGARKTayRfWPrbLA5A6GPM9
PXed+UNiO7S/8C6jGK5RgRHivP4xWcjJy+pp7epQwnegewQZQQeK/Ayy/dCQGdkX
TK8gW84lbUhxwAy27FgZMKHPRH3Gw+v8idypck+HJ3zIFOIc0sKXGubTijUh59wt
ICrIRTGt3m1xrNB8fKG4ZVo=
-----END PRIVATE KEY-----
";

/// One request a [`LocalServer`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a [`LocalServer`] answers.
pub enum Reply {
    /// A status, extra headers and a body (sent with its `Content-Length`).
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// HTTP 200 with a generated body of `bytes` bytes, streamed without a `Content-Length` (the end of the
    /// body is the end of the connection), so the client cannot refuse it up front.
    Stream { bytes: u64 },
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
}

type Responder = dyn Fn(&Received) -> Reply + Send + Sync;

/// A minimal HTTP/1.1 server on a free loopback port: one request per connection, answered by `respond`.
/// Every request is recorded. The server stops when this handle drops.
pub struct LocalServer {
    pub base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalServer {
    pub async fn start(respond: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> LocalServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let log = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (respond, log) = (Arc::clone(&respond), Arc::clone(&log));
                tokio::spawn(async move {
                    let _ = serve_one(stream, respond, log).await;
                });
            }
        });
        LocalServer { base_url, received, task }
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    respond: Arc<Responder>,
    log: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = Received {
        path: head.split_whitespace().nth(1).unwrap_or_default().to_owned(),
        head: head.clone(),
        body: buf[head_end..].to_vec(),
    };
    log.lock().expect("lock").push(request.clone());
    match respond(&request) {
        Reply::Full { status, headers, body } => {
            let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            stream.write_all(out.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        Reply::Stream { bytes } => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").await?;
            let block = vec![b' '; 1 << 20];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                // The client hanging up mid-body ends the loop with an error: that is the point.
                stream.write_all(&block[..n]).await?;
                left -= n as u64;
            }
        }
    }
    stream.shutdown().await
}

/// `app`'s environment with `pairs` set (replacing) and `remove` unset.
fn env_with(app: &TestApp, pairs: &[(&str, &str)], remove: &[&str]) -> Vec<(String, String)> {
    let mut env = app.env();
    env.retain(|(k, _)| !remove.contains(&k.as_str()) && !pairs.iter().any(|(p, _)| p == k));
    env.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

#[tokio::test]
async fn no_google_credential_appears_in_any_log_line_at_trace_level_on_the_bigquery_path() {
    let app = TestApp::with_deals(50).await;
    let google_token = "ya29.throwaway-google-access-token-5f3a9c";
    let token_endpoint = LocalServer::start(move |_| {
        Reply::json(200, json!({"access_token": google_token, "expires_in": 3599, "token_type": "Bearer"}))
    })
    .await;
    let key_file = app.dir.path().join("service-account.json");
    let key = json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "throwaway-test-key",
        "private_key": THROWAWAY_TEST_ONLY_RSA_KEY,
        "client_email": "zoho-deals-sync@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "auth_uri": format!("{}/auth", token_endpoint.base_url),
        "token_uri": format!("{}/token", token_endpoint.base_url),
    });
    std::fs::write(&key_file, key.to_string()).expect("write the key file");
    let key_path = key_file.display().to_string();
    let home = app.dir.path().display().to_string();
    let env = env_with(
        &app,
        &[
            ("WAREHOUSE", "bigquery"),
            ("BQ_PROJECT", "test-project"),
            ("GOOGLE_APPLICATION_CREDENTIALS", &key_path),
            ("HOME", &home),
            ("RUST_LOG", "trace"),
            // BigQuery itself is out of reach here: the run fails at the warehouse, after using the token.
            ("ZOHO_RETRY_BUDGET", "2s"),
        ],
        &[],
    );
    let out = app.run_with_env(&["check"], &env).await;

    let minted = token_endpoint.received();
    let assertion = minted
        .iter()
        .find_map(|r| r.text().split('&').find_map(|kv| kv.strip_prefix("assertion=").map(str::to_owned)))
        .unwrap_or_else(|| panic!("the job asked the local token endpoint for a Google token: {}", out.all()));
    assert!(out.stderr.contains(r#""severity":"DEBUG""#), "debug logging is on: {}", out.all());
    let all = out.all();
    // The JWT's signature alone is a credential too; and any whole line of the private key's body.
    let signature = assertion.rsplit('.').next().expect("a JWT").to_owned();
    assert!(signature.len() > 100, "{assertion}");
    for secret in [google_token, assertion.as_str(), signature.as_str()] {
        assert!(!all.contains(secret), "{secret} appears in the output");
    }
    for line in THROWAWAY_TEST_ONLY_RSA_KEY.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!all.contains(line), "a line of the private key appears in the output");
        assert!(!all.contains(&line.replace('/', "\\/")), "a line of the private key appears in the output");
    }
    assert!(!all.contains(zoho_sandbox::DEMO_CLIENT_SECRET) && !all.contains(zoho_sandbox::DEMO_REFRESH_TOKEN));
}

/// Runs the binary with `env` and `stdin` as its standard input.
async fn run_with_stdin(args: &[&str], env: &[(String, String)], stdin: &str) -> RunOutput {
    crate::helpers::run_binary_with_stdin(args, env, Some(stdin)).await
}

/// A token response as Zoho's accounts server sends it, naming `api_domain`.
fn token_answer(api_domain: &str) -> Reply {
    Reply::json(
        200,
        json!({"access_token": "1000.local.access-token-7d1e", "api_domain": api_domain, "token_type": "Bearer", "expires_in": 3600}),
    )
}

#[tokio::test]
async fn a_token_endpoint_redirecting_elsewhere_gets_no_secret_resent_and_the_run_names_the_host() {
    let app = TestApp::with_deals(10).await;
    let elsewhere = LocalServer::start(|_| token_answer("http://127.0.0.1:9")).await;
    let target = format!("{}/oauth/v2/token", elsewhere.base_url);
    let accounts = LocalServer::start(move |_| Reply::Full {
        status: 307,
        headers: vec![("Location".into(), target.clone())],
        body: Vec::new(),
    })
    .await;
    let out = app.run_with_env(&["sync"], &env_with(&app, &[("ZOHO_ACCOUNTS_URL", &accounts.base_url)], &[])).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let host = accounts.base_url.trim_start_matches("http://");
    assert!(out.stderr.contains(host) && out.stderr.contains("redirect"), "names the host: {}", out.stderr);
    assert!(accounts.received()[0].text().contains("client_secret="), "the first host was asked");
    assert!(elsewhere.received().is_empty(), "the redirect target saw a request: {:?}", elsewhere.received());
}

#[tokio::test]
async fn a_crm_endpoint_redirecting_elsewhere_never_sees_the_access_token_go_there() {
    let app = TestApp::with_deals(10).await;
    let elsewhere = LocalServer::start(|_| Reply::json(200, json!({}))).await;
    let target = elsewhere.base_url.clone();
    // One local server plays Zoho: it mints a token for itself and redirects every CRM call.
    let zoho = LocalServer::start(move |r| {
        if r.path.starts_with("/oauth/v2/token") {
            let own = r.head.lines().find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")));
            token_answer(&format!("http://{}", own.unwrap_or("127.0.0.1").trim()))
        } else {
            Reply::Full { status: 302, headers: vec![("Location".into(), format!("{target}{}", r.path))], body: vec![] }
        }
    })
    .await;
    let out = app.run_with_env(&["sync"], &env_with(&app, &[("ZOHO_ACCOUNTS_URL", &zoho.base_url)], &[])).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("302") && out.stderr.contains("no redirect"), "{}", out.stderr);
    assert!(zoho.received().iter().any(|r| r.path.starts_with("/crm/")), "the CRM call was made");
    assert!(elsewhere.received().is_empty(), "the redirect target saw a request");
}

#[tokio::test]
async fn a_token_response_naming_a_plain_http_or_foreign_api_domain_is_refused() {
    let app = TestApp::with_deals(10).await;
    for (api_domain, why) in [
        ("http://www.zohoapis.com", "not https"),
        ("https://crm.attacker.example", "not one of Zoho's API hosts"),
        ("https://www.zohoapis.com.attacker.example", "not one of Zoho's API hosts"),
    ] {
        let accounts = LocalServer::start(move |_| token_answer(api_domain)).await;
        let out = app.run_with_env(&["sync"], &env_with(&app, &[("ZOHO_ACCOUNTS_URL", &accounts.base_url)], &[])).await;
        assert_eq!(out.code, 3, "{api_domain}: {}", out.all());
        for needle in [api_domain, why, "ZOHO_API_DOMAIN"] {
            assert!(out.stderr.contains(needle), "{api_domain}: {needle} missing from {}", out.stderr);
        }
        assert!(!out.all().contains("1000.local.access-token-7d1e"), "the access token is never printed");
    }
}

#[tokio::test]
async fn plain_http_zoho_urls_outside_loopback_exit_2_naming_the_variable() {
    let app = TestApp::with_deals(10).await;
    for (var, value) in
        [("ZOHO_ACCOUNTS_URL", "http://accounts.zoho.eu"), ("ZOHO_API_DOMAIN", "http://www.zohoapis.eu")]
    {
        let out = app.run_with_env(&["sync"], &env_with(&app, &[(var, value)], &[])).await;
        assert_eq!(out.code, 2, "{var}: {}", out.all());
        assert!(out.stderr.contains(var) && out.stderr.contains("https"), "{}", out.stderr);
    }
}

/// The peak resident memory (`VmHWM`) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[tokio::test]
async fn a_one_gibibyte_answer_ends_in_a_clear_error_with_memory_bounded() {
    let app = TestApp::with_deals(10).await;
    let zoho = LocalServer::start(|r| {
        if r.path.starts_with("/oauth/v2/token") {
            let own = r.head.lines().find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")));
            token_answer(&format!("http://{}", own.unwrap_or("127.0.0.1").trim()))
        } else {
            Reply::Stream { bytes: 1 << 30 }
        }
    })
    .await;
    let env = env_with(&app, &[("ZOHO_ACCOUNTS_URL", &zoho.base_url)], &[]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoho-deals-sync"))
        .arg("sync")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let pid = child.id().expect("a pid");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    // Sample the child's peak RSS until it exits (VmHWM is a high-water mark: the last sample is the peak).
    let mut peak = 0;
    let status = tokio::time::timeout(crate::helpers::RUN_TIMEOUT, async {
        loop {
            if let Some(kib) = peak_rss_kib(pid) {
                peak = peak.max(kib);
            }
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run ends within RUN_TIMEOUT");
    let stderr = reader.await.expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("larger than 64 MiB"), "a clear error: {stderr}");
    assert!(peak > 0, "the child's memory was sampled");
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB stayed under 256 MiB");
}

#[tokio::test]
async fn a_remote_emulator_host_is_refused_without_the_opt_in_and_a_local_one_is_announced_at_warn() {
    let app = TestApp::with_deals(10).await;
    let bq = [("WAREHOUSE", "bigquery"), ("BQ_PROJECT", "test-project")];
    let remote = env_with(&app, &[bq[0], bq[1], ("BIGQUERY_EMULATOR_HOST", "bq.example.com:9050")], &[]);
    let out = app.run_with_env(&["sync"], &remote).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("BIGQUERY_EMULATOR_HOST") && out.stderr.contains("BIGQUERY_EMULATOR_ALLOW_REMOTE"));

    // A loopback emulator (nothing listens on this port: the run then fails at the warehouse) is said loudly.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr");
    let host = unused.to_string();
    let local = env_with(&app, &[bq[0], bq[1], ("BIGQUERY_EMULATOR_HOST", &host)], &[]);
    let out = app.run_with_env(&["check"], &local).await;
    let warn = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("BIGQUERY_EMULATOR_HOST")))
        .unwrap_or_else(|| panic!("no line about the emulator: {}", out.stderr));
    assert_eq!(warn["severity"], "WARNING", "{warn}");
    assert_eq!(warn["emulator_host"], host.as_str(), "{warn}");
}

#[tokio::test]
async fn exchange_grant_reads_the_grant_from_stdin_or_zoho_grant_token_and_prints_only_the_refresh_token() {
    let app = TestApp::with_deals(10).await;
    let env = env_with(&app, &[], &["ZOHO_REFRESH_TOKEN"]);
    let out = run_with_stdin(&["exchange-grant", "-"], &env, &format!("{}\n", zoho_sandbox::DEMO_GRANT_CODE)).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let refresh = out.stdout.trim().to_owned();
    assert!(!refresh.is_empty() && out.stdout.lines().count() == 1, "{}", out.stdout);
    assert!(!out.stderr.contains(&refresh), "the refresh token is on stdout only");
    // The refresh token works.
    let out = app.run_with_env(&["check"], &env_with(&app, &[("ZOHO_REFRESH_TOKEN", &refresh)], &[])).await;
    assert_eq!(out.code, 0, "{}", out.all());

    // ZOHO_GRANT_TOKEN: the grant was single use, so Zoho's refusal (exit 3) proves it was read and sent.
    let env = env_with(&app, &[("ZOHO_GRANT_TOKEN", zoho_sandbox::DEMO_GRANT_CODE)], &["ZOHO_REFRESH_TOKEN"]);
    let out = run_with_stdin(&["exchange-grant"], &env, "").await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("grant"), "{}", out.stderr);
    // Nothing at all: exit 2, saying where a grant comes from.
    let out = run_with_stdin(&["exchange-grant", "-"], &env_with(&app, &[], &["ZOHO_REFRESH_TOKEN"]), "").await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("ZOHO_GRANT_TOKEN") && out.stderr.contains("stdin"), "{}", out.stderr);
}

#[tokio::test]
async fn the_sqlite_file_and_its_wal_are_created_0600_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::with_deals(20).await;
    // Through a shell, so the run's umask is the permissive 022 whatever this test process has.
    let mut env = app.env();
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    let script = format!("umask 022 && exec '{}' sync", env!("CARGO_BIN_EXE_zoho-deals-sync"));
    let out = tokio::time::timeout(
        crate::helpers::RUN_TIMEOUT,
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the run ends within RUN_TIMEOUT")
    .expect("the run's output");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("the file exists").permissions().mode() & 0o777;
    assert_eq!(mode(&app.db), 0o600, "the database file");
    let wal = app.db.with_file_name(format!("{}-wal", app.db.file_name().expect("name").to_string_lossy()));
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "the WAL file");
    }
}

/// A running `authorize`: the consent URL it printed, and the process.
struct Authorizing {
    child: tokio::process::Child,
    url: String,
}

/// Starts `authorize` with `args` and reads stderr until the consent URL appears.
async fn start_authorize(app: &TestApp, args: &[&str]) -> Authorizing {
    use tokio::io::AsyncBufReadExt;
    let env = env_with(app, &[], &["ZOHO_REFRESH_TOKEN"]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoho-deals-sync"))
        .arg("authorize")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stderr = String::new();
    let url = tokio::time::timeout(crate::helpers::RUN_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("stderr is text") {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.starts_with("http") {
                return line;
            }
        }
        panic!("authorize printed no URL: {stderr}")
    })
    .await
    .expect("the URL is printed within RUN_TIMEOUT");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Authorizing { child, url }
}

impl Authorizing {
    async fn finish(self) -> (i32, String) {
        let out = tokio::time::timeout(crate::helpers::RUN_TIMEOUT, self.child.wait_with_output())
            .await
            .expect("authorize ends within RUN_TIMEOUT")
            .expect("output");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[tokio::test]
async fn authorize_completes_the_consent_flow_against_the_sandbox_and_prints_only_a_working_refresh_token() {
    let app = TestApp::with_deals(10).await;
    let flow = start_authorize(&app, &["--port", "0", "--timeout", "60s"]).await;
    let url = url::Url::parse(&flow.url).expect("a URL");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(url.as_str().starts_with(&format!("{}/oauth/v2/auth?", app.sandbox.base_url())), "{url}");
    assert_eq!(query["client_id"], zoho_sandbox::DEMO_CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["access_type"], "offline");
    assert_eq!(query["prompt"], "consent");
    assert!(query["scope"].contains("ZohoCRM.coql.READ"), "{url}");
    assert!(query["redirect_uri"].starts_with("http://127.0.0.1:"), "{url}");
    assert!(query["state"].len() >= 32, "a random state: {url}");

    // The browser: follow Zoho's redirect to the loopback listener.
    let page = reqwest::get(url.as_str()).await.expect("the consent round trip");
    assert_eq!(page.status(), 200, "the listener thanks the user");
    let (code, stdout) = flow.finish().await;
    assert_eq!(code, 0, "{stdout}");
    let refresh = stdout.trim();
    assert!(!refresh.is_empty() && stdout.lines().count() == 1, "only the token on stdout: {stdout}");
    let out = app.run_with_env(&["check"], &env_with(&app, &[("ZOHO_REFRESH_TOKEN", refresh)], &[])).await;
    assert_eq!(out.code, 0, "the new refresh token works: {}", out.all());

    // A second flow with another state: states are random per run.
    let again = start_authorize(&app, &["--port", "0", "--timeout", "60s"]).await;
    let other: std::collections::HashMap<_, _> =
        url::Url::parse(&again.url).expect("URL").query_pairs().into_owned().collect();
    assert_ne!(other["state"], query["state"]);
}

#[tokio::test]
async fn authorize_rejects_a_redirect_with_a_wrong_state_and_exchanges_nothing() {
    let app = TestApp::with_deals(10).await;
    let flow = start_authorize(&app, &["--port", "0", "--timeout", "60s"]).await;
    // Zoho's redirect, as a forger would replay it: a valid code, another state.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let zoho = no_redirects.get(&flow.url).send().await.expect("consent");
    assert_eq!(zoho.status(), 302);
    let location = zoho.headers()["location"].to_str().expect("text").to_owned();
    let mut forged = url::Url::parse(&location).expect("URL");
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" { "forged-state".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let page = no_redirects.get(forged.as_str()).send().await.expect("the listener answers");
    assert_eq!(page.status(), 400);
    let mints_before = app.stats().await["token_mints"].as_u64().unwrap_or(0);
    let (code, stdout) = flow.finish().await;
    assert_eq!(code, 3);
    assert!(stdout.trim().is_empty(), "nothing on stdout: {stdout}");
    assert_eq!(app.stats().await["token_mints"].as_u64().unwrap_or(0), mints_before, "no code was exchanged");
}

#[tokio::test]
async fn authorize_times_out_cleanly_when_nobody_consents() {
    let app = TestApp::with_deals(10).await;
    let env = env_with(&app, &[], &["ZOHO_REFRESH_TOKEN"]);
    let out = app.run_with_env(&["authorize", "--port", "0", "--timeout", "1s"], &env).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("no redirect from Zoho within 1s") && out.stderr.contains("--timeout"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.trim().is_empty());
}

#[tokio::test]
async fn revoke_needs_yes_then_the_revoked_refresh_token_no_longer_works() {
    let app = TestApp::with_deals(10).await;
    let grant = app.control("/__sandbox/grant-code", json!({})).await["code"].as_str().expect("code").to_owned();
    let env = env_with(&app, &[], &["ZOHO_REFRESH_TOKEN"]);
    let out = run_with_stdin(&["exchange-grant", "-"], &env, &grant).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let token = out.stdout.trim().to_owned();
    let with_token = env_with(&app, &[("ZOHO_REFRESH_TOKEN", &token)], &[]);

    let out = app.run_with_env(&["revoke"], &with_token).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--yes") && !out.all().contains(&token), "{}", out.stderr);
    assert_eq!(app.run_with_env(&["check"], &with_token).await.code, 0, "still valid without --yes");
    let out = app.run_with_env(&["revoke", "secret-on-argv", "--yes"], &with_token).await;
    assert_eq!(out.code, 2, "a token on the command line is refused: {}", out.all());

    let out = run_with_stdin(&["revoke", "-", "--yes"], &env, &token).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!out.all().contains(&token));
    let out = app.run_with_env(&["sync"], &with_token).await;
    assert_eq!(out.code, 3, "the revoked token is refused: {}", out.all());
    // Revoking it again: Zoho's 400, clearly.
    let out = app.run_with_env(&["revoke", "--yes"], &with_token).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("already revoked"), "{}", out.stderr);
}

#[tokio::test]
async fn without_api_domain_the_data_centres_api_host_is_used_and_zoho_api_domain_overrides_a_foreign_one() {
    use zoho_deals_sync::config::{DataCentre, ZohoCredentials};
    use zoho_deals_sync::retry::RetryPolicy;
    use zoho_deals_sync::zoho::auth::TokenProvider;
    use zoho_deals_sync::zoho::client::http_client;

    let provider = |accounts: &str, api_domain_override: Option<&str>| {
        let creds = ZohoCredentials {
            client_id: "1000.ID".into(),
            client_secret: "secret".to_owned().into(),
            refresh_token: "1000.refresh".to_owned().into(),
        };
        let accounts = url::Url::parse(accounts).expect("url");
        let over = api_domain_override.map(|u| url::Url::parse(u).expect("url"));
        TokenProvider::new(http_client().expect("client"), &accounts, creds, over, RetryPolicy::default())
            .expect("provider")
            .with_api_domain_fallback(url::Url::parse(DataCentre::Eu.api_domain()).expect("url"))
    };
    let silent = LocalServer::start(|_| {
        Reply::json(200, json!({"access_token": "1000.a.b", "token_type": "Bearer", "expires_in": 3600}))
    })
    .await;
    let token = provider(&silent.base_url, None).get().await.expect("a token");
    assert_eq!(token.api_domain.as_str(), "https://www.zohoapis.eu/");

    let foreign = LocalServer::start(|_| token_answer("https://crm.attacker.example")).await;
    let err = provider(&foreign.base_url, None).get().await.expect_err("refused");
    assert!(err.to_string().contains("crm.attacker.example"), "{err}");
    let token = provider(&foreign.base_url, Some("https://crm.example.com")).get().await.expect("overridden");
    assert_eq!(token.api_domain.as_str(), "https://crm.example.com/");
}
