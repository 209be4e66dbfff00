//! The command line: subcommands and flags (clap derive), and the conversion of raw flag text into typed
//! values. Configuration that a scheduler sets (credentials, warehouse) lives in the environment instead.

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  zoho-deals-sync                              # nightly: from the last successful run (or 24h) to now
  zoho-deals-sync sync --since 7d              # backfill the last 7 days
  zoho-deals-sync sync --since 2026-01-01 --until 2026-02-01
  zoho-deals-sync sync --dry-run               # print the plan, write nothing
  zoho-deals-sync check                        # verify credentials, scopes, stages, warehouse
  zoho-deals-sync exchange-grant -             # Self Client grant token (read from stdin) -> refresh token
  zoho-deals-sync authorize                    # Connected App: browser consent -> refresh token
  zoho-deals-sync revoke --yes                 # revoke ZOHO_REFRESH_TOKEN (after deploying a new one)
  zoho-deals-sync status --max-age 26h         # freshness probe: exit 10 when the data is older

Configuration comes from the environment (ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN, ...);
see README.md. Exit codes: 0 ok, 1 unexpected, 2 config, 3 Zoho credentials, 4 token throttled,
5 Zoho unavailable, 6 credit budget, 7 warehouse, 8 partial, 9 another run in progress, 10 stale (status).";

/// Copies closed-won deals from Zoho CRM into BigQuery or SQLite.
#[derive(Debug, Parser)]
#[command(name = "zoho-deals-sync", version = crate::VERSION, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

const SYNC_EXAMPLES: &str = "\
Examples:
  zoho-deals-sync sync                                   # from the watermark (or SYNC_LOOKBACK) to now
  zoho-deals-sync sync --since 7d                        # backfill the last 7 days
  zoho-deals-sync sync --since 2026-01-01 --until 2026-02-01
  zoho-deals-sync sync --since 2024-01-01 --max-credits 5000
  zoho-deals-sync sync --dry-run                         # the plan: window, stages, deals, credits";

const CHECK_EXAMPLES: &str = "\
Examples:
  zoho-deals-sync check          # one line per check: ok, or FAIL with what to fix; exit code of the first failure";

const GRANT_EXAMPLES: &str = "\
Examples:
  ZOHO_CLIENT_ID=1000.XXXX ZOHO_CLIENT_SECRET=... ZOHO_DC=eu zoho-deals-sync exchange-grant -   # paste, then Ctrl-D
  zoho-deals-sync exchange-grant - < grant.txt | gcloud secrets versions add zoho-refresh-token --data-file=-
  ZOHO_GRANT_TOKEN=1000.abc... zoho-deals-sync exchange-grant

The grant is read from stdin (`-`) or ZOHO_GRANT_TOKEN; on the command line it would show in `ps` and in the
shell's history.";

const STATUS_EXAMPLES: &str = "\
Examples:
  zoho-deals-sync status                  # last success and its age, failures in a row, quarantines, watermark
  zoho-deals-sync status --max-age 26h    # exit 10 when the newest succeeded window ended more than 26h ago
  zoho-deals-sync status --json           # the same as one JSON object (for scripts and dashboards)

Reads only the warehouse's ledger: needs no Zoho credentials and makes no Zoho call.";

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync won deals modified in a window into the warehouse (the default command).
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
    /// Verify credentials, scopes, won-stage discovery and warehouse reachability; print what to fix.
    #[command(after_help = CHECK_EXAMPLES)]
    Check,
    /// Is the warehouse fresh? Last success, failures, quarantines, reconciliation, watermark (no Zoho call).
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Exchange a Self Client grant token for a refresh token (printed alone on stdout).
    #[command(after_help = GRANT_EXAMPLES)]
    ExchangeGrant {
        /// `-` to read the grant token (Zoho API console: Self Client → Generate Code; single use, minutes valid)
        /// from stdin; without it, ZOHO_GRANT_TOKEN. A literal token works too, but shows in `ps` and history.
        #[arg(value_name = "-")]
        grant_token: Option<String>,
    },
    /// Run Zoho's authorization-code flow for a Connected App: print the consent URL, wait for the browser's
    /// redirect on a loopback port, print the refresh token alone on stdout.
    #[command(after_help = AUTHORIZE_EXAMPLES)]
    Authorize {
        /// Loopback port for the redirect (http://127.0.0.1:PORT/callback); 0 picks a free one.
        #[arg(long, default_value_t = 8976)]
        port: u16,
        /// How long to wait for the consent (90s, 5m, ...).
        #[arg(long, default_value = "5m", value_name = "DURATION")]
        timeout: String,
    },
    /// Revoke a refresh token (ZOHO_REFRESH_TOKEN, or `-` to read it from stdin), e.g. the old one after a
    /// rotation. Refuses without --yes.
    #[command(after_help = REVOKE_EXAMPLES)]
    Revoke {
        /// `-` to read the token from stdin; without it, ZOHO_REFRESH_TOKEN.
        #[arg(value_name = "-")]
        token: Option<String>,
        /// Confirm: the token and every access token minted from it stop working at once.
        #[arg(long)]
        yes: bool,
    },
    /// Compare the warehouse's won deals with Zoho's and flag those Zoho no longer has as won or at all
    /// (deletions older than Zoho's 60/120-day retention, missed un-wins). Schedule it weekly.
    #[command(after_help = RECONCILE_EXAMPLES)]
    Reconcile {
        /// Compare only deals modified since T (same forms as `sync --since`); default: all of history.
        #[arg(long, value_name = "T")]
        since: Option<String>,
    },
}

