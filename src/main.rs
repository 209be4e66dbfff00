//! The binary: parse the command line, start logging, run, and turn the outcome into an exit code.
//! Everything else lives in the library (`app.rs` wires it).

use clap::Parser;
use zoho_deals_sync::error::ExitCode;
use zoho_deals_sync::{app, cli::Cli, telemetry};

fn main() -> std::process::ExitCode {
    // clap prints usage errors itself and exits with 2, our configuration/usage code.
    let cli = Cli::parse();
    let format = match telemetry::LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(ExitCode::Config.code());
        }
    };
    telemetry::init(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return std::process::ExitCode::from(ExitCode::Unexpected.code());
        }
    };
    let code = match runtime.block_on(app::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            tracing::error!(exit_code = code.code(), "{}", app::error_chain(&e));
            code
        }
    };
    std::process::ExitCode::from(code.code())
}
