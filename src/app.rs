//! Wires the pieces for the binary: settings → Zoho client and warehouse → the command → an exit code.
//! Printing the result for a human (stdout) happens here; logs go through `tracing` (stderr).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::cli::{parse_time, Cli, Command, StatusArgs, SyncArgs};
use crate::config::{NeedCredentials, Settings, WarehouseSettings, ZohoCredentials};
use crate::error::{Error, ExitCode};
use crate::retry::RetryPolicy;
use crate::sync::{self, Outcome, SyncOptions};
use crate::warehouse::any::AnyWarehouse;
use crate::warehouse::bigquery::{BigQueryConfig, BigQueryWarehouse};
use crate::warehouse::sqlite::SqliteWarehouse;
use crate::warehouse::Warehouse;
use crate::zoho::auth::TokenProvider;
use crate::zoho::client::{http_client, ZohoClient};
use crate::zoho::deals;
use crate::zoho::token_cache::TokenCache;

/// The job's async runtime. Blocking work (SQLite calls, and parsing and mapping pages) runs on as many threads
/// as there are cores (at least 2), not on a pool that grows to a dozen: every thread that allocates gets a malloc
/// arena of its own, and the arenas' free memory added 10–25 MiB of peak RSS at 1M deals (measured side by side:
/// 49–57 MiB, against 62–75 MiB uncapped). No blocking task waits for another one to start, so a queue there
/// only delays.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let blocking_threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
    tokio::runtime::Builder::new_multi_thread().max_blocking_threads(blocking_threads).enable_all().build()
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command.unwrap_or(Command::Sync(SyncArgs::default())) {
        Command::Sync(args) => run_sync(args).await,
        Command::Check => check().await,
        Command::ExchangeGrant { grant_token } => exchange_grant(read_grant(grant_token.as_deref())?).await,
        Command::Authorize { port, timeout } => authorize(port, &timeout).await,
        Command::Revoke { token, yes } => revoke(token.as_deref(), yes).await,
        Command::Reconcile { since } => run_reconcile(since.as_deref()).await,
        Command::Status(args) => status(args).await,
    }
}

/// An error and its causes on one line (see [`crate::error_chain`]).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain::format(e)
}

fn zoho_client(
    settings: &Settings,
    credentials: ZohoCredentials,
    max_credits: Option<u64>,
) -> Result<ZohoClient, Error> {
    let http = http_client()?;
    let retry = RetryPolicy { budget: settings.zoho.retry_budget, ..RetryPolicy::default() };
    let disk = settings
        .zoho
        .token_cache
        .as_deref()
        .map(|path| TokenCache::new(path, &credentials, &settings.zoho.accounts_url));
    let auth = TokenProvider::new(
        http.clone(),
        &settings.zoho.accounts_url,
        credentials,
        settings.zoho.api_domain.clone(),
        retry,
    )?
    .with_api_domain_fallback(api_domain_fallback(settings)?);
    let auth = match disk {
        Some(disk) => auth.with_disk_cache(disk),
        None => auth,
    };
    Ok(ZohoClient::new(http, auth, settings.zoho.concurrency, max_credits, retry))
}

/// The data centre's API host, for token responses that name no `api_domain`.
fn api_domain_fallback(settings: &Settings) -> Result<url::Url, Error> {
    url::Url::parse(settings.zoho.dc.api_domain())
        .map_err(|e| Error::internal_from("the data-centre table holds an API host that is not a URL", e))
}

fn credentials(settings: &Settings) -> Result<ZohoCredentials, Error> {
    settings.credentials.clone().ok_or_else(|| {
        Error::Config(crate::config::ConfigError::Missing(vec![
            "ZOHO_CLIENT_ID",
            "ZOHO_CLIENT_SECRET",
            "ZOHO_REFRESH_TOKEN",
        ]))
    })
}

