//! The statement templates of `sql/`, compiled in, and the column lists generated from `DEAL_COLUMNS`.

use crate::warehouse::columns::{column_names, CustomColumn};
use crate::warehouse::{DEAL_COLUMNS, WON_AT_COLUMNS};

pub(super) const SQL_CREATE_DATASET: &str = include_str!("../../../sql/create_dataset.sql");
pub(super) const SQL_DEALS_TABLE: &str = include_str!("../../../sql/closed_won_deals.sql");

/// The column definitions of `closed_won_deals` for its CREATE TABLE, with descriptions, from [`DEAL_COLUMNS`].
pub(super) fn deal_columns_ddl() -> String {
    DEAL_COLUMNS
        .iter()
        .map(|c| format!("{} {} OPTIONS (description = {})", c.name, c.bigquery_type, string_literal(c.description)))
        .collect::<Vec<_>>()
        .join(",\n  ")
}

/// A GoogleSQL string literal (single quotes; backslash and quote escaped).
pub(super) fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
pub(super) const SQL_RUNS_TABLE: &str = include_str!("../../../sql/sync_runs.sql");
pub(super) const SQL_QUARANTINE_TABLE: &str = include_str!("../../../sql/quarantined_deals.sql");
pub(super) const SQL_QUARANTINE_RESOLVE: &str = include_str!("../../../sql/quarantine_resolve.sql");
pub(super) const SQL_QUARANTINE_UPSERT: &str = include_str!("../../../sql/quarantine_upsert.sql");
pub(super) const SQL_FLAG_QUARANTINED: &str = include_str!("../../../sql/flag_quarantined.sql");
pub(super) const SQL_STAGING_TABLE: &str = include_str!("../../../sql/staging.sql");
pub(super) const SQL_MERGE_SOURCE: &str = include_str!("../../../sql/merge_source.sql");
pub(super) const SQL_MERGE: &str = include_str!("../../../sql/merge.sql");
pub(super) const SQL_MERGE_COUNTS: &str = include_str!("../../../sql/merge_counts.sql");
pub(super) const SQL_MARK_DELETED: &str = include_str!("../../../sql/mark_deleted.sql");
pub(super) const SQL_MARK_VANISHED: &str = include_str!("../../../sql/mark_vanished.sql");
pub(super) const SQL_COUNT_WON: &str = include_str!("../../../sql/count_won.sql");
pub(super) const SQL_WON_IDS: &str = include_str!("../../../sql/won_ids.sql");
pub(super) const SQL_HOLDS_DEALS: &str = include_str!("../../../sql/holds_deals.sql");
pub(super) const SQL_RUN_BEGIN: &str = include_str!("../../../sql/run_begin.sql");
pub(super) const SQL_RUN_WINDOW: &str = include_str!("../../../sql/run_window.sql");
pub(super) const SQL_RUNS_ABANDONED: &str = include_str!("../../../sql/runs_abandoned.sql");
pub(super) const SQL_LEASE_TABLE: &str = include_str!("../../../sql/sync_lease.sql");
pub(super) const SQL_LEASE_SEED: &str = include_str!("../../../sql/lease_seed.sql");
pub(super) const SQL_LEASE_TAKE: &str = include_str!("../../../sql/lease_take.sql");
pub(super) const SQL_LEASE_RENEW: &str = include_str!("../../../sql/lease_renew.sql");
pub(super) const SQL_LEASE_RELEASE: &str = include_str!("../../../sql/lease_release.sql");
pub(super) const SQL_LEASE_HOLDER: &str = include_str!("../../../sql/lease_holder.sql");
pub(super) const SQL_STAGE_INSERT: &str = include_str!("../../../sql/stage_insert.sql");
pub(super) const SQL_STAGED_COUNTS: &str = include_str!("../../../sql/staged_counts.sql");
pub(super) const SQL_DEDUPE: &str = include_str!("../../../sql/dedupe_deals.sql");
pub(super) const SQL_RUN_SUCCEEDED: &str = include_str!("../../../sql/run_succeeded.sql");
pub(super) const SQL_RUN_FAILED: &str = include_str!("../../../sql/run_failed.sql");
pub(super) const SQL_RUN_COUNTS: &str = include_str!("../../../sql/run_counts.sql");
pub(super) const SQL_SUCCEEDED_WINDOWS: &str = include_str!("../../../sql/succeeded_windows.sql");
pub(super) const SQL_DEAL_FIELDS_TABLE: &str = include_str!("../../../sql/deal_fields.sql");
pub(super) const SQL_DEAL_FIELDS_UPSERT: &str = include_str!("../../../sql/deal_fields_upsert.sql");
pub(super) const SQL_LEDGER: &str = include_str!("../../../sql/ledger.sql");
/// Analyst views, created (or replaced) by `prepare`, in dependency order.
pub(super) const SQL_VIEWS: &[(&str, &str)] = &[
    ("current_won_deals", include_str!("../../../sql/views/current_won_deals.sql")),
    ("won_revenue_by_month_owner", include_str!("../../../sql/views/won_revenue_by_month_owner.sql")),
    ("time_to_close", include_str!("../../../sql/views/time_to_close.sql")),
    ("won_revenue_by_won_month", include_str!("../../../sql/views/won_revenue_by_won_month.sql")),
    ("sync_status", include_str!("../../../sql/views/sync_status.sql")),
];

/// The three column lists of `merge.sql` for the current [`DEAL_COLUMNS`]: the SET list of a won update,
/// and the INSERT's columns and values. Flags, `synced_at` and `run_id` are set by the merge itself.
pub(super) fn merge_column_lists(custom: &[CustomColumn]) -> (String, String, String) {
    let custom_names = custom.iter().map(|c| c.name.as_str());
    let update = DEAL_COLUMNS
        .iter()
        .filter(|c| c.is_data() && !WON_AT_COLUMNS.contains(&c.name))
        .map(|c| c.name)
        .chain(custom_names.clone())
        .map(|c| format!("{c} = s.{c}"))
        // The won date of a row already won never moves; a re-won row takes the staged one. Every right-hand
        // side of a MERGE's UPDATE reads the target row as it was before the statement.
        .chain([
            "won_at = IF(t.is_closed_won, t.won_at, s.won_at)".to_owned(),
            "won_at_source = IF(t.is_closed_won, IFNULL(t.won_at_source, 'unknown'), s.won_at_source)".to_owned(),
        ])
        .collect::<Vec<_>>()
        .join(", ");
    let columns = column_names(custom).collect::<Vec<_>>().join(", ");
    let values = DEAL_COLUMNS
        .iter()
        .map(|c| match c.name {
            "is_closed_won" => "TRUE".to_owned(),
            "is_deleted" => "FALSE".to_owned(),
            "deleted_time" => "NULL".to_owned(),
            "is_quarantined" => "FALSE".to_owned(),
            "synced_at" => "CURRENT_TIMESTAMP()".to_owned(),
            "run_id" => "@run_id".to_owned(),
            name => format!("s.{name}"),
        })
        .chain(custom_names.map(|c| format!("s.{c}")))
        .collect::<Vec<_>>()
        .join(", ");
    (update, columns, values)
}
