//! The binary: parse the command line, start logging, run, and turn the outcome into an exit code (then the
//! alert webhook, if configured, hears about it). Everything else lives in the library (`app.rs` wires it).

use clap::{CommandFactory, FromArgMatches};
use zoho_deals_sync::error::ExitCode;
use zoho_deals_sync::{alert, app, cli::Cli, telemetry};

fn main() -> std::process::ExitCode {
    let parsed = Cli::command().try_get_matches();
    let format = match telemetry::LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(ExitCode::Config.code());
        }
    };
    telemetry::init(format);
    // Read apart from the rest of the configuration, so that a run failing on its configuration still alerts.
    let alerts = match alert::AlertSettings::from_env() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(exit_code = ExitCode::Config.code(), "{e}");
            return std::process::ExitCode::from(ExitCode::Config.code());
        }
    };
    let runtime = match zoho_deals_sync::app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return std::process::ExitCode::from(ExitCode::Unexpected.code());
        }
    };
    // clap prints usage errors itself and exits with 2, our configuration/usage code (after the alert).
    let matches = parsed.unwrap_or_else(|e| {
        if e.use_stderr() {
            let text = e.to_string();
            runtime.block_on(alert::after_run(alerts.as_ref(), "(command line)", ExitCode::Config, Some(&text)));
        }
        e.exit()
    });
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = matches.subcommand_name().unwrap_or("sync").to_owned();
    let (code, error) = match runtime.block_on(app::run(cli)) {
        Ok(code) => (code, None),
        Err(e) => {
            let code = e.exit_code();
            let chain = app::error_chain(&e);
            tracing::error!(exit_code = code.code(), "{chain}");
            (code, Some(chain))
        }
    };
    runtime.block_on(alert::after_run(alerts.as_ref(), &command, code, error.as_deref()));
    // The last line of every run: log-based metrics and alerts key on `exit_code` here.
    tracing::info!(exit_code = code.code(), command = %command, "zoho-deals-sync finished");
    std::process::ExitCode::from(code.code())
}