async fn run_sync(args: SyncArgs) -> Result<ExitCode, Error> {
    let settings = Settings::from_env(NeedCredentials::Yes)?;
    let now = chrono::Utc::now();
    let options = SyncOptions {
        since: args.since.as_deref().map(|v| parse_time("--since", v, now)).transpose().map_err(Error::Usage)?,
        until: args.until.as_deref().map(|v| parse_time("--until", v, now)).transpose().map_err(Error::Usage)?,
        dry_run: args.dry_run,
        progress: crate::telemetry::LogFormat::from_env().ok() == Some(crate::telemetry::LogFormat::Text)
            && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let max_credits = args.max_credits.or(settings.max_credits);
    let zoho = Arc::new(zoho_client(&settings, credentials(&settings)?, max_credits)?);
    let wh = Arc::new(open_warehouse(&settings).await?);
    let outcome = sync::sync(&settings, &options, zoho, wh.clone()).await?;
    let first_run = first_run_note(&*wh, &outcome, &settings).await;
    match outcome {
        Outcome::DryRun(plan) => {
            println!("{}", plan.render());
            Ok(ExitCode::Success)
        }
        Outcome::Synced(summary) => {
            println!("{}", summary.line());
            if let Some(note) = first_run {
                println!("{note}");
            }
            let quarantined = summary.report.deals_quarantined;
            if quarantined > 0 {
                tracing::warn!(
                    quarantined,
                    "some records were quarantined (see the warnings above for ids and fields); the rest are committed"
                );
            }
            // A window cut short by the credit budget outranks quarantined records: the warning above the summary
            // says how to go on.
            Ok(match (summary.budget_stop.is_some(), quarantined > 0) {
                (true, _) => ExitCode::CreditBudget,
                (false, true) => ExitCode::Partial,
                (false, false) => ExitCode::Success,
            })
        }
    }
}

/// `reconcile`: one committed run of kind `reconcile`; prints its summary line.
async fn run_reconcile(since: Option<&str>) -> Result<ExitCode, Error> {
    let settings = Settings::from_env(NeedCredentials::Yes)?;
    let since = since.map(|v| parse_time("--since", v, chrono::Utc::now())).transpose().map_err(Error::Usage)?;
    let zoho = Arc::new(zoho_client(&settings, credentials(&settings)?, settings.max_credits)?);
    let wh = Arc::new(open_warehouse(&settings).await?);
    let summary = sync::reconcile::reconcile(&settings, since, zoho, wh).await?;
    println!("{}", summary.line());
    Ok(ExitCode::Success)
}

/// After a scheduled run that was the first to succeed: what it covered and how to backfill (best effort: a
/// ledger that cannot be read just means no note).
async fn first_run_note<W: Warehouse>(w: &W, outcome: &Outcome, settings: &Settings) -> Option<String> {
    let Outcome::Synced(summary) = outcome else { return None };
    if summary.kind != crate::warehouse::RunKind::Scheduled {
        return None;
    }
    let ledger = w.ledger().await.ok()?;
    crate::status::first_run_note(&ledger, &summary.run_id, settings.lookback)
}

/// The one place that picks the warehouse the settings name: opens the SQLite file, or connects to BigQuery.
async fn open_warehouse(settings: &Settings) -> Result<AnyWarehouse, Error> {
    match &settings.warehouse {
        WarehouseSettings::Sqlite { path } => Ok(AnyWarehouse::Sqlite(SqliteWarehouse::open(path)?)),
        WarehouseSettings::BigQuery { project, dataset, location, emulator_host, max_bytes_billed } => {
            let config = BigQueryConfig {
                project: project.clone(),
                dataset: dataset.clone(),
                location: location.clone(),
                emulator_host: emulator_host.clone(),
            };
            Ok(AnyWarehouse::BigQuery(Box::new(bigquery(config, *max_bytes_billed).await?)))
        }
    }
}

/// The warehouse the settings name, for `check`'s line.
fn warehouse_name(settings: &Settings) -> String {
    match &settings.warehouse {
        WarehouseSettings::Sqlite { path } => format!("SQLite {}", path.display()),
        WarehouseSettings::BigQuery { project, dataset, .. } => format!("BigQuery {project}.{dataset}"),
    }
}

/// Connects to BigQuery (or its emulator when `BIGQUERY_EMULATOR_HOST` is set).
async fn bigquery(config: BigQueryConfig, max_bytes_billed: Option<u64>) -> Result<BigQueryWarehouse, Error> {
    if let Some(host) = &config.emulator_host {
        tracing::warn!(
            emulator_host = %host,
            "BIGQUERY_EMULATOR_HOST is set: writing to a BigQuery emulator over plain HTTP without Google credentials, not to BigQuery"
        );
    }
    Ok(BigQueryWarehouse::connect(config).await?.with_max_bytes_billed(max_bytes_billed))
}

/// The grant token: stdin for `-`, a literal argument, or `ZOHO_GRANT_TOKEN`.
fn read_grant(arg: Option<&str>) -> Result<SecretString, Error> {
    let grant = match arg {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|source| Error::Stdin { what: "the grant token", source })?;
            text
        }
        Some(literal) => literal.to_owned(),
        None => std::env::var("ZOHO_GRANT_TOKEN").unwrap_or_default(),
    };
    let grant = grant.trim();
    if grant.is_empty() {
        return Err(Error::Usage(
            "no grant token: pass `-` and write it on stdin, or set ZOHO_GRANT_TOKEN (Zoho API console: Self Client → Generate Code)".into(),
        ));
    }
    Ok(SecretString::from(grant.to_owned()))
}

