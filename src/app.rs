//! Wires the pieces for the binary: settings → Zoho client and warehouse → the command → an exit code.
//! Printing the result for a human (stdout) happens here; logs go through `tracing` (stderr).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::cli::{parse_time, Cli, Command, StatusArgs, SyncArgs};
use crate::config::{NeedCredentials, Settings, WarehouseSettings, ZohoCredentials};
use crate::error::{Error, ExitCode};
use crate::retry::RetryPolicy;
use crate::sync::{self, Outcome, SyncOptions};
use crate::warehouse::bigquery::{BigQueryConfig, BigQueryWarehouse};
use crate::warehouse::sqlite::SqliteWarehouse;
use crate::warehouse::Warehouse;
use crate::zoho::auth::TokenProvider;
use crate::zoho::client::{http_client, ZohoClient};
use crate::zoho::deals;
use crate::zoho::token_cache::TokenCache;

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command.unwrap_or(Command::Sync(SyncArgs::default())) {
        Command::Sync(args) => run_sync(args).await,
        Command::Check => check().await,
        Command::Status(args) => status(args).await,
        Command::ExchangeGrant { grant_token } => exchange_grant(SecretString::from(grant_token)).await,
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
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
    )?;
    let auth = match disk {
        Some(disk) => auth.with_disk_cache(disk),
        None => auth,
    };
    Ok(ZohoClient::new(http, auth, settings.zoho.concurrency, max_credits, retry))
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
    let (outcome, first_run) = match &settings.warehouse {
        WarehouseSettings::Sqlite { path } => {
            let wh = Arc::new(SqliteWarehouse::open(path)?);
            let outcome = sync::sync(&settings, &options, zoho, wh.clone()).await?;
            let note = first_run_note(&*wh, &outcome, &settings).await;
            (outcome, note)
        }
        WarehouseSettings::BigQuery { .. } => {
            let wh = Arc::new(bigquery(&settings).await?);
            let outcome = sync::sync(&settings, &options, zoho, wh.clone()).await?;
            let note = first_run_note(&*wh, &outcome, &settings).await;
            (outcome, note)
        }
    };
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

/// Connects to BigQuery (or its emulator when `BIGQUERY_EMULATOR_HOST` is set).
async fn bigquery(settings: &Settings) -> Result<BigQueryWarehouse, Error> {
    let WarehouseSettings::BigQuery { project, dataset, location, emulator_host } = &settings.warehouse else {
        return Err(Error::Internal("not a BigQuery configuration".into()));
    };
    let config = BigQueryConfig {
        project: project.clone(),
        dataset: dataset.clone(),
        location: location.clone(),
        emulator_host: emulator_host.clone(),
    };
    Ok(BigQueryWarehouse::connect(config).await?)
}

async fn exchange_grant(grant: SecretString) -> Result<ExitCode, Error> {
    let settings = Settings::from_env(NeedCredentials::No)?;
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
    let http = http_client()?;
    let auth = TokenProvider::new(http, &settings.zoho.accounts_url, creds, None, RetryPolicy::default())?;
    let refresh = auth.exchange_grant(&grant).await?;
    // The refresh token alone on stdout, so it can be piped into a secret store.
    println!("{}", refresh.expose_secret());
    tracing::info!("exchanged the grant token; store the printed refresh token as ZOHO_REFRESH_TOKEN (a secret)");
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
        let meta = deals::metadata(&zoho).await.map_err(Error::from);
        let stages =
            meta.as_ref().ok().map(|m| settings.zoho.won_stages.clone().unwrap_or_else(|| m.won_stages.clone()));
        report(
            "Deals metadata (scope ZohoCRM.settings.fields.READ)",
            meta.map(|m| format!("won stages {:?}, {} custom fields", m.won_stages, m.custom_fields.len())),
        );
        if let Some(stages) = stages {
            let now = chrono::Utc::now();
            let window = deals::Window { start: now - chrono::Duration::days(1), end: now };
            report(
                "COQL (scope ZohoCRM.coql.READ)",
                deals::count_deals(&zoho, &stages, sync::window::floor_window(window))
                    .await
                    .map(|n| format!("{n} won deals modified in the last 24h"))
                    .map_err(Error::from),
            );
        }
    }
    let warehouse = match &settings.warehouse {
        WarehouseSettings::Sqlite { path } => match SqliteWarehouse::open(path) {
            Ok(w) => check_warehouse(&w, &settings).await.map(|s| format!("SQLite {}: {s}", path.display())),
            Err(e) => Err(e.into()),
        },
        WarehouseSettings::BigQuery { project, dataset, .. } => match bigquery(&settings).await {
            Ok(w) => check_warehouse(&w, &settings).await.map(|s| format!("BigQuery {project}.{dataset}: {s}")),
            Err(e) => Err(e),
        },
    };
    report("warehouse", warehouse);
    Ok(first_failure.unwrap_or(ExitCode::Success))
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
        WarehouseSettings::Sqlite { path } => status_inputs(&SqliteWarehouse::open(path)?).await?,
        WarehouseSettings::BigQuery { .. } => status_inputs(&bigquery(&settings).await?).await?,
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
