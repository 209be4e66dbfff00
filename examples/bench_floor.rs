//! Benchmark helper: the download floor. Sends exactly the Zoho calls a `sync --since …` run sends (token,
//! Deals field metadata; per stage filter a `COUNT(id)` that sizes pages and slices with the job's own
//! `plan_pages`, then COQL keyset pages of won deals with every selected column and — with `--not-won`, as the
//! job does when the table already holds won rows — of not-won deals with `id, Stage, Modified_Time`, in the
//! same time slices and at the same concurrency; `/Deals/deleted` pages (one one-row page without `--not-won`, as
//! a run into an empty table); the reconciliation `COUNT(id)`), and
//! only downloads the answers: no JSON parsing, no mapping, no writing. Keep it in step with `fetch_and_stage`
//! in src/sync/mod.rs: the harness checks that both spend the same credits.
//!
//! To page without parsing, it reads the next keyset key straight from the bytes: the sandbox serialises each
//! record's keys in sorted order, so `id` is a record's last key and the last `"id":"…"` in a page is the last
//! record's id (ids ascend within a page). `--verify` parses every page fully and checks that shortcut (the
//! harness runs it once, untimed). Not part of the job: it exists so `bench/run.py` can report sync wall time
//! against the time the same bytes take merely to arrive.
//!
//! Configuration is the job's own environment (`ZOHO_*`); prints one JSON object on stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use zoho_deals_sync::config::{NeedCredentials, Settings};
use zoho_deals_sync::retry::RetryPolicy;
use zoho_deals_sync::sync::window;
use zoho_deals_sync::zoho::auth::TokenProvider;
use zoho_deals_sync::zoho::client::http_client;
use zoho_deals_sync::zoho::deals::{self, DealQuery, StageFilter, Window};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `/Deals/deleted` pages hold at most 200 entries (src/zoho/deals.rs).
const DELETED_PAGE_SIZE: u32 = 200;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// How far back the window starts, in days (the job's `--since Nd`).
    #[arg(long, default_value_t = 400)]
    since_days: i64,
    /// Concurrent CRM calls (the job's `ZOHO_CONCURRENCY`, default 4).
    #[arg(long, env = "ZOHO_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Parse every page fully and check the byte-level shortcut against it.
    #[arg(long)]
    verify: bool,
    /// Also page the not-won deals and every deletion, as the job does when the warehouse already holds deals
    /// it could flag. Without it the floor matches a run into an empty table, which skips the not-won pass and
    /// asks for one one-row page of deletions only (the job's access check, `fetch::Deletions`).
    #[arg(long)]
    not_won: bool,
}

/// Calls, credits, bytes and records per kind of call.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    credits: AtomicU64,
    bytes: AtomicU64,
    records: AtomicU64,
}

impl Tally {
    fn add(&self, credits: u64, bytes: usize, records: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.credits.fetch_add(credits, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        json!({
            "calls": self.calls.load(Ordering::Relaxed),
            "credits": self.credits.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "records": self.records.load(Ordering::Relaxed),
        })
    }
}

/// What every task shares.
struct Ctx {
    http: reqwest::Client,
    base: String,
    auth: String,
    permits: Semaphore,
    verify: bool,
    won: Tally,
    not_won: Tally,
    deleted: Tally,
    other: Tally,
}

impl Ctx {
    /// Sends one request under the concurrency limit; returns the status and the raw body.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<impl AsRef<[u8]>, BoxError> {
        let _permit = self.permits.acquire().await?;
        let resp = req.header(reqwest::header::AUTHORIZATION, &self.auth).send().await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])).into());
        }
        Ok(body)
    }

    async fn coql(&self, query: &str) -> Result<impl AsRef<[u8]>, BoxError> {
        let url = format!("{}/crm/v8/coql", self.base);
        self.send(self.http.post(url).json(&json!({ "select_query": query }))).await
    }
}

/// Position of the last occurrence of `needle` in `hay`.
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The last record's id and whether Zoho says there are more, read from the raw bytes; `None` for an empty body.
fn scan_page(body: &[u8]) -> Result<Option<(String, bool, u64)>, BoxError> {
    if body.is_empty() {
        return Ok(None);
    }
    let tail_from = rfind(body, b"\"info\"").ok_or("a page without `info`")?;
    let info = &body[tail_from..];
    let more = rfind(info, b"\"more_records\":true").is_some();
    let count = rfind(info, b"\"count\":")
        .map(|p| {
            info[p + 8..].iter().take_while(|b| b.is_ascii_digit()).fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
        })
        .unwrap_or(0);
    let data = &body[..tail_from];
    let at = rfind(data, b"\"id\":").ok_or("a page without an `id`")?;
    let id: String = data[at + 5..]
        .iter()
        .skip_while(|b| **b == b'"')
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    if id.is_empty() {
        return Err("unreadable id".into());
    }
    Ok(Some((id, more, count)))
}

