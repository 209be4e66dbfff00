//! `closed_won_deals_history` on BigQuery (issue #11, part B): the table, and the two idempotent commit steps
//! that write this run's versions into it (see [`crate::warehouse::HISTORY_TABLE`] for the argument).
//!
//! No transaction: BigQuery's multi-statement transactions would make the merge and the history atomic, but
//! the emulator fails a MERGE inside `BEGIN … COMMIT` (sql/README.md), and each step converges on a rerun
//! anyway: a crash after the merge, or between the two steps, is repaired by the rerun's merge (which stamps the
//! same rows with its run id) followed by both steps. Readers may briefly see a deal with no current version
//! (between the steps), never one with two.

use std::collections::HashSet;

use super::jobs::p_str;
use super::BigQueryWarehouse;
use crate::warehouse::columns::{bigquery_type, CustomColumn};
use crate::warehouse::{
    history_column_names, history_deal_columns, RunStart, WarehouseError, HISTORY_META_COLUMNS, HISTORY_TABLE,
};

pub(super) const SQL_HISTORY_TABLE: &str = include_str!("../../../sql/closed_won_deals_history.sql");
pub(super) const SQL_HISTORY_CLOSE: &str = include_str!("../../../sql/history_close.sql");
pub(super) const SQL_HISTORY_INSERT: &str = include_str!("../../../sql/history_insert.sql");

impl BigQueryWarehouse {
    /// Creates the history table, or adds the columns a newer version of the job has.
    pub(super) async fn prepare_history(&self) -> Result<(), WarehouseError> {
        let columns = HISTORY_META_COLUMNS
            .iter()
            .chain(history_deal_columns())
            .map(|c| format!("{} {}", c.name, c.bigquery_type))
            .collect::<Vec<_>>()
            .join(",\n  ");
        let sql = self.render(SQL_HISTORY_TABLE, &[("columns", &columns)]);
        self.query("creating closed_won_deals_history", sql, vec![]).await?;
        let existing: HashSet<String> = self.table_columns(HISTORY_TABLE).await?.into_iter().collect();
        let adds = history_deal_columns()
            .filter(|c| !existing.contains(c.name))
            .map(|c| format!("ADD COLUMN IF NOT EXISTS {} {}", c.name, c.bigquery_type))
            .collect::<Vec<_>>();
        if !adds.is_empty() {
            let sql = self.render(&format!("ALTER TABLE `{{{{dataset}}}}.{HISTORY_TABLE}` {}", adds.join(", ")), &[]);
            self.query("adding new columns to closed_won_deals_history", sql, vec![]).await?;
        }
        Ok(())
    }

    /// Adds the custom columns `custom` the history table lacks (`ADD COLUMN`: older versions read NULL).
    pub(super) async fn add_history_columns(&self, custom: &[CustomColumn]) -> Result<(), WarehouseError> {
        if custom.is_empty() {
            return Ok(());
        }
        let existing: HashSet<String> = self.table_columns(HISTORY_TABLE).await?.into_iter().collect();
        let adds = custom
            .iter()
            .filter(|c| !existing.contains(&c.name))
            .map(|c| format!("ADD COLUMN IF NOT EXISTS {} {}", c.name, bigquery_type(c.cell_type)))
            .collect::<Vec<_>>();
        if !adds.is_empty() {
            let sql = self.render(&format!("ALTER TABLE `{{{{dataset}}}}.{HISTORY_TABLE}` {}", adds.join(", ")), &[]);
            self.query("adding custom columns to closed_won_deals_history", sql, vec![]).await?;
        }
        Ok(())
    }

    /// The custom columns a history version copies.
    fn history_custom(&self) -> Vec<CustomColumn> {
        self.history_custom.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Commit step 2c: closes the versions this run's merge replaced, then inserts the new ones (the standard
    /// columns and the custom ones `declare_fields` chose).
    pub(super) async fn record_history(&self, run: &RunStart) -> Result<(), WarehouseError> {
        let custom = self.history_custom();
        let cols: Vec<&str> = history_column_names(&custom).collect();
        let t_cols = cols.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
        let params = || vec![p_str("run_id", &run.run_id)];
        let close = self.render(SQL_HISTORY_CLOSE, &[]);
        self.query("closing replaced history versions", close, params()).await?;
        self.renew_lease(run, run.lease_ttl).await?;
        let insert = self.render(SQL_HISTORY_INSERT, &[("columns", &cols.join(", ")), ("t_columns", &t_cols)]);
        self.query("recording new history versions", insert, params()).await?;
        self.renew_lease(run, run.lease_ttl).await
    }
}
