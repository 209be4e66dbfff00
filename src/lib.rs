//! zoho-deals-sync: copies closed-won deals from Zoho CRM into a warehouse (BigQuery or SQLite).
//!
//! Data flows one way: `zoho` → `sync` → `warehouse`, sharing the domain type in `deal`; `app` wires them
//! for the binary.

pub mod alert;
pub mod app;
pub mod cli;
pub mod config;
pub mod deal;
pub mod error;
pub mod error_chain;
pub mod retry;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod warehouse;
pub mod zoho;

/// `--version`: the crate version and the git commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ZDS_GIT_COMMIT"), ")");