/// A token provider for the grant and authorization flows: the client id and secret, no refresh token yet.
fn client_only_provider(settings: &Settings) -> Result<TokenProvider, Error> {
    let id = std::env::var("ZOHO_CLIENT_ID").unwrap_or_default();
    let secret = std::env::var("ZOHO_CLIENT_SECRET").unwrap_or_default();
    let missing: Vec<&'static str> =
        [("ZOHO_CLIENT_ID", id.trim().is_empty()), ("ZOHO_CLIENT_SECRET", secret.trim().is_empty())]
            .into_iter()
            .filter_map(|(n, m)| m.then_some(n))
            .collect();
    if !missing.is_empty() {
        return Err(crate::config::ConfigError::Missing(missing).into());
    }
    let creds = ZohoCredentials {
        client_id: id.trim().to_owned(),
        client_secret: SecretString::from(secret.trim().to_owned()),
        refresh_token: SecretString::from(String::new()),
    };
    Ok(TokenProvider::new(http_client()?, &settings.zoho.accounts_url, creds, None, RetryPolicy::default())?)
}

async fn exchange_grant(grant: SecretString) -> Result<ExitCode, Error> {
    let settings = Settings::from_env(NeedCredentials::No)?;
    let auth = client_only_provider(&settings)?;
    // Zoho keeps at most 20 refresh tokens per user and client, and silently deletes the oldest when a 21st is
    // made (docs/zoho-api.md §1.6, §3f).
    tracing::warn!(
        "Zoho keeps at most 20 refresh tokens per user per client and deletes the oldest when another is made: \
         exchanging grant tokens again and again (for the same user and client) can invalidate the refresh token \
         production uses. Exchange once, store the token, and revoke the ones you no longer use"
    );
    let refresh = auth.exchange_grant(&grant, None).await?;
    // The refresh token alone on stdout, so it can be piped into a secret store.
    println!("{}", refresh.expose_secret());
    tracing::info!("exchanged the grant token; store the printed refresh token as ZOHO_REFRESH_TOKEN (a secret)");
    Ok(ExitCode::Success)
}

/// `authorize`: the Connected App flow; the consent URL on stderr, the refresh token alone on stdout.
async fn authorize(port: u16, timeout: &str) -> Result<ExitCode, Error> {
    let timeout = crate::config::parse_duration(timeout)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::Usage(format!("--timeout {timeout:?} is not a duration: write it like 90s or 5m")))?;
    let settings = Settings::from_env(NeedCredentials::No)?;
    let auth = client_only_provider(&settings)?;
    let client_id = std::env::var("ZOHO_CLIENT_ID").unwrap_or_default();
    let flow = crate::zoho::oauth::Flow::start(&settings.zoho.accounts_url, client_id.trim(), port).await?;
    // stderr, not the log: the person running this must see it whatever RUST_LOG says. Not a secret.
    eprintln!(
        "Open this URL in a browser, sign in to Zoho and accept (waiting up to {}s):\n\n{}\n",
        timeout.as_secs(),
        flow.url()
    );
    let refresh = flow.finish(&auth, timeout).await?;
    println!("{}", refresh.expose_secret());
    tracing::info!("authorized; store the printed refresh token as ZOHO_REFRESH_TOKEN (a secret)");
    Ok(ExitCode::Success)
}

