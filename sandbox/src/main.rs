//! `zoho-sandbox`: runs the sandbox as a process. Prints `listening on http://HOST:PORT` as its first
//! stdout line, then serves until SIGTERM or ctrl-c.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use zoho_sandbox::{clock, Faults, Sandbox, SandboxConfig};

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
    /// Latency added to each CRM call, in ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(tz) = clock::parse_tz(&cli.tz) else {
        eprintln!("zoho-sandbox: --tz must look like +05:30, -07:00 or Z (got {})", cli.tz);
        return ExitCode::from(2);
    };
    let config = SandboxConfig {
        deals: cli.deals,
        seed: cli.seed,
        tz_offset_minutes: tz,
        initially_deleted: cli.deleted,
        faults: Faults {
            rate_429: cli.rate_429,
            rate_500: cli.rate_500,
            rate_drop: cli.rate_drop,
            latency_ms: cli.latency_ms,
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
