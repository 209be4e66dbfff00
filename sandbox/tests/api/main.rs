//! Black-box tests of the sandbox over real HTTP: one test binary, one module per area.

mod helpers;

mod cli;
mod coql;
mod faults;
mod knobs;
mod latency;
mod metadata;
mod oauth;
mod profiles;
mod records;
