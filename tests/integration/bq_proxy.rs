//! A fault-injecting HTTP proxy in front of the BigQuery emulator: it forwards every request unchanged, except
//! where a fault is switched on, and then answers as real BigQuery does in the cases the emulator never shows
//! (docs/bigquery.md): jobs failing with `jobBackendError`, mutating DML answering the concurrent-update error,
//! `insertAll` answering 404 for a while after a table is created, and acknowledged staging writes that become
//! visible only later (or never). It records the `requestId` of every `jobs.query` it saw, so a test can check
//! that a failed job was retried under a new one.
//!
//! Not a general proxy: plain HTTP/1, whole bodies, JSON in and out; it serves one test and stops when dropped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// What the proxy does to the traffic. Counters count down as faults fire.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// The next N `jobs.query` calls fail as a job that hit `jobBackendError`.
    pub job_backend_errors: u32,
    /// The next N mutating DML statements (UPDATE, MERGE, DELETE) fail with BigQuery's concurrent-update error.
    pub concurrent_update_errors: u32,
    /// `tabledata.insertAll` answers 404 until this long after the last `CREATE TABLE` it forwarded.
    pub insert_all_404_for: Option<Duration>,
    /// Staging INSERTs are acknowledged at once but reach the emulator only after this delay …
    pub staging_visible_after: Option<Duration>,
    /// … or never (acknowledged and dropped), while this is set.
    pub staging_lost: bool,
}

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// `(requestId, what the proxy did)` of every `jobs.query`, in order.
    pub queries: Vec<(Option<String>, &'static str)>,
    pub insert_all_calls: u32,
    pub insert_all_404s: u32,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<Faults>,
    seen: Mutex<Seen>,
    last_create: Mutex<Option<Instant>>,
}

/// A running proxy. Dropping it stops the server.
pub struct BqProxy {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for BqProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl BqProxy {
    /// Starts a proxy on a free local port in front of `upstream` (`host:port` of the emulator).
    pub async fn start(upstream: &str, faults: Faults) -> BqProxy {
        let shared = Arc::new(Shared {
            upstream: format!("http://{}", upstream.trim().trim_start_matches("http://").trim_end_matches('/')),
            http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client"),
            faults: Mutex::new(faults),
            seen: Mutex::new(Seen::default()),
            last_create: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let app = axum::Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BqProxy { shared, addr, server }
    }

    /// `host:port` to put in `BIGQUERY_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().expect("faults") = faults;
    }

    /// What the proxy saw so far.
    pub fn seen(&self) -> Seen {
        self.shared.seen.lock().expect("seen").clone()
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// BigQuery's error body.
fn bq_error(code: u16, reason: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(code).expect("status");
    json_response(
        status,
        &json!({"error": {"code": code, "message": message,
            "errors": [{"reason": reason, "message": message, "domain": "global"}], "status": "FAILED"}}),
    )
}

fn is_mutating_dml(sql: &str) -> bool {
    let s = sql.to_ascii_uppercase();
    s.lines()
        .map(str::trim_start)
        .any(|l| l.starts_with("UPDATE ") || l.starts_with("MERGE ") || l.starts_with("DELETE "))
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let body = to_bytes(req.into_body(), 64 * 1024 * 1024).await.unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    if path.ends_with("/insertAll") {
        let window = shared.faults.lock().expect("faults").insert_all_404_for;
        let recent =
            shared.last_create.lock().expect("create").is_some_and(|t| window.is_some_and(|w| t.elapsed() < w));
        let mut seen = shared.seen.lock().expect("seen");
        seen.insert_all_calls += 1;
        if recent {
            seen.insert_all_404s += 1;
            return bq_error(404, "notFound", "Not found: Table (just created; not yet visible to streaming)");
        }
    }

    if path.ends_with("/queries") && method == axum::http::Method::POST {
        let sql = parsed["query"].as_str().unwrap_or_default().to_owned();
        let request_id = parsed["requestId"].as_str().map(str::to_owned);
        let record = |what: &'static str| shared.seen.lock().expect("seen").queries.push((request_id.clone(), what));
        let upper = sql.to_ascii_uppercase();
        if upper.contains("CREATE TABLE") {
            *shared.last_create.lock().expect("create") = Some(Instant::now());
        }
        let fault = {
            let mut f = shared.faults.lock().expect("faults");
            if f.job_backend_errors > 0 {
                f.job_backend_errors -= 1;
                Some("jobBackendError")
            } else if f.concurrent_update_errors > 0 && is_mutating_dml(&sql) {
                f.concurrent_update_errors -= 1;
                Some("concurrent update")
            } else if upper.contains("INSERT INTO") && sql.contains("._staging_") {
                if f.staging_lost {
                    Some("staging lost")
                } else {
                    f.staging_visible_after.map(|_| "staging delayed")
                }
            } else {
                None
            }
        };
        match fault {
            Some("jobBackendError") => {
                record("jobBackendError");
                return bq_error(
                    400,
                    "jobBackendError",
                    "The job encountered an error during execution. Retrying the job may solve the problem.",
                );
            }
            Some("concurrent update") => {
                record("concurrent update");
                return bq_error(
                    400,
                    "invalidQuery",
                    "Could not serialize access to table test-project:dataset.table due to concurrent update",
                );
            }
            Some(what @ ("staging lost" | "staging delayed")) => {
                record(what);
                // Acknowledge as BigQuery would; deliver later, or never.
                let rows = parsed["queryParameters"][0]["parameterValue"]["arrayValues"].as_array().map_or(0, Vec::len);
                let delay = shared.faults.lock().expect("faults").staging_visible_after;
                if let (false, Some(delay)) = (what == "staging lost", delay) {
                    let (shared, path_and_query, body) = (Arc::clone(&shared), path_and_query.clone(), body.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = forward(&shared, axum::http::Method::POST, &path_and_query, body.to_vec()).await;
                    });
                }
                let project = path.split('/').skip_while(|s| *s != "projects").nth(1).unwrap_or("test-project");
                return json_response(
                    StatusCode::OK,
                    &json!({"kind": "bigquery#queryResponse",
                        "jobReference": {"projectId": project, "jobId": uuid::Uuid::new_v4().to_string(), "location": "US"},
                        "jobComplete": true, "totalRows": "0", "numDmlAffectedRows": rows.to_string(),
                        "totalBytesProcessed": "0"}),
                );
            }
            _ => record("forwarded"),
        }
    }
    match forward(&shared, method, &path_and_query, body.to_vec()).await {
        Ok(r) => r,
        Err(e) => bq_error(502, "backendError", &format!("proxy could not reach the emulator: {e}")),
    }
}

async fn forward(
    shared: &Shared,
    method: axum::http::Method,
    path_and_query: &str,
    body: Vec<u8>,
) -> Result<Response, reqwest::Error> {
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let resp = shared
        .http
        .request(method, format!("{}{path_and_query}", shared.upstream))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = resp.bytes().await?;
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}
