//! `zoho-sandbox`: runs the sandbox as a process. Prints `listening on http://HOST:PORT` as its first
//! stdout line, then serves until SIGTERM or ctrl-c.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use zoho_sandbox::{clock, Faults, History, Profile, Sandbox, SandboxConfig};

/// A local stand-in for Zoho's accounts server and CRM v8 API.
#[derive(Debug, Parser)]
#[command(name = "zoho-sandbox", version)]
struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Live deals to generate.
    #[arg(long, default_value_t = 5000)]
    deals: usize,
    /// Data seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The API user's UTC offset, e.g. +05:30, -07:00, Z.
    #[arg(long, default_value = "+05:30", allow_hyphen_values = true)]
    tz: String,
    /// The org's shape: default, free, pipelines or exotic.
    #[arg(long, default_value = "default")]
    profile: String,
    /// How deals spread over time: uniform (120 days, the tests' org) or skewed (five years, mostly recent,
    /// a migration spike).
    #[arg(long, env = "SANDBOX_HISTORY", default_value = "uniform")]
    history: String,
    /// Deals deleted before start (default 1% of --deals).
    #[arg(long)]
    deleted: Option<usize>,
    /// Fraction of CRM calls answered 429.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Fraction of CRM calls answered 500.
    #[arg(long, default_value_t = 0.0)]
    rate_500: f64,
    /// Fraction of CRM calls whose connection is dropped.
    #[arg(long, default_value_t = 0.0)]
    rate_drop: f64,
    /// Base latency added to each CRM call, in ms.
    #[arg(long, env = "SANDBOX_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Latency added per record in a CRM response, in ms (0.1: a 2,000-row page takes 200 ms more).
    #[arg(long, env = "SANDBOX_LATENCY_PER_RECORD_MS", default_value_t = 0.0)]
    latency_per_record_ms: f64,
    /// Each CRM call's base latency varies within ± this many ms (seeded by --seed).
    #[arg(long, env = "SANDBOX_LATENCY_JITTER_MS", default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Latency of the accounts server (/oauth/v2/*), in ms.
    #[arg(long, env = "SANDBOX_ACCOUNTS_LATENCY_MS", default_value_t = 0)]
    accounts_latency_ms: u64,
    /// Concurrent CRM calls allowed.
    #[arg(long, default_value_t = 25)]
    max_concurrency: usize,
    /// Concurrent COQL calls allowed.
    #[arg(long, default_value_t = 10)]
    coql_concurrency: usize,
    /// Access token lifetime, seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Token mints allowed per refresh token per window.
    #[arg(long, default_value_t = 10)]
    mint_limit: usize,
    /// Mint throttle window, seconds.
    #[arg(long, default_value_t = 600)]
    mint_window_secs: u64,
    /// Active access tokens per refresh token.
    #[arg(long, default_value_t = 15)]
    max_active_tokens: usize,
    /// A scope every token lacks (routes needing it answer OAUTH_SCOPE_MISMATCH).
    #[arg(long)]
    missing_scope: Option<String>,
    /// Daily API-credit allowance.
    #[arg(long, default_value_t = 100_000)]
    credits_per_day: u64,
    /// The user denies consent at /oauth/v2/auth (redirect with error=access_denied).
    #[arg(long)]
    oauth_deny: bool,
    /// COQL refuses COUNT(id) with INVALID_QUERY.
    #[arg(long)]
    refuse_count_id: bool,
    /// GET /Deals/deleted answers 403 NO_PERMISSION.
    #[arg(long)]
    deleted_forbidden: bool,
    /// 401 code for bad/expired/revoked tokens: INVALID_TOKEN or AUTHENTICATION_FAILURE.
    #[arg(long, default_value = "INVALID_TOKEN")]
    token_error_code: String,
    /// /Deals/deleted reaches back only 60 days (recycle bin) / 120 days (permanent).
    #[arg(long)]
    deleted_retention: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(tz) = clock::parse_tz(&cli.tz) else {
        eprintln!("zoho-sandbox: --tz must look like +05:30, -07:00 or Z (got {})", cli.tz);
        return ExitCode::from(2);
    };
    let Some(profile) = Profile::parse(&cli.profile) else {
        eprintln!("zoho-sandbox: --profile must be default, free, pipelines or exotic (got {})", cli.profile);
        return ExitCode::from(2);
    };
    let Some(history) = History::parse(&cli.history) else {
        eprintln!("zoho-sandbox: --history (SANDBOX_HISTORY) must be uniform or skewed (got {})", cli.history);
        return ExitCode::from(2);
    };
    let config = SandboxConfig {
        profile,
        history,
        deals: cli.deals,
        seed: cli.seed,
        tz_offset_minutes: tz,
        initially_deleted: cli.deleted,
        faults: Faults {
            rate_429: cli.rate_429,
            rate_500: cli.rate_500,
            rate_drop: cli.rate_drop,
            latency_ms: cli.latency_ms,
            latency_per_record_ms: cli.latency_per_record_ms,
            latency_jitter_ms: cli.latency_jitter_ms,
            accounts_latency_ms: cli.accounts_latency_ms,
            max_concurrency: cli.max_concurrency,
            coql_concurrency: cli.coql_concurrency,
            token_ttl_secs: cli.token_ttl_secs,
            mint_limit: cli.mint_limit,
            mint_window_secs: cli.mint_window_secs,
            max_active_tokens: cli.max_active_tokens,
            missing_scope: cli.missing_scope,
            credits_per_day: cli.credits_per_day,
            oauth_deny: cli.oauth_deny,
            refuse_count_id: cli.refuse_count_id,
            deleted_forbidden: cli.deleted_forbidden,
            token_error_code: cli.token_error_code,
            deleted_retention: cli.deleted_retention,
        },
    };
    let sandbox = match Sandbox::start_on(config, &cli.host, cli.port).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zoho-sandbox: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", sandbox.base_url());
    let _ = out.flush();
    wait_for_signal().await;
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