/// The same page parsed fully: (max id, more, count); checks the shortcut.
fn check_scan(body: &[u8], scanned: &Option<(String, bool, u64)>) -> Result<(), BoxError> {
    let parsed = if body.is_empty() { None } else { Some(serde_json::from_slice::<Value>(body)?) };
    let full = parsed.map(|v| {
        let recs = v.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
        let max = recs
            .iter()
            .filter_map(zoho_deals_sync::zoho::model::record_id)
            .max_by(|a, b| deals::cmp_ids(a, b))
            .unwrap_or_default();
        let more = v.pointer("/info/more_records").and_then(Value::as_bool).unwrap_or(false);
        (max, more, recs.len() as u64)
    });
    if &full != scanned {
        return Err(format!("byte scan {scanned:?} disagrees with a full parse {full:?}").into());
    }
    Ok(())
}

/// Pages one keyset query to its end, like `deals::page_deals`; returns what this slice's chain did (its pages
/// are sequential: each needs the previous page's last id).
async fn page_all(
    ctx: Arc<Ctx>,
    columns: Vec<String>,
    filter: StageFilter,
    stages: Vec<String>,
    slice: Window,
    page_size: u32,
) -> Result<Value, BoxError> {
    let q = DealQuery { columns: &columns, filter, stages: &stages, window: slice, page_size };
    let credits = coql_credits(page_size);
    let tally = if filter == StageFilter::Won { &ctx.won } else { &ctx.not_won };
    let mut after = "0".to_owned();
    let (started, mut pages, mut records) = (Instant::now(), 0u64, 0u64);
    let done = |pages: u64, records: u64| {
        json!({"filter": format!("{filter:?}"), "start": slice.start.to_rfc3339(), "pages": pages, "records": records,
               "chain_s": started.elapsed().as_secs_f64()})
    };
    loop {
        let body = ctx.coql(&deals::page_query(&q, &after)).await?;
        pages += 1;
        let body = body.as_ref();
        let scanned = scan_page(body)?;
        if ctx.verify {
            check_scan(body, &scanned)?;
        }
        let Some((last, more, count)) = scanned else {
            tally.add(credits, 0, 0);
            return Ok(done(pages, records));
        };
        tally.add(credits, body.len(), count);
        records += count;
        if !(more || count >= u64::from(page_size)) {
            return Ok(done(pages, records));
        }
        after = last;
    }
}

/// `GET /Deals/deleted` pages since the window start, like `deals::deleted_since`; with `all` false, only the
/// first page (of `per_page` rows), like the job's access check.
async fn deleted_all(ctx: Arc<Ctx>, since: String, per_page: u32, all: bool) -> Result<Value, BoxError> {
    let started = Instant::now();
    for page in 1u32.. {
        let url = format!("{}/crm/v8/Deals/deleted", ctx.base);
        let req = ctx
            .http
            .get(url)
            .query(&[("type", "all".to_owned()), ("page", page.to_string()), ("per_page", per_page.to_string())])
            .header("If-Modified-Since", since.as_str());
        let body = ctx.send(req).await?;
        let body = body.as_ref();
        let more = !body.is_empty() && rfind(body, b"\"more_records\":true").is_some();
        ctx.deleted.add(1, body.len(), 0);
        if !more || !all {
            return Ok(json!({"filter": "Deleted", "pages": page, "chain_s": started.elapsed().as_secs_f64()}));
        }
    }
    Err("more than 2^32 pages of deletions".into())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    quote(&t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
}

/// COQL credits by LIMIT (1–200: 1, 201–1000: 2, 1001–2000: 3), as `ZohoClient::coql` counts them.
fn coql_credits(limit: u32) -> u64 {
    match limit {
        0..=200 => 1,
        201..=1000 => 2,
        _ => 3,
    }
}

/// `COUNT(id)` of the deals `filter` selects in the window, as `deals::count_matching` asks it (one credit; the
/// small answer is parsed: the job needs the number). Charged to the filter's own pass.
async fn count(ctx: &Ctx, filter: StageFilter, stages: &[String], win: Window) -> Result<u64, BoxError> {
    let list = stages.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
    let clause = match filter {
        StageFilter::Won => format!("Stage in ({list})"),
        StageFilter::NotWon => format!("Stage not in ({list})"),
    };
    let query = format!(
        "select COUNT(id) from Deals where ({clause} and (Modified_Time >= {} and Modified_Time < {}))",
        instant(win.start),
        instant(win.end)
    );
    let body = ctx.coql(&query).await?;
    let body = body.as_ref();
    let tally = if filter == StageFilter::Won { &ctx.won } else { &ctx.not_won };
    tally.add(1, body.len(), 0);
    if body.is_empty() {
        return Ok(0);
    }
    let v: Value = serde_json::from_slice(body)?;
    v.pointer("/data/0")
        .and_then(Value::as_object)
        .and_then(|o| o.values().find_map(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))))
        .ok_or_else(|| "the COUNT(id) answer has no number".into())
}