/// `revoke`: revokes the refresh token from stdin (`-`) or ZOHO_REFRESH_TOKEN, only with `--yes`.
async fn revoke(arg: Option<&str>, yes: bool) -> Result<ExitCode, Error> {
    let token = match arg {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|source| Error::Stdin { what: "the token", source })?;
            text
        }
        Some(_) => {
            return Err(Error::Usage(
                "revoke takes the token from stdin (`-`) or ZOHO_REFRESH_TOKEN, never from the command line (it would show in `ps` and the shell's history)".into(),
            ))
        }
        None => std::env::var("ZOHO_REFRESH_TOKEN").unwrap_or_default(),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::Usage(
            "no token to revoke: set ZOHO_REFRESH_TOKEN or pass `-` and write it on stdin".into(),
        ));
    }
    let source = if arg == Some("-") { "the refresh token read from stdin" } else { "ZOHO_REFRESH_TOKEN" };
    if !yes {
        return Err(Error::Usage(format!(
            "revoke would permanently invalidate {source} and every access token minted from it; any deployment still using it fails from then on. Deploy the new token first, then run again with --yes"
        )));
    }
    let settings = Settings::from_env(NeedCredentials::No)?;
    let creds = ZohoCredentials {
        client_id: String::new(),
        client_secret: SecretString::from(String::new()),
        refresh_token: SecretString::from(String::new()),
    };
    let auth = TokenProvider::new(http_client()?, &settings.zoho.accounts_url, creds, None, RetryPolicy::default())?;
    auth.revoke(&SecretString::from(token.to_owned())).await?;
    println!("revoked {source}");
    Ok(ExitCode::Success)
}

/// `check`: each step prints OK or what is wrong and how to fix it; the exit code is the first failure's.
async fn check() -> Result<ExitCode, Error> {
    let settings = Settings::from_env(NeedCredentials::Yes)?;
    let zoho = zoho_client(&settings, credentials(&settings)?, None)?;
    let mut first_failure: Option<ExitCode> = None;
    let mut report = |name: &str, result: Result<String, Error>| match result {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(e) => {
            println!("FAIL  {name}: {}", error_chain(&e));
            first_failure.get_or_insert(e.exit_code());
        }
    };

    let token = zoho.auth().get().await.map_err(Error::from);
    let token_ok = token.is_ok();
    report(
        "Zoho credentials",
        token.map(|t| format!("minted an access token at {} for {}", settings.zoho.accounts_url, t.api_domain)),
    );
    if token_ok {
        // The won stages and the select list the nightly run would use.
        let metadata = "Deals metadata (scope ZohoCRM.settings.fields.READ)";
        let ready = match deals::metadata(&zoho).await.and_then(|m| {
            let stages = m.won_stages_or(settings.zoho.won_stages.as_deref())?;
            Ok((stages, m.select))
        }) {
            Ok((stages, select)) => {
                let detail =
                    format!("won stages {stages:?}; {} columns selected{}", select.columns.len(), skipped(&select));
                report(metadata, Ok(detail));
                Some((stages, select.columns))
            }
            Err(e) => {
                report(metadata, Err(e.into()));
                None
            }
        };
        if let Some((stages, columns)) = ready {
            let now = chrono::Utc::now();
            let all_time = crate::deal::Window { start: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH, end: now };
            report(
                "won-deal query (scope ZohoCRM.coql.READ, the Deals View permission)",
                deals::probe_won_select(&zoho, &columns, &stages, sync::window::floor_window(all_time))
                    .await
                    .map(|n| match n {
                        0 => "the nightly query runs; no won deal yet".to_owned(),
                        _ => "the nightly query runs and returns won deals".to_owned(),
                    })
                    .map_err(Error::from),
            );
            let day = crate::deal::Window { start: now - chrono::Duration::days(1), end: now };
            report(
                "COQL count",
                deals::count_deals(&zoho, &stages, sync::window::floor_window(day))
                    .await
                    .map(|n| format!("{n} won deals modified in the last 24h"))
                    .map_err(Error::from),
            );
        }
        report(
            "deleted Deals (the profile's permission to read deleted records)",
            deals::probe_deleted(&zoho)
                .await
                .map(|_| "readable (a sync flags deals deleted in Zoho)".to_owned())
                .map_err(Error::from),
        );
        // Optional: without it owners keep the last name COQL gives. A warning, not a failure.
        match zoho.get("users", &[("type", "CurrentUser".to_owned())], &[]).await {
            Ok(_) => println!("ok    users (scope ZohoCRM.users.READ): owners are stored with their full names"),
            Err(e) => println!(
                "warn  users (scope ZohoCRM.users.READ): {}; owner_name will hold the owner's last name only",
                error_chain(&e)
            ),
        }
    }
    let warehouse = match open_warehouse(&settings).await {
        Ok(w) => check_warehouse(&w, &settings).await.map(|s| format!("{}: {s}", warehouse_name(&settings))),
        Err(e) => Err(e),
    };
    report("warehouse", warehouse);
    Ok(first_failure.unwrap_or(ExitCode::Success))
}

