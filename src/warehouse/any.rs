//! [`AnyWarehouse`]: the warehouse a run was configured with, whichever it is. The binary opens one (the one
//! place that picks a warehouse) and hands it to the pipeline, which stays generic over [`Warehouse`]; each
//! call is passed on unchanged to the warehouse inside.
//!
//! Not here: opening a warehouse from the settings (the binary's wiring does that) or any behaviour of its own.

use chrono::{DateTime, Utc};

use super::bigquery::BigQueryWarehouse;
use super::sqlite::SqliteWarehouse;
use super::{
    CoveredWindow, LedgerRow, MergeCounts, QuarantinedRow, RunReport, RunStart, StoredDeal, Warehouse, WarehouseError,
};
use crate::deal::DealChange;

/// One of the warehouses this job can write to.
#[derive(Debug)]
pub enum AnyWarehouse {
    /// An embedded SQLite file.
    Sqlite(SqliteWarehouse),
    /// Google BigQuery (or its emulator); boxed, being far larger than the SQLite handle.
    BigQuery(Box<BigQueryWarehouse>),
}

/// Calls the same method on whichever warehouse is inside.
macro_rules! delegate {
    ($self:ident, $w:ident => $call:expr) => {
        match $self {
            AnyWarehouse::Sqlite($w) => $call,
            AnyWarehouse::BigQuery($w) => $call,
        }
    };
}

impl Warehouse for AnyWarehouse {
    async fn prepare(&self) -> Result<(), WarehouseError> {
        delegate!(self, w => w.prepare().await)
    }

    async fn declare_fields(&self, fields: &[crate::deal::FieldColumn]) -> Result<(), WarehouseError> {
        delegate!(self, w => w.declare_fields(fields).await)
    }

    async fn watermark(&self) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        delegate!(self, w => w.watermark().await)
    }

    async fn succeeded_windows(&self) -> Result<Vec<CoveredWindow>, WarehouseError> {
        delegate!(self, w => w.succeeded_windows().await)
    }

    async fn begin_run(&self, run: &RunStart) -> Result<(), WarehouseError> {
        delegate!(self, w => w.begin_run(run).await)
    }

    async fn record_window(&self, run: &RunStart) -> Result<(), WarehouseError> {
        delegate!(self, w => w.record_window(run).await)
    }

    async fn heartbeat(&self, run: &RunStart) -> Result<(), WarehouseError> {
        delegate!(self, w => w.heartbeat(run).await)
    }

    async fn stage(&self, run: &RunStart, changes: &[DealChange]) -> Result<(), WarehouseError> {
        delegate!(self, w => w.stage(run, changes).await)
    }

    async fn merge_ahead(&self, run: &RunStart, rows: usize) -> Result<usize, WarehouseError> {
        delegate!(self, w => w.merge_ahead(run, rows).await)
    }

    async fn commit(&self, run: &RunStart, report: &RunReport) -> Result<MergeCounts, WarehouseError> {
        delegate!(self, w => w.commit(run, report).await)
    }

    async fn fail_run(&self, run: &RunStart, report: &RunReport, error: &str) -> Result<(), WarehouseError> {
        delegate!(self, w => w.fail_run(run, report, error).await)
    }

    async fn count_won_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u64, WarehouseError> {
        delegate!(self, w => w.count_won_in_window(start, end).await)
    }

    async fn holds_deals(&self) -> Result<bool, WarehouseError> {
        delegate!(self, w => w.holds_deals().await)
    }

    async fn won_ids_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<String>, WarehouseError> {
        delegate!(self, w => w.won_ids_in_window(start, end).await)
    }

    async fn ledger(&self) -> Result<Vec<LedgerRow>, WarehouseError> {
        delegate!(self, w => w.ledger().await)
    }

    async fn stored_deals(&self) -> Result<Vec<StoredDeal>, WarehouseError> {
        delegate!(self, w => w.stored_deals().await)
    }

    async fn quarantined(&self) -> Result<Vec<QuarantinedRow>, WarehouseError> {
        delegate!(self, w => w.quarantined().await)
    }
}
