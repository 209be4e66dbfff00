//! The run's staging table: created, streamed into with `tabledata.insertAll`, dropped.

use super::*;

/// insertAll takes at most 500 rows per request (Google's recommendation; the hard limit is 50,000) …
pub(super) const INSERT_MAX_ROWS: usize = 500;
/// … and at most 10 MB per request; `raw` can be large, so batches are also cut by size, with headroom.
pub(super) const INSERT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// insertAll's `insertId` is at most 128 characters.
pub(super) const INSERT_ID_MAX: usize = 128;

impl BigQueryWarehouse {
    pub(super) fn staging_table(run: &RunStart) -> String {
        let mut name: String =
            run.run_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        name.truncate(200);
        format!("_staging_{name}")
    }

    pub(super) async fn ensure_staging(&self, table: &str) -> Result<(), WarehouseError> {
        if self.staging_known(table) {
            return Ok(());
        }
        let columns =
            DEAL_COLUMNS.iter().map(|c| format!("{} {}", c.name, c.bigquery_type)).collect::<Vec<_>>().join(",\n  ");
        let sql = self.render(SQL_STAGING_TABLE, &[("staging", table), ("columns", &columns)]);
        self.query("creating the staging table", sql, vec![]).await?;
        if let Ok(mut known) = self.staging_created.lock() {
            known.insert(table.to_owned());
        }
        Ok(())
    }

    pub(super) fn staging_known(&self, table: &str) -> bool {
        self.staging_created.lock().map(|known| known.contains(table)).unwrap_or(false)
    }

    pub(super) fn forget_staging(&self, table: &str) {
        if let Ok(mut known) = self.staging_created.lock() {
            known.remove(table);
        }
    }

    /// Whether `table` exists in the dataset.
    pub(super) async fn table_exists(&self, table: &str) -> Result<bool, WarehouseError> {
        Ok(self.table_schema(table).await?.is_some())
    }

    /// Streams one batch (≤ [`INSERT_MAX_ROWS`] rows, ≤ [`INSERT_MAX_BYTES`]) into `table`.
    pub(super) async fn insert_batch(&self, table: &str, batch: &[StagedRow]) -> Result<(), Failure> {
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let attempt = || async {
            let mut request = TableDataInsertAllRequest::new();
            request
                .add_rows(
                    batch
                        .iter()
                        .map(|r| TableDataInsertAllRequestRows {
                            insert_id: Some(r.insert_id.clone()),
                            json: r.json.clone(),
                        })
                        .collect(),
                )
                .map_err(|e| classify(&e, "building the insertAll request"))?;
            let response = self.client.tabledata().insert_all(project, dataset, table, request).await.map_err(|e| {
                let mut f = classify(&e, "streaming rows into staging");
                // A table created seconds ago may not be visible to the streaming backend yet.
                f.retryable |= f.not_found;
                f
            })?;
            row_errors(batch, response.insert_errors.unwrap_or_default())
        };
        retry(policy(), attempt, |f: &Failure, wait| {
            tracing::warn!(table, error = %f.error, ?wait, "insertAll failed; retrying the batch");
        })
        .await
    }

    pub(super) async fn drop_staging(&self, table: &str) -> Result<(), WarehouseError> {
        let sql = self.render("DROP TABLE IF EXISTS `{{dataset}}.{{staging}}`", &[("staging", table)]);
        self.query("dropping the staging table", sql, vec![]).await?;
        self.forget_staging(table);
        Ok(())
    }
}

/// Cuts rows into insertAll requests of at most [`INSERT_MAX_ROWS`] rows and about [`INSERT_MAX_BYTES`].
pub(super) fn batches(rows: &[StagedRow]) -> Vec<&[StagedRow]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && (i - start == INSERT_MAX_ROWS || bytes + row.size > INSERT_MAX_BYTES) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row.size;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Per-row insertAll errors: a row BigQuery found invalid is rejected with its deal id (the rest of that
/// request is `stopped`, not stored); rows that only failed transiently make the whole request retryable
/// (their insertIds make the retry safe).
pub(super) fn row_errors(
    batch: &[StagedRow],
    errors: Vec<gcp_bigquery_client::model::table_data_insert_all_response_insert_errors::TableDataInsertAllResponseInsertErrors>,
) -> Result<(), Failure> {
    if errors.is_empty() {
        return Ok(());
    }
    pub(super) const COLLATERAL: &[&str] = &["stopped", "timeout", "backendError", "internalError"];
    let mut rejected = errors.iter().flat_map(|row| {
        row.errors
            .iter()
            .flatten()
            .filter(|e| !COLLATERAL.contains(&e.reason.as_deref().unwrap_or("")))
            .map(move |e| (row.index, e))
    });
    if let Some((index, e)) = rejected.next() {
        let deal_id = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| batch.get(i))
            .map(|r| r.deal_id.clone())
            .unwrap_or_else(|| "(unknown)".to_owned());
        let others = rejected.count();
        let mut reason = format!(
            "{} ({}{})",
            e.message.as_deref().unwrap_or("no message"),
            e.reason.as_deref().unwrap_or("no reason"),
            e.location.as_deref().filter(|l| !l.is_empty()).map(|l| format!(", field {l}")).unwrap_or_default()
        );
        if others > 0 {
            reason.push_str(&format!("; {others} more rejected in the same request, none of which was stored"));
        }
        return Err(Failure {
            error: WarehouseError::RowRejected { deal_id, reason },
            retryable: false,
            not_found: false,
        });
    }
    Err(Failure {
        error: WarehouseError::Unavailable(format!("insertAll failed transiently for {} rows", errors.len())),
        retryable: true,
        not_found: false,
    })
}