const RECONCILE_EXAMPLES: &str = "Examples:
  zoho-deals-sync reconcile                 # the whole history (3 credits per 2000 won deals)
  zoho-deals-sync reconcile --since 180d    # deals modified in the last 180 days";

const AUTHORIZE_EXAMPLES: &str = "\
Examples:
  ZOHO_CLIENT_ID=1000.XXXX ZOHO_CLIENT_SECRET=... ZOHO_DC=eu zoho-deals-sync authorize
  zoho-deals-sync authorize --port 9000 --timeout 10m | gcloud secrets versions add zoho-refresh-token --data-file=-

Register http://127.0.0.1:<port>/callback (default port 8976) as the Connected App's redirect URI. The consent
URL is printed on stderr; only the refresh token is printed on stdout.";

const REVOKE_EXAMPLES: &str = "\
Examples:
  ZOHO_REFRESH_TOKEN=<old token> zoho-deals-sync revoke --yes    # after the new token is deployed
  zoho-deals-sync revoke --yes - < old-token.txt

Rotation: make a new refresh token (authorize or exchange-grant), deploy it, check that a run succeeds,
then revoke the old one. Revoking also ends every access token minted from it.";

/// Flags of `sync`.
#[derive(Debug, Default, clap::Args)]
pub struct SyncArgs {
    /// Start of a backfill window: RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01, UTC midnight) or a
    /// duration back from now (36h, 7d). Without it the window starts at the watermark.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// End of the window (same forms as --since); default now.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Print the plan (window, won stages, deals and credits it would take, tables it would touch); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop before spending more than N Zoho API credits (also SYNC_MAX_CREDITS).
    #[arg(long, value_name = "N")]
    pub max_credits: Option<u64>,
}

/// Flags of `status`.
#[derive(Debug, Default, clap::Args)]
pub struct StatusArgs {
    /// Exit 10 ("stale") when the newest succeeded run's window ended longer ago than this (90s, 15m, 26h, 7d),
    /// or when no run has succeeded yet.
    #[arg(long, value_name = "DUR", value_parser = parse_max_age)]
    pub max_age: Option<std::time::Duration>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_max_age(v: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(v)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{v:?} is not a duration: write it like 90s, 15m, 26h or 7d"))
}

/// Parses a `--since`/`--until` value relative to `now`.
pub fn parse_time(flag: &str, value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = parse_any_time(flag, value, now)?;
    // A start in the future would otherwise surface as an empty window blamed on --until.
    if flag == "--since" && t > now {
        return Err(format!(
            "--since {value:?} ({}) is in the future: a backfill starts in the past; give an earlier date or a \
             duration back from now (36h, 7d)",
            crate::deal::format_utc(&t)
        ));
    }
    Ok(t)
}

fn parse_any_time(flag: &str, value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    if let Some(d) = crate::config::parse_duration(v) {
        if let Ok(d) = chrono::Duration::from_std(d) {
            return Ok(now - d);
        }
    }
    Err(format!(
        "{flag} {value:?} is not a time: use RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01) or a duration back from now (36h, 7d)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn three_forms_of_time_parse() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("valid");
        assert_eq!(parse_time("--since", "36h", now), Ok(now - chrono::Duration::hours(36)));
        assert_eq!(
            parse_time("--since", "2026-11-01", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid"))
        );
        assert_eq!(
            parse_time("--since", "2026-11-01T05:30:00+05:30", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid"))
        );
        assert!(parse_time("--since", "yesterday", now).expect_err("bad").contains("--since"));
    }

    #[test]
    fn a_since_in_the_future_says_so_and_does_not_blame_until() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("valid");
        let e = parse_time("--since", "2027-01-01", now).expect_err("future");
        assert!(e.contains("--since") && e.contains("in the future") && !e.contains("--until"), "{e}");
        assert_eq!(parse_time("--since", "2026-11-28T12:00:00Z", now), Ok(now));
    }
}
