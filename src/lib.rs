//! zoho-deals-sync: copies closed-won deals from Zoho CRM into a warehouse (BigQuery or SQLite).
//!
//! Data flows one way: `zoho` → `sync` → `warehouse`, sharing the domain type in `deal`.

pub mod deal;
pub mod warehouse;
