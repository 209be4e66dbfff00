//! The one integration-test binary: black-box tests that start the Zoho sandbox and real warehouses, and run
//! the real binary against them.

mod bigquery_faults;
mod bq_proxy;
mod budget;
mod conformance;
mod custom_fields;
mod dbt;
mod drills;
mod exit_codes;
mod helpers;
mod in_flight;
mod manifests;
mod money_history;
mod monitoring;
mod orgs;
mod overlap;
mod parity;
mod queries;
mod resilience;
mod security;
mod sync;
