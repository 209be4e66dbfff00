//! The run ledger (`sync_runs`) and the quarantine (`quarantined_deals`) beyond the trait methods.

use super::jobs::{cell, cell_u64, p_i64, p_str};
use super::sql::{SQL_LEASE_RELEASE, SQL_LEASE_RENEW, SQL_QUARANTINE_UPSERT, SQL_RUN_COUNTS};
use super::BigQueryWarehouse;
use crate::warehouse::{MergeCounts, QuarantinedRecord, RunStart, WarehouseError};

impl BigQueryWarehouse {
    /// Extends the lease by `ttl` if `run` still holds it; [`WarehouseError::LeaseLost`] if another run took it.
    pub(super) async fn renew_lease(&self, run: &RunStart, ttl: chrono::Duration) -> Result<(), WarehouseError> {
        let params = vec![p_str("run_id", &run.run_id), p_i64("lease_ttl_ms", ttl.num_milliseconds())];
        let renewed = self.query("extending the lease", self.render(SQL_LEASE_RENEW, &[]), params).await?;
        if renewed.affected == Some(0) {
            return Err(WarehouseError::LeaseLost { run_id: run.run_id.clone() });
        }
        Ok(())
    }

    /// Frees the lease if `run` holds it.
    pub(super) async fn release_lease(&self, run: &RunStart) -> Result<(), WarehouseError> {
        let params = vec![p_str("run_id", &run.run_id)];
        self.query("releasing the lease", self.render(SQL_LEASE_RELEASE, &[]), params).await.map(|_| ())
    }

    /// The counts a run recorded when it succeeded, if it did.
    pub(super) async fn recorded_counts(&self, run: &RunStart) -> Result<Option<MergeCounts>, WarehouseError> {
        let rows = self
            .query("reading the run's ledger row", self.render(SQL_RUN_COUNTS, &[]), vec![p_str("run_id", &run.run_id)])
            .await?
            .rows;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        if cell(&row, 0).as_deref() != Some("succeeded") {
            return Ok(None);
        }
        Ok(Some(MergeCounts {
            upserted: cell_u64(&row, 1),
            unwon: cell_u64(&row, 2),
            deleted: cell_u64(&row, 3),
            won_in_window: cell_u64(&row, 4),
            refused: 0,
        }))
    }

    /// Upserts quarantined records by deal id, in statements of bounded size (each record is a few parameters).
    pub(super) async fn quarantine(&self, run: &RunStart, records: &[QuarantinedRecord]) -> Result<(), WarehouseError> {
        // One row per deal: MERGE refuses a target row matched by two source rows. The last one wins.
        let mut newest: Vec<&QuarantinedRecord> = Vec::new();
        for q in records.iter().rev() {
            if !newest.iter().any(|n| n.deal_id == q.deal_id) {
                newest.push(q);
            }
        }
        for chunk in quarantine_chunks(&newest) {
            let mut params = vec![p_str("run_id", &run.run_id)];
            let rows: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    params.extend([
                        p_str(&format!("d{i}"), &q.deal_id),
                        p_str(&format!("f{i}"), &q.field),
                        p_str(&format!("r{i}"), &q.reason),
                        p_str(&format!("c{i}"), &q.record),
                    ]);
                    format!("SELECT @d{i} AS deal_id, @f{i} AS field, @r{i} AS reason, @c{i} AS record")
                })
                .collect();
            let sql = self.render(SQL_QUARANTINE_UPSERT, &[("source", &rows.join(" UNION ALL "))]);
            self.query("recording quarantined records", sql, params).await?;
        }
        Ok(())
    }
}

/// Splits quarantined records into statements of at most 100 records and about 4 MB of parameters (BigQuery
/// caps a request's size).
pub(super) fn quarantine_chunks<'a>(records: &'a [&'a QuarantinedRecord]) -> Vec<&'a [&'a QuarantinedRecord]> {
    pub(super) const MAX_ROWS: usize = 100;
    pub(super) const MAX_BYTES: usize = 4 * 1024 * 1024;
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, q) in records.iter().enumerate() {
        let size = q.deal_id.len() + q.field.len() + q.reason.len() + q.record.len() + 200;
        if i > start && (i - start == MAX_ROWS || bytes + size > MAX_BYTES) {
            chunks.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// A job label value: lowercase letters, digits, `-` and `_`, at most 63 characters.
pub(super) fn label_value(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .take(63)
        .collect()
}