/// What the select list leaves out, for `check`'s line.
fn skipped(select: &deals::SelectList) -> String {
    let mut parts = Vec::new();
    for (what, fields) in [
        ("unsupported type", &select.unsupported),
        ("formula beyond the 5 a query may select", &select.formula_over_cap),
        ("API name not a plain identifier", &select.invalid_names),
        ("beyond the 500-column cap", &select.over_column_cap),
    ] {
        if !fields.is_empty() {
            parts.push(format!("{what}: {}", fields.join(", ")));
        }
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!(" (not selected: {})", parts.join("; ")),
    }
}

async fn check_warehouse<W: Warehouse>(w: &W, settings: &Settings) -> Result<String, Error> {
    w.prepare().await?;
    let watermark = w.watermark().await?;
    Ok(match watermark {
        Some(t) => format!("reachable; watermark {}", crate::deal::format_utc(&t)),
        None => format!(
            "reachable; no successful run yet: the first `sync` covers only the last {} (SYNC_LOOKBACK); to load \
             older deals run `zoho-deals-sync sync --since 2024-01-01` (any date, or a duration such as 90d)",
            crate::status::human_duration(settings.lookback)
        ),
    })
}

/// `status`: reads the ledger and the quarantine (never Zoho) and prints how fresh the warehouse is.
async fn status(args: StatusArgs) -> Result<ExitCode, Error> {
    let settings = Settings::from_env(NeedCredentials::No)?;
    let now = chrono::Utc::now();
    let (ledger, quarantined) = match &settings.warehouse {
        // A missing file means no run has written yet; opening it would create an empty one.
        WarehouseSettings::Sqlite { path } if !path.exists() => {
            tracing::info!(path = %path.display(), "no SQLite warehouse at SQLITE_PATH yet: no run has written");
            (Vec::new(), 0)
        }
        _ => status_inputs(&open_warehouse(&settings).await?).await?,
    };
    let status = crate::status::Status::from_ledger(&ledger, quarantined, now, args.max_age);
    if args.json {
        println!("{}", status.to_json());
    } else {
        println!("{}", status.render_text());
    }
    Ok(status.exit_code())
}

async fn status_inputs<W: Warehouse>(w: &W) -> Result<(Vec<crate::warehouse::LedgerRow>, u64), Error> {
    async fn read<W: Warehouse>(w: &W) -> Result<(Vec<crate::warehouse::LedgerRow>, u64), Error> {
        Ok((w.ledger().await?, w.quarantined().await?.len() as u64))
    }
    // Read-only when the tables exist (a probe may run as a user who can only read); otherwise create them, as
    // `check` does, so a warehouse no run has written reads as empty (and a real problem surfaces from prepare).
    match read(w).await {
        Ok(inputs) => Ok(inputs),
        Err(_) => {
            w.prepare().await?;
            read(w).await
        }
    }
}