async fn run(args: Args) -> Result<Value, BoxError> {
    let started = Instant::now();
    let settings = Settings::from_env(NeedCredentials::Yes)?;
    let creds = settings.credentials.clone().ok_or("ZOHO_CLIENT_ID/SECRET/REFRESH_TOKEN are not set")?;
    let http = http_client()?;
    let tokens = TokenProvider::new(http.clone(), &settings.zoho.accounts_url, creds, None, RetryPolicy::default())?;
    let token = tokens.get().await?;
    let now = window::floor_to_second(chrono::Utc::now());
    let win = Window { start: now - chrono::Duration::days(args.since_days), end: now };
    let ctx = Arc::new(Ctx {
        http,
        base: token.api_domain.as_str().trim_end_matches('/').to_owned(),
        auth: token.header_value(),
        permits: Semaphore::new(args.concurrency.max(1)),
        verify: args.verify,
        won: Tally::default(),
        not_won: Tally::default(),
        deleted: Tally::default(),
        other: Tally::default(),
    });

    // Metadata: the won stages and custom columns decide the queries, so this one is parsed (it is small).
    let url = format!("{}/crm/v8/settings/fields", ctx.base);
    let body = ctx.send(ctx.http.get(url).query(&[("module", "Deals")])).await?;
    ctx.other.add(1, body.as_ref().len(), 0);
    let meta = deals::parse_metadata(&serde_json::from_slice(body.as_ref())?)?;
    let columns = meta.select.columns.clone();
    let stages = meta.won_stages.clone();

    // As `fetch_and_stage` does: per stage filter, one COUNT sizes the pages and slices (`plan_pages`), then
    // the slices page concurrently while the next filter is counted; deletions alongside; the reconciliation
    // count after everything.
    let mut tasks: JoinSet<Result<Value, BoxError>> = JoinSet::new();
    let mut plan = Vec::new();
    let filters: &[StageFilter] =
        if args.not_won { &[StageFilter::Won, StageFilter::NotWon] } else { &[StageFilter::Won] };
    for &filter in filters {
        let expected = count(&ctx, filter, &stages, win).await?;
        let (slices, page_size) = deals::plan_pages(expected, args.concurrency);
        plan.push(
            json!({"filter": format!("{filter:?}"), "expected": expected, "slices": slices, "page_size": page_size}),
        );
        for slice in win.slices(slices) {
            let cols = match filter {
                StageFilter::Won => columns.clone(),
                StageFilter::NotWon => vec!["id".into(), "Stage".into(), "Modified_Time".into()],
            };
            tasks.spawn(page_all(Arc::clone(&ctx), cols, filter, stages.clone(), slice, page_size));
        }
    }
    let since = win.start.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    tasks.spawn(deleted_all(Arc::clone(&ctx), since, if args.not_won { DELETED_PAGE_SIZE } else { 1 }, args.not_won));
    let mut chains = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        chains.push(joined??);
    }
    let reconciled = count(&ctx, StageFilter::Won, &stages, win).await?;

    let wall = started.elapsed().as_secs_f64();
    let total = |f: fn(&Tally) -> &AtomicU64| -> u64 {
        [&ctx.won, &ctx.not_won, &ctx.deleted, &ctx.other].iter().map(|t| f(t).load(Ordering::Relaxed)).sum()
    };
    Ok(json!({
        "wall_s": wall,
        "plan": plan,
        "chains": chains,
        "zoho_won": reconciled,
        "concurrency": args.concurrency,
        "calls": total(|t| &t.calls),
        "credits": total(|t| &t.credits),
        "bytes": total(|t| &t.bytes),
        "won": ctx.won.to_json(),
        "not_won": ctx.not_won.to_json(),
        "deleted": ctx.deleted.to_json(),
        "metadata": ctx.other.to_json(),
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(v) => {
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_floor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
