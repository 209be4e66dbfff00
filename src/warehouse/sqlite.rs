//! The embedded warehouse: one SQLite file with the same tables and the same semantics as BigQuery.
//!
//! Types: timestamps are RFC 3339 UTC text ending in `Z` (so text order is time order), dates `YYYY-MM-DD`,
//! money exact decimal text, booleans 0/1, `raw` JSON text. Staging is a TEMP table keyed by `run_id` (outside
//! the write-ahead log, so each row is logged once, by the merge; SQLite puts it in `$TMPDIR`); the merge,
//! the reconciliation count and the ledger update are one transaction. rusqlite is blocking, so every call
//! runs on tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension, Row};
use rust_decimal::Decimal;

use super::columns::{
    self, change_cells, custom_cells, plan_fields, readable_custom, CustomColumn, KnownField, Unreadable,
};
use super::{
    change_kind, CoveredWindow, LedgerRow, MergeCounts, QuarantinedRow, RunKind, RunReport, RunStart, StoredDeal,
    Warehouse, WarehouseError, DEAL_COLUMNS, HISTORY_META_COLUMNS, HISTORY_TABLE, WON_AT_COLUMNS,
};
use crate::deal::{format_utc, Cell, CellType, DealChange, ExactDecimal, FieldColumn};

/// Another connection (a concurrent run, an analyst) may hold the write lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The page size of a file this job creates (SQLite's default is 4 KiB; see `SqliteWarehouse::open`).
const PAGE_SIZE: i64 = 16 * 1024;

/// Rows encoded and inserted per step of [`Warehouse::stage`] (see there).
const STAGE_CHUNK_ROWS: usize = 250;

/// The SQLite warehouse.
#[derive(Clone)]
pub struct SqliteWarehouse {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// The custom columns this run fills (set by `declare_fields`).
    custom: Arc<Mutex<Vec<CustomColumn>>>,
    /// The custom columns a history version copies (set by `declare_fields`, see [`columns::history_custom`]).
    history_custom: Arc<Mutex<Vec<CustomColumn>>>,
    /// The merge [`Warehouse::merge_ahead`] began: while it is `Some`, the connection holds an open write
    /// transaction that `commit` ends and `fail_run` rolls back. Locked only inside [`SqliteWarehouse::with`],
    /// under the connection's lock.
    ahead: Arc<Mutex<Option<Ahead>>>,
}

/// What the steps of [`Warehouse::merge_ahead`] merged, inside the write transaction the first one opened. The
/// rows a step changes are copied first as they were (`temp.ahead_before`), so that `commit` can undo them
/// exactly and merge everything at once. (Not a savepoint: rolling back to one would also undo the rows staged
/// after it.)
#[derive(Clone, Debug)]
struct Ahead {
    /// The staged rows merged: every row with a `rowid` up to this one (staging's rowids only grow). The steps
    /// merged `(0, through_rowid]` as one merge would: each step's deals had no row in the steps before it.
    through_rowid: i64,
    /// A step found a deal with rows before it and in it: no further step is taken (the commit merges the rest,
    /// and undoes the steps if that deal still has rows on both sides).
    stopped: bool,
    upserted: u64,
    unwon: u64,
    /// The merge's `synced_at`, which the rest of the run's merge reuses: one run, one `synced_at`.
    synced_at: String,
    /// The largest history `rowid` before the first step wrote the history of what it merged: the versions the
    /// steps inserted are the rows above it (see [`undo_ahead_history`]).
    history_before: i64,
}

impl std::fmt::Debug for SqliteWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWarehouse").field("path", &self.path).finish()
    }
}

/// Creates the file readable by its owner only (0600; it holds owner emails and contact names), whatever the
/// umask. SQLite gives its `-wal` and `-shm` files the database file's mode. An existing file is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl SqliteWarehouse {
    /// Opens (creating if needed) the file. Tables are created by [`Warehouse::prepare`].
    pub fn open(path: &Path) -> Result<Self, WarehouseError> {
        let err = |source| WarehouseError::Sqlite { path: path.display().to_string(), source };
        create_private(path).map_err(|e| WarehouseError::Unavailable {
            what: format!("could not create the SQLite file {}", path.display()),
            source: Some(e.into()),
        })?;
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // WAL lets analysts read while a run writes. NORMAL sync in WAL mode keeps the file consistent through
        // a crash or a power loss, but a power loss may undo the last commits: a run's merge and its ledger
        // row commit together, so an undone run is one whose lease expired, and the next run reads its window.
        // Switching to WAL needs a moment of exclusive access, which SQLite refuses at once (no busy handler)
        // when another process opens the file at the same instant: retry briefly, as the busy timeout would.
        // A new file gets 16 KiB pages first (the page size is fixed once the file has its WAL header; on an
        // existing file the pragma changes nothing). A deal row with its `raw` JSON is about 1.4 KB: a backfill
        // then writes a quarter as many pages, and its commit (the WAL copied into the file) takes about a
        // fifth less time (measured side by side, see ARCHITECTURE.md); a nightly run's few thousand rows cost the same.
        conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(err)?;
        conn.pragma_update(Some("temp"), "page_size", PAGE_SIZE).map_err(err)?;
        let mut attempts = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            attempts += 1;
            if attempts >= 100 || !is_busy(&e) {
                return Err(err(e));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        Ok(SqliteWarehouse {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
            custom: Arc::default(),
            history_custom: Arc::default(),
            ahead: Arc::default(),
        })
    }

    /// The file this warehouse writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, WarehouseError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, WarehouseError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| WarehouseError::other("the SQLite connection is poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| WarehouseError::other_from("the SQLite task failed", e))?
    }

    fn active_custom(&self) -> Vec<CustomColumn> {
        self.custom.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn history_custom(&self) -> Vec<CustomColumn> {
        self.history_custom.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> WarehouseError + Send + Clone + 'static {
        let path = self.path.display().to_string();
        move |source| WarehouseError::Sqlite { path: path.clone(), source }
    }
}

/// SQLite's "database is locked/busy": another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn deal_table_ddl() -> String {
    let cols = DEAL_COLUMNS
        .iter()
        .map(|c| {
            if c.name == "deal_id" {
                "deal_id TEXT PRIMARY KEY".to_owned()
            } else {
                format!("{} {}", c.name, c.sqlite_type)
            }
        })
        .collect::<Vec<_>>()
        .join(",\n  ");
    format!("CREATE TABLE IF NOT EXISTS closed_won_deals (\n  {cols}\n)")
}

fn staging_table_ddl() -> String {
    let cols = DEAL_COLUMNS.iter().map(|c| format!("{} {}", c.name, c.sqlite_type)).collect::<Vec<_>>().join(", ");
    // `run_id` is one of the deal columns: in staging it names the run that staged the row.
    format!("CREATE TEMP TABLE IF NOT EXISTS staging_changes (change_kind TEXT NOT NULL, {cols})")
}

const LEDGER_DDL: &str = "CREATE TABLE IF NOT EXISTS sync_runs (
  run_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL DEFAULT 'scheduled',
  started_at TEXT NOT NULL,
  finished_at TEXT,
  heartbeat_at TEXT,
  lease_expires_at TEXT,
  window_start TEXT NOT NULL,
  window_end TEXT NOT NULL,
  status TEXT NOT NULL,
  deals_upserted INTEGER NOT NULL DEFAULT 0,
  deals_unwon INTEGER NOT NULL DEFAULT 0,
  deals_deleted INTEGER NOT NULL DEFAULT 0,
  deals_quarantined INTEGER NOT NULL DEFAULT 0,
  api_calls INTEGER NOT NULL DEFAULT 0,
  api_credits INTEGER NOT NULL DEFAULT 0,
  zoho_won_count INTEGER,
  warehouse_won_count INTEGER,
  error TEXT
)";

/// Records the job could not map, one row per deal (the newest quarantine wins), until a run merges a readable
/// version of the deal. The same as BigQuery's `sql/quarantined_deals.sql`.
const QUARANTINE_DDL: &str = "CREATE TABLE IF NOT EXISTS quarantined_deals (
  deal_id TEXT PRIMARY KEY,
  field TEXT NOT NULL,
  reason TEXT NOT NULL,
  record TEXT NOT NULL,
  run_id TEXT NOT NULL,
  quarantined_at TEXT NOT NULL
)";

/// A stored row is flagged while its deal is quarantined (after the quarantine is resolved and written, in the
/// same transaction): cleared for the rows that carry it and are no longer quarantined, then set for the
/// quarantined deals. Two statements, so that each reads an index (the partial `closed_won_deals_quarantined`,
/// the key) instead of every stored row: as one `… WHERE is_quarantined = 1 OR deal_id IN (…)` SQLite scanned
/// the whole table at every commit (1.3 KB a deal; a nightly run at a million deals read all of them).
const FLAG_QUARANTINED: [&str; 2] = [
    "UPDATE closed_won_deals SET is_quarantined = 0
  WHERE is_quarantined = 1 AND deal_id NOT IN (SELECT deal_id FROM quarantined_deals)",
    "UPDATE closed_won_deals SET is_quarantined = 1
  WHERE deal_id IN (SELECT deal_id FROM quarantined_deals) AND is_quarantined IS NOT 1",
];

/// A run that merged a version of a deal (won, un-won or deleted) has read it: its quarantine is over.
const RESOLVE_QUARANTINE: &str = "DELETE FROM quarantined_deals
  WHERE deal_id IN (SELECT deal_id FROM staging_changes WHERE run_id = ?1)";

const QUARANTINE: &str = "INSERT INTO quarantined_deals (deal_id, field, reason, record, run_id, quarantined_at)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6)
  ON CONFLICT (deal_id) DO UPDATE SET field = excluded.field, reason = excluded.reason, record = excluded.record,
    run_id = excluded.run_id, quarantined_at = excluded.quarantined_at";

/// The analyst views, the same as BigQuery's (`sql/views/`), in SQLite's dialect. Recreated at every
/// `prepare` so that a new version's definitions replace old ones.
fn views_ddl() -> Vec<String> {
    let current_cols = DEAL_COLUMNS
        .iter()
        .map(|c| c.name)
        .filter(|n| !matches!(*n, "is_closed_won" | "is_deleted" | "deleted_time"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        "DROP VIEW IF EXISTS sync_status".into(),
        "DROP VIEW IF EXISTS time_to_close".into(),
        "DROP VIEW IF EXISTS won_revenue_by_month_owner".into(),
        "DROP VIEW IF EXISTS won_revenue_by_won_month".into(),
        "DROP VIEW IF EXISTS current_won_deals".into(),
        // Deals that are won now: not deleted in Zoho and still in a won stage.
        format!(
            "CREATE VIEW current_won_deals AS SELECT {current_cols} FROM closed_won_deals
             WHERE is_closed_won = 1 AND is_deleted = 0"
        ),
        // Won revenue per closing month, owner and currency, summed exactly as decimal text (SQLite has no
        // decimal type; see `decimal_sum`).
        format!(
            "CREATE VIEW won_revenue_by_month_owner AS
             SELECT closing_month, owner_id, MAX(owner_name) AS owner_name, currency, COUNT(*) AS deals,
                    {} AS revenue
             FROM (SELECT substr(closing_date, 1, 7) || '-01' AS closing_month, owner_id, owner_name, currency, {}
                   FROM current_won_deals)
             GROUP BY closing_month, owner_id, currency",
            decimal_sum("a"),
            decimal_parts("amount", "a"),
        ),
        // Days from creation to closing date.
        "CREATE VIEW time_to_close AS
         SELECT deal_id, deal_name, owner_id, owner_name, pipeline, date(created_time) AS created_date, closing_date,
                CAST(julianday(closing_date) - julianday(date(created_time)) AS INTEGER) AS days_to_close
         FROM current_won_deals WHERE created_time IS NOT NULL AND closing_date IS NOT NULL"
            .into(),
        // Revenue by the month the deals were won, in the home currency (issue #11).
        won_month_view(),
        // Freshness for analysts: what `zoho-deals-sync status` prints, as one row.
        include_str!("../../sql/views/sync_status.sqlite.sql").into(),
    ]
}

/// Adds every column of `DEAL_COLUMNS` that `table` lacks (a newer version of the job added it).
fn add_missing_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<&'static str>> {
    let existing: Vec<String> = query_all(conn, &format!("PRAGMA table_info({table})"), [], |r| r.get(1))?;
    let mut added = Vec::new();
    for c in DEAL_COLUMNS {
        if !existing.iter().any(|e| e == c.name) {
            conn.execute(&format!("ALTER TABLE {table} ADD COLUMN {} {}", c.name, c.sqlite_type), [])?;
            added.push(c.name);
        }
    }
    Ok(added)
}

// --- issue #11, part B: closed_won_deals_history and the exact sums of the won-month view ---

/// Every column of the history table, in order.
fn history_columns() -> impl Iterator<Item = &'static super::Column> {
    HISTORY_META_COLUMNS.iter().chain(super::history_deal_columns())
}

fn history_ddl() -> String {
    let cols = history_columns().map(|c| format!("{} {}", c.name, c.sqlite_type)).collect::<Vec<_>>().join(",\n  ");
    format!("CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (\n  {cols}\n)")
}

/// Adds the history columns an older table lacks (a column added to `DEAL_COLUMNS` later).
fn add_missing_history_columns(conn: &Connection) -> rusqlite::Result<()> {
    let existing: Vec<String> = query_all(conn, &format!("PRAGMA table_info({HISTORY_TABLE})"), [], |r| r.get(1))?;
    for c in history_columns().filter(|c| !existing.iter().any(|e| e == c.name)) {
        conn.execute(&format!("ALTER TABLE {HISTORY_TABLE} ADD COLUMN {} {}", c.name, c.sqlite_type), [])?;
    }
    Ok(())
}

/// The data dictionary: one row per (field, column) of the source's Deals metadata, updated every run.
/// The same as BigQuery's `sql/deal_fields.sql`.
const DEAL_FIELDS_DDL: &str = "CREATE TABLE IF NOT EXISTS deal_fields (
  api_name TEXT NOT NULL,
  label TEXT,
  data_type TEXT,
  column_name TEXT,
  column_type TEXT,
  is_custom INTEGER NOT NULL,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL
)";

/// Every `deal_fields` row.
fn known_fields(c: &Connection) -> rusqlite::Result<Vec<KnownField>> {
    query_all(c, "SELECT api_name, column_name, column_type, is_custom FROM deal_fields", [], |r| {
        Ok(KnownField {
            api_name: r.get(0)?,
            column_name: r.get(1)?,
            column_type: r.get(2)?,
            is_custom: r.get::<_, i64>(3)? != 0,
        })
    })
}

/// The column names of `table`.
fn table_columns(c: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    query_all(c, &format!("PRAGMA table_info({table})"), [], |r| r.get(1))
}

/// Records the fields (insert, or update label/type/last seen; a column's type is never overwritten, so a
/// retyped field is recognised again next run).
fn upsert_fields(c: &Connection, fields: &[FieldColumn], now: &str) -> rusqlite::Result<()> {
    for f in fields {
        let t = f.cell_type.map(CellType::as_str);
        let updated = c.execute(
            "UPDATE deal_fields SET label = ?3, data_type = ?4, is_custom = ?5, last_seen = ?6,
               column_type = COALESCE(column_type, ?7)
             WHERE api_name = ?1 AND column_name IS ?2",
            params![f.api_name, f.column, f.label, f.data_type, f.custom, now, t],
        )?;
        if updated == 0 {
            c.execute(
                "INSERT INTO deal_fields (api_name, label, data_type, column_name, column_type, is_custom, first_seen,
                   last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![f.api_name, f.label, f.data_type, f.column, t, f.custom, now],
            )?;
        }
    }
    Ok(())
}

/// Zoho's time of the version a row holds: when it was modified, or deleted (the commit time when Zoho no longer
/// says when).
const VERSION_TIME: &str =
    "CASE WHEN t.is_deleted = 1 THEN COALESCE(t.deleted_time, t.synced_at) ELSE t.modified_time END";

/// A history row `h` holds the same version as the stored row `t` (`IS`: NULL-safe).
const SAME_VERSION: &str = "h.modified_time IS t.modified_time AND h.is_closed_won IS t.is_closed_won
  AND h.is_deleted IS t.is_deleted AND h.deleted_time IS t.deleted_time";

/// Which deals a history step covers: every deal this run wrote (`?1`: the run), or only those of them that a
/// query selects (its parameters follow `?1`).
#[derive(Clone, Copy)]
enum HistoryScope {
    Run,
    Only(&'static str),
}

impl HistoryScope {
    /// The deals to read the previous version of.
    fn deals(self) -> &'static str {
        match self {
            HistoryScope::Run => "SELECT deal_id FROM closed_won_deals WHERE run_id = ?1",
            HistoryScope::Only(deals) => deals,
        }
    }

    /// The condition on the stored row `t`: written by this run (`?1`), and in the scope. For a part of the
    /// run, the rows are found by their keys (`+` keeps SQLite from reading every row the run wrote through the
    /// `run_id` index instead: at 70,000 deals a step of the merge ahead then cost more the later it came).
    fn rows(self) -> String {
        match self {
            HistoryScope::Run => "t.run_id = ?1".to_owned(),
            HistoryScope::Only(deals) => format!("+t.run_id = ?1 AND t.deal_id IN ({deals})"),
        }
    }
}

/// History step 1: the current version of each deal this run wrote, when the stored state differs, is closed.
fn history_close(scope: HistoryScope) -> String {
    format!(
        "UPDATE {HISTORY_TABLE} AS h SET valid_to = {VERSION_TIME}, is_current = 0
FROM closed_won_deals AS t
WHERE t.deal_id = h.deal_id AND {} AND h.is_current = 1 AND NOT ({SAME_VERSION})",
        scope.rows()
    )
}

/// History step 2: the stored state of each deal this run wrote becomes its current version, unless it is.
/// `custom`: the custom columns copied with the standard ones.
fn history_insert(custom: &[CustomColumn], scope: HistoryScope) -> String {
    let cols = super::history_column_names(custom).collect::<Vec<_>>();
    let (names, values) = (cols.join(", "), cols.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", "));
    let (deals, rows) = (scope.deals(), scope.rows());
    format!(
        "INSERT INTO {HISTORY_TABLE} (deal_id, valid_from, valid_to, is_current, change, {names})
SELECT t.deal_id, {VERSION_TIME}, NULL, 1,
  CASE WHEN t.is_deleted = 1 THEN 'deleted' WHEN t.is_closed_won = 0 THEN 'unwon'
       WHEN p.deal_id IS NULL OR p.is_closed_won = 0 OR p.is_deleted = 1 THEN 'won' ELSE 'edited' END,
  {values}
FROM closed_won_deals AS t
LEFT JOIN (
  SELECT deal_id, is_closed_won, is_deleted FROM (
    SELECT deal_id, is_closed_won, is_deleted,
      ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY valid_from DESC, rowid DESC) AS rn
    FROM {HISTORY_TABLE} WHERE deal_id IN ({deals})
  ) WHERE rn = 1
) AS p ON p.deal_id = t.deal_id
WHERE {rows}
  AND NOT EXISTS (SELECT 1 FROM {HISTORY_TABLE} AS h WHERE h.deal_id = t.deal_id AND h.is_current = 1 AND {SAME_VERSION})"
    )
}

/// The whole part (`…_i`) and the billionths (`…_n`) of a decimal text column, both signed integers: summed
/// separately, they add decimals exactly (SQLite has no decimal type, and `CAST(… AS REAL)` would round).
/// Stored decimals have at most 9 places (BigQuery NUMERIC's scale, which the job never exceeds).
fn decimal_parts(col: &str, alias: &str) -> String {
    let abs = format!("ltrim({col}, '-')");
    let dot = format!("instr({abs}, '.')");
    let sign = format!("(CASE WHEN substr({col}, 1, 1) = '-' THEN -1 ELSE 1 END)");
    format!(
        "{sign} * CAST(CASE WHEN {dot} > 0 THEN substr({abs}, 1, {dot} - 1) ELSE {abs} END AS INTEGER) AS {alias}_i,
         {sign} * CAST(CASE WHEN {dot} > 0 THEN substr(substr({abs}, {dot} + 1) || '000000000', 1, 9) ELSE '0' END
           AS INTEGER) AS {alias}_n"
    )
}

/// Sums of [`decimal_parts`] back to decimal text (NULL when every value was NULL).
fn decimal_sum(alias: &str) -> String {
    // Carry the billionths into the whole part, then give both the same sign.
    let i = format!("(SUM({alias}_i) + SUM({alias}_n) / 1000000000)");
    let n = format!("(SUM({alias}_n) % 1000000000)");
    let whole =
        format!("(CASE WHEN {i} > 0 AND {n} < 0 THEN {i} - 1 WHEN {i} < 0 AND {n} > 0 THEN {i} + 1 ELSE {i} END)");
    let frac = format!(
        "(CASE WHEN {i} > 0 AND {n} < 0 THEN {n} + 1000000000 WHEN {i} < 0 AND {n} > 0 THEN {n} - 1000000000 ELSE {n} END)"
    );
    format!(
        "CASE WHEN SUM({alias}_i) IS NULL THEN NULL ELSE
           (CASE WHEN {whole} = 0 AND {frac} < 0 THEN '-' ELSE '' END) || {whole}
           || CASE WHEN {frac} = 0 THEN '' ELSE '.' || rtrim(printf('%09d', abs({frac})), '0') END END"
    )
}

/// Won revenue per month of `won_at` and home currency, summed exactly (BigQuery: `sql/views/won_revenue_by_won_month.sql`).
fn won_month_view() -> String {
    format!(
        "CREATE VIEW won_revenue_by_won_month AS
         SELECT won_month, home_currency, COUNT(*) AS deals, {} AS revenue_home, {} AS expected_revenue_home
         FROM (SELECT substr(won_at, 1, 7) || '-01' AS won_month, home_currency, {}, {} FROM current_won_deals)
         GROUP BY won_month, home_currency",
        decimal_sum("a"),
        decimal_sum("e"),
        decimal_parts("amount_home", "a"),
        decimal_parts("expected_revenue_home", "e"),
    )
}

/// SQLite integers are signed 64-bit; counts never come near the limit.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn ts(t: DateTime<Utc>) -> String {
    format_utc(&t)
}

/// Lease times keep milliseconds (a lease of a few seconds must not lose up to one to truncation). Every
/// lease column is written and compared in this one format, so text order stays time order.
fn lease_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// A cell as SQLite stores it: integers and booleans (0/1) as INTEGER, everything else as text (exact decimal
/// text, `YYYY-MM-DD`, RFC 3339 UTC whole seconds, JSON text; a list as a JSON array).
fn encode(cell: Cell) -> SqlValue {
    match cell {
        Cell::Null => SqlValue::Null,
        Cell::Text(s) | Cell::Json(s) => SqlValue::Text(s),
        Cell::Int(i) => SqlValue::Integer(i),
        Cell::Bool(b) => SqlValue::Integer(i64::from(b)),
        Cell::Decimal(d) => SqlValue::Text(d.normalize().to_string()),
        // Canonical exact text in a TEXT column: no float affinity, so SQLite keeps every digit.
        Cell::BigDecimal(d) => SqlValue::Text(d.as_str().to_owned()),
        Cell::Date(d) => SqlValue::Text(d.format("%Y-%m-%d").to_string()),
        Cell::Timestamp(t) => SqlValue::Text(ts(t)),
        Cell::TextList(v) => SqlValue::Text(serde_json::to_string(&v).unwrap_or_else(|_| "[]".to_owned())),
    }
}

/// A stored value back as a cell of type `t`.
fn decode(column: &str, t: CellType, v: SqlValue) -> Result<Cell, Unreadable> {
    let bad = |v: &SqlValue| Unreadable { column: column.to_owned(), value: format!("{v:?}") };
    let text = |v: &SqlValue| match v {
        SqlValue::Text(s) => Some(s.clone()),
        SqlValue::Integer(i) => Some(i.to_string()),
        _ => None,
    };
    if v == SqlValue::Null {
        return Ok(Cell::Null);
    }
    let cell = match t {
        CellType::Text => text(&v).map(Cell::Text),
        CellType::Json => text(&v).map(Cell::Json),
        CellType::Int => match &v {
            SqlValue::Integer(i) => Some(Cell::Int(*i)),
            SqlValue::Text(s) => s.parse().ok().map(Cell::Int),
            _ => None,
        },
        CellType::Bool => match &v {
            SqlValue::Integer(i) => Some(Cell::Bool(*i != 0)),
            _ => None,
        },
        CellType::Decimal => text(&v).and_then(|s| Decimal::from_str(&s).ok()).map(Cell::Decimal),
        CellType::BigDecimal => text(&v).and_then(|s| ExactDecimal::parse(&s).ok()).map(Cell::BigDecimal),
        CellType::Date => text(&v).and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok()).map(Cell::Date),
        CellType::Timestamp => text(&v).as_deref().and_then(parse_ts).map(Cell::Timestamp),
        CellType::TextList => text(&v).and_then(|s| serde_json::from_str(&s).ok()).map(Cell::TextList),
    };
    cell.ok_or_else(|| bad(&v))
}

/// The staging row for one change: `change_kind`, then every column of `DEAL_COLUMNS` in order, NULL where the
/// change says nothing (an un-won change carries only id, stage and version; a deletion only id and time).
fn staged_row(run_id: &str, change: &DealChange, custom: &[CustomColumn]) -> Vec<SqlValue> {
    let (kind, cells) = change_cells(change);
    let mut row = vec![SqlValue::Null; DEAL_COLUMNS.len() + 1];
    if let DealChange::Won(d) = change {
        row.extend(custom_cells(d, custom).into_iter().map(|(_, cell)| encode(cell)));
    } else {
        row.extend(custom.iter().map(|_| SqlValue::Null));
    }
    row[0] = SqlValue::Text(kind.to_owned());
    for (name, cell) in cells.into_iter().chain([("run_id", Cell::Text(run_id.to_owned()))]) {
        if let Some(i) = DEAL_COLUMNS.iter().position(|c| c.name == name) {
            row[i + 1] = encode(cell);
        }
    }
    row
}

/// The merge: newest staged version per deal (won or un-won), guarded by `modified_time`.
/// `src`: this run's newest staged version of each deal (won or un-won) among the staged rows whose `rowid` is
/// in `(?3, ?4]`, kept when it is of `$kind`. Both merges start from it, so a deal staged as won and as un-won in
/// one run is decided once, by its newest version. (The range splits a run's merge in two, see
/// [`Warehouse::merge_ahead`]; `commit` merges the two parts separately only when no deal has rows in both.)
/// The ranking reads the covering index `staging_changes_newest` in its order (deal, newest time first, then
/// `won` before `unwon`: among these two kinds, descending text order), so it sorts nothing; the wide rows (with
/// `raw`) are then fetched by rowid.
macro_rules! newest_staged {
    ($kind:literal) => {
        concat!(
            "WITH newest AS (
  SELECT rid FROM (
    SELECT rowid AS rid, change_kind, ROW_NUMBER() OVER (
      PARTITION BY deal_id ORDER BY modified_time DESC, change_kind DESC) AS rn
    FROM staging_changes INDEXED BY staging_changes_newest
    WHERE run_id = ?1 AND change_kind IN ('won', 'unwon') AND rowid > ?3 AND rowid <= ?4
  ) WHERE rn = 1 AND change_kind = '",
            $kind,
            "'
),
src AS (SELECT s.* FROM newest JOIN staging_changes s ON s.rowid = newest.rid)
"
        )
    };
}

/// The merge of won changes, its column lists generated from `DEAL_COLUMNS`: every column inserted, every data
/// column updated, flags and bookkeeping set here.
fn merge_won(custom: &[CustomColumn]) -> String {
    let custom_names = custom.iter().map(|c| c.name.as_str());
    let columns = columns::column_names(custom).collect::<Vec<_>>().join(", ");
    let values = DEAL_COLUMNS
        .iter()
        .map(|c| match c.name {
            "is_closed_won" => "1",
            "is_deleted" => "0",
            "deleted_time" => "NULL",
            "is_quarantined" => "0",
            "synced_at" => "?2",
            "run_id" => "?1",
            name => name,
        })
        .chain(custom_names.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let update = DEAL_COLUMNS
        .iter()
        .filter(|c| c.is_data() && !WON_AT_COLUMNS.contains(&c.name))
        .map(|c| c.name)
        .chain(custom_names)
        .map(|c| format!("{c} = excluded.{c}"))
        // The won date of a row that is already won never moves; a new or re-won row takes the staged one.
        // (Every right-hand side reads the row as it was before this update.)
        .chain([
            "won_at = CASE WHEN closed_won_deals.is_closed_won = 1 THEN closed_won_deals.won_at ELSE excluded.won_at END"
                .to_owned(),
            "won_at_source = CASE WHEN closed_won_deals.is_closed_won = 1 \
             THEN COALESCE(closed_won_deals.won_at_source, 'unknown') ELSE excluded.won_at_source END"
                .to_owned(),
        ])
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{}INSERT INTO closed_won_deals ({columns})
SELECT {values}
FROM src WHERE true
ON CONFLICT (deal_id) DO UPDATE SET
  {update},
  is_closed_won = 1, is_deleted = 0, deleted_time = NULL, synced_at = excluded.synced_at, run_id = excluded.run_id
WHERE excluded.modified_time >= closed_won_deals.modified_time
  AND (closed_won_deals.deleted_time IS NULL OR excluded.modified_time > closed_won_deals.deleted_time)",
        newest_staged!("won")
    )
}

const MERGE_UNWON: &str = concat!(
    newest_staged!("unwon"),
    "UPDATE closed_won_deals SET
  stage = src.stage, modified_time = src.modified_time, is_closed_won = 0, synced_at = ?2, run_id = ?1
FROM src
WHERE closed_won_deals.deal_id = src.deal_id AND src.modified_time >= closed_won_deals.modified_time"
);

const MERGE_DELETED: &str = "
UPDATE closed_won_deals SET is_deleted = 1, deleted_time = d.deleted_time, synced_at = ?2, run_id = ?1
FROM (SELECT deal_id, MAX(deleted_time) AS deleted_time FROM staging_changes
      WHERE run_id = ?1 AND change_kind = 'deleted' GROUP BY deal_id) AS d
WHERE closed_won_deals.deal_id = d.deal_id AND closed_won_deals.modified_time <= d.deleted_time
  AND (closed_won_deals.deleted_time IS NULL OR closed_won_deals.deleted_time <= d.deleted_time)
  AND (closed_won_deals.is_deleted = 0 OR closed_won_deals.deleted_time IS NULL
       OR closed_won_deals.deleted_time < d.deleted_time)";

/// Deals `reconcile` found gone from Zoho: flagged deleted at an unknown time, unless already flagged.
const MERGE_VANISHED: &str = "
UPDATE closed_won_deals SET is_deleted = 1, deleted_time = NULL, synced_at = ?2, run_id = ?1
WHERE is_deleted = 0
  AND deal_id IN (SELECT deal_id FROM staging_changes WHERE run_id = ?1 AND change_kind = 'vanished')";

/// The run holding the lease, other than `?1`, and until when.
const HOLDER: &str = "SELECT run_id, lease_expires_at FROM sync_runs WHERE status = 'running' AND run_id != ?1
  ORDER BY started_at LIMIT 1";

/// Puts back the rows a merge ahead changed as they were before it (removing those it created), and their
/// history.
fn undo_ahead(c: &Connection, run_id: &str, ahead: &Ahead) -> rusqlite::Result<()> {
    c.execute(
        &format!("DELETE FROM main.closed_won_deals WHERE deal_id IN ({AHEAD_DEALS})"),
        params![run_id, ahead.through_rowid],
    )?;
    c.execute("INSERT INTO main.closed_won_deals SELECT * FROM temp.ahead_before", [])?;
    undo_ahead_history(c, run_id, ahead, false)
}

/// Takes back the history a merge ahead wrote: the versions it inserted are deleted and the versions it closed
/// are current again (a current version has no `valid_to`), for every deal, or (`flagged_only`) for the deals
/// this run flags deleted or vanished, whose stored rows the commit changes after it. Either way the commit
/// then writes their history from the rows as they end, as one merge would (one version per deal and run).
fn undo_ahead_history(c: &Connection, run_id: &str, ahead: &Ahead, flagged_only: bool) -> rusqlite::Result<()> {
    let reopen = format!("UPDATE main.{HISTORY_TABLE} SET valid_to = NULL, is_current = 1 WHERE rowid IN");
    if flagged_only {
        c.execute(
            &format!("DELETE FROM main.{HISTORY_TABLE} WHERE rowid > ?2 AND deal_id IN ({FLAGGED_DEALS})"),
            params![run_id, ahead.history_before],
        )?;
        c.execute(
            &format!("{reopen} (SELECT rid FROM temp.ahead_closed WHERE deal_id IN ({FLAGGED_DEALS}))"),
            params![run_id],
        )?;
    } else {
        c.execute(&format!("DELETE FROM main.{HISTORY_TABLE} WHERE rowid > ?1"), params![ahead.history_before])?;
        c.execute(&format!("{reopen} (SELECT rid FROM temp.ahead_closed)"), [])?;
    }
    Ok(())
}

/// The deals this run (`?1`) staged as deleted or vanished.
const FLAGGED_DEALS: &str =
    "SELECT deal_id FROM staging_changes WHERE run_id = ?1 AND change_kind IN ('deleted', 'vanished')";

/// After a merge ahead, the deals whose history the commit writes: those staged after it (`?2`) and those
/// flagged deleted or vanished (`?1`: the run).
const AFTER_AHEAD_DEALS: &str = "SELECT deal_id FROM staging_changes
  WHERE run_id = ?1 AND (rowid > ?2 OR change_kind IN ('deleted', 'vanished'))";

/// [`AFTER_AHEAD_DEALS`] when the run flags no deal: a range of rowids, where the `OR` reads every staged row
/// (at 70,000 staged deals, ~0.04 s of a backfill's commit).
const STAGED_AFTER_AHEAD: &str = "SELECT deal_id FROM staging_changes WHERE run_id = ?1 AND rowid > ?2";

/// The deals whose won or un-won rows staged up to `?2` a merge ahead merged.
const AHEAD_DEALS: &str =
    "SELECT deal_id FROM staging_changes WHERE run_id = ?1 AND rowid <= ?2 AND change_kind IN ('won', 'unwon')";

/// The deals with won or un-won rows staged in `(?2, ?3]`: one step of a merge ahead.
const STEP_DEALS: &str = "SELECT deal_id FROM staging_changes
  WHERE run_id = ?1 AND rowid > ?2 AND rowid <= ?3 AND change_kind IN ('won', 'unwon')";

/// Whether a deal has won or un-won rows staged both up to `?2` (merged ahead) and in `(?2, ?3]`.
const SPLIT_DEALS: &str = "SELECT EXISTS (
  SELECT 1 FROM staging_changes AS b
  WHERE b.rowid > ?2 AND b.rowid <= ?3 AND b.run_id = ?1 AND b.change_kind IN ('won', 'unwon')
    AND EXISTS (SELECT 1 FROM staging_changes AS a INDEXED BY staging_changes_newest
                WHERE a.run_id = ?1 AND a.deal_id = b.deal_id AND a.rowid <= ?2 AND a.change_kind IN ('won', 'unwon')))";

/// The body of [`Warehouse::commit`], inside the write transaction (which the caller commits, or rolls back on
/// an error). `ahead`: what `merge_ahead` merged in it.
fn commit_in(
    c: &Connection,
    err: &(impl Fn(rusqlite::Error) -> WarehouseError + Clone),
    run: &RunStart,
    report: &RunReport,
    ahead: Option<Ahead>,
    custom: &[CustomColumn],
    history_custom: &[CustomColumn],
) -> Result<MergeCounts, WarehouseError> {
    // A repeated commit of a run that already succeeded reports what it recorded, and merges nothing again.
    let recorded = c
        .query_row(
            "SELECT deals_upserted, deals_unwon, deals_deleted, warehouse_won_count FROM sync_runs
                 WHERE run_id = ?1 AND status = 'succeeded'",
            params![run.run_id],
            |r| {
                Ok(MergeCounts {
                    upserted: r.get(0)?,
                    unwon: r.get(1)?,
                    deleted: r.get(2)?,
                    won_in_window: r.get::<_, Option<u64>>(3)?.unwrap_or(0),
                    refused: 0,
                })
            },
        )
        .optional()
        .map_err(&err)?;
    if let Some(counts) = recorded {
        if let Some(a) = &ahead {
            undo_ahead(c, &run.run_id, a).map_err(err)?;
        }
        return Ok(counts);
    }
    // Only while this run holds the lease: a run another run marked abandoned (its lease expired and it
    // took over) merges nothing and claims nothing; the run that took over covers its window.
    let status: Option<String> = c
        .query_row("SELECT status FROM sync_runs WHERE run_id = ?1", params![run.run_id], |r| r.get(0))
        .optional()
        .map_err(&err)?;
    if status.as_deref() == Some("failed") {
        return Err(WarehouseError::LeaseLost { run_id: run.run_id.clone() });
    }
    let now = ts(now());
    // Merged ahead in two parts only when no deal has won or un-won rows in both: a deal's newest version
    // must be chosen among all of its rows at once (a won and an un-won row of the same time: won; a newly won
    // deal takes its newest version's won date). Else the part merged ahead is undone (its rows put back as
    // they were) and everything is merged here. Within one run a deal is staged twice only when a page was
    // delivered twice or Zoho's clock let a deal edited during the run back into the window: rare, and exact.
    let ahead = match ahead {
        Some(a)
            if c.query_row(SPLIT_DEALS, params![run.run_id, a.through_rowid, i64::MAX], |r| r.get::<_, bool>(0))
                .map_err(&err)? =>
        {
            tracing::debug!("a deal was staged before and after the merge ahead: merging everything at once");
            undo_ahead(c, &run.run_id, &a).map_err(err)?;
            None
        }
        a => a,
    };
    let synced_at = ahead.as_ref().map_or_else(|| now.clone(), |a| a.synced_at.clone());
    let (through, upserted_ahead, unwon_ahead) =
        ahead.as_ref().map_or((0, 0, 0), |a| (a.through_rowid, a.upserted, a.unwon));
    // Each merge runs only when this run staged changes of its kind: with none it would change nothing,
    // and ranking a large backfill's staged rows again for it costs a sort (a tenth of a second at 70,000).
    let staged: Vec<String> =
        query_all(c, "SELECT DISTINCT change_kind FROM staging_changes WHERE run_id = ?1", params![run.run_id], |r| {
            r.get(0)
        })
        .map_err(&err)?;
    let merge = |kind: &str, sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<u64, WarehouseError> {
        if !staged.iter().any(|k| k == kind) {
            return Ok(0);
        }
        Ok(c.execute(sql, params).map_err(&err)? as u64)
    };
    // The won and un-won rows after those merged ahead (all of them, without a merge ahead).
    let rest = params![run.run_id, synced_at, through, i64::MAX];
    let upserted = upserted_ahead + merge(change_kind::WON, &merge_won(custom), rest)?;
    let unwon = unwon_ahead + merge(change_kind::UNWON, MERGE_UNWON, rest)?;
    let flags = params![run.run_id, synced_at];
    let deleted =
        merge(change_kind::DELETED, MERGE_DELETED, flags)? + merge(change_kind::VANISHED, MERGE_VANISHED, flags)?;
    // The history of what this merge changed, in the same transaction (issue #11). After a merge ahead, which
    // wrote the history of what it merged, only that of the deals staged after it and of the deals flagged
    // (whose history from the merge ahead is taken back first: their rows changed since).
    match &ahead {
        None => {
            c.execute(&history_close(HistoryScope::Run), params![run.run_id]).map_err(&err)?;
            c.execute(&history_insert(history_custom, HistoryScope::Run), params![run.run_id]).map_err(&err)?;
        }
        Some(a) => {
            let flagged = [change_kind::DELETED, change_kind::VANISHED].iter().any(|k| staged.iter().any(|s| s == k));
            if flagged {
                undo_ahead_history(c, &run.run_id, a, true).map_err(&err)?;
            }
            let scope = HistoryScope::Only(if flagged { AFTER_AHEAD_DEALS } else { STAGED_AFTER_AHEAD });
            let after = params![run.run_id, a.through_rowid];
            c.execute(&history_close(scope), after).map_err(&err)?;
            c.execute(&history_insert(history_custom, scope), after).map_err(&err)?;
            // The copies that would undo it are not needed any more (a split run leaves them to the next merge
            // ahead).
            c.execute_batch("DROP TABLE temp.ahead_before; DROP TABLE temp.ahead_closed").map_err(&err)?;
        }
    }
    // (Reading every staged id for an empty quarantine would cost a scan of the staging table.)
    let any_quarantined: bool =
        c.query_row("SELECT EXISTS (SELECT 1 FROM quarantined_deals)", [], |r| r.get(0)).map_err(&err)?;
    if any_quarantined {
        c.execute(RESOLVE_QUARANTINE, params![run.run_id]).map_err(&err)?;
    }
    {
        let mut insert = c.prepare(QUARANTINE).map_err(&err)?;
        for q in &report.quarantined {
            insert.execute(params![q.deal_id, q.field, q.reason, q.record, run.run_id, now]).map_err(&err)?;
        }
    }
    for flag in FLAG_QUARANTINED {
        c.execute(flag, []).map_err(&err)?;
    }
    let won_in_window = c
        .query_row(COUNT_WON, params![ts(run.window_start), ts(run.window_end)], |r| r.get::<_, u64>(0))
        .map_err(&err)?;
    c.execute(
        "UPDATE sync_runs SET status = ?11, finished_at = ?2, deals_upserted = ?3, deals_unwon = ?4,
               deals_deleted = ?5, deals_quarantined = ?6, api_calls = ?7, api_credits = ?8,
               zoho_won_count = ?9, warehouse_won_count = ?10, error = ?12
             WHERE run_id = ?1",
        params![
            run.run_id,
            now,
            int(upserted),
            int(unwon),
            int(deleted),
            int(report.deals_quarantined),
            int(report.api_calls),
            int(report.api_credits),
            report.zoho_won_count.map(int),
            int(won_in_window),
            if report.incomplete.is_some() { "failed" } else { "succeeded" },
            report.incomplete
        ],
    )
    .map_err(&err)?;
    // This run's staged rows are left in staging (this connection's TEMP table): the job runs one run per
    // process, and the table goes with the connection; a later run on the same connection drops them in
    // `begin_run`. Deleting a backfill's rows here cost the commit 0.15-0.2 s at 70,000 deals.
    Ok(MergeCounts { won_in_window, upserted, unwon, deleted, refused: 0 })
}

/// The same as BigQuery's `sql/holds_deals.sql`: each `EXISTS` reads at most one row.
const HOLDS_DEALS: &str = "SELECT EXISTS (SELECT 1 FROM closed_won_deals) OR EXISTS (SELECT 1 FROM quarantined_deals)";

const COUNT_WON: &str = "SELECT COUNT(*) FROM closed_won_deals
  WHERE is_closed_won = 1 AND is_deleted = 0 AND modified_time >= ?1 AND modified_time < ?2";

/// Runs a query and collects every row through `map`.
fn query_all<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map(params, map)?.collect();
    rows
}

/// One row of `SELECT <DEAL_COLUMNS>` back, by column name.
fn read_deal(r: &Row<'_>, custom: &[CustomColumn]) -> rusqlite::Result<Result<StoredDeal, Unreadable>> {
    let mut values: HashMap<&str, SqlValue> = HashMap::new();
    let names = DEAL_COLUMNS.iter().map(|c| c.name).chain(custom.iter().map(|c| c.name.as_str()));
    for (i, name) in names.enumerate() {
        values.insert(name, r.get::<_, SqlValue>(i)?);
    }
    Ok(columns::stored_deal(custom, |name, t| decode(name, t, values.remove(name).unwrap_or(SqlValue::Null))))
}

impl Warehouse for SqliteWarehouse {
    async fn prepare(&self) -> Result<(), WarehouseError> {
        let err = self.err();
        self.with(move |c| {
            // IMMEDIATE: takes the write lock up front, waiting (busy timeout) for another run's prepare. A
            // deferred transaction would start as a reader and fail with "database is locked" when it tries to
            // write after another connection did (SQLite cannot wait there without risking a deadlock).
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(&err)?;
            tx.execute(&deal_table_ddl(), []).map_err(&err)?;
            // Staging is a TEMP table: per connection (run-scoped by nature), outside the write-ahead log, gone
            // with the process. Versions before it kept a persistent one: drop that.
            tx.execute("DROP TABLE IF EXISTS main.staging_changes", []).map_err(&err)?;
            tx.execute(&staging_table_ddl(), []).map_err(&err)?;
            tx.execute(LEDGER_DDL, []).map_err(&err)?;
            tx.execute(QUARANTINE_DDL, []).map_err(&err)?;
            tx.execute(&history_ddl(), []).map_err(&err)?;
            add_missing_history_columns(&tx).map_err(&err)?;
            tx.execute(
                &format!("CREATE INDEX IF NOT EXISTS {HISTORY_TABLE}_current ON {HISTORY_TABLE} (deal_id, is_current)"),
                [],
            )
            .map_err(&err)?;
            tx.execute("CREATE INDEX IF NOT EXISTS closed_won_deals_run ON closed_won_deals (run_id)", [])
                .map_err(&err)?;
            tx.execute(DEAL_FIELDS_DDL, []).map_err(&err)?;
            for table in ["closed_won_deals", "staging_changes"] {
                let added = add_missing_columns(&tx, table).map_err(&err)?;
                if !added.is_empty() {
                    tracing::info!(table, columns = ?added, "added columns introduced by this version");
                }
            }
            // Covers what the commit ranks and reads of every staged row (which kinds, the newest version of each
            // deal, the staged ids): those read this index instead of the wide rows (`raw` and every column), which
            // the merge then fetches once each, by rowid. Its order is the ranking's (`newest_staged!`), so the
            // ranking sorts nothing. (A TEMP index: each connection creates it as it is defined here.)
            tx.execute(
                "CREATE INDEX IF NOT EXISTS temp.staging_changes_newest
                   ON staging_changes (run_id, deal_id, modified_time DESC, change_kind DESC)",
                [],
            )
            .map_err(&err)?;
            // The won rows of a window, counted (at every commit) and listed (by `reconcile`) from this index
            // alone: reading each row by its `modified_time` would fetch the wide rows (`raw`) in an order unrelated
            // to where they lie, ~16 KiB read for each 1.4 KB row: at the end of a 70,000-deal backfill, 1.1 GB
            // read back from the write-ahead log (`strace`) and 0.07 s of the commit. It replaces an index on
            // `modified_time` alone (versions before it), which it serves as well.
            tx.execute("DROP INDEX IF EXISTS closed_won_deals_modified", []).map_err(&err)?;
            tx.execute(
                "CREATE INDEX IF NOT EXISTS closed_won_deals_window
                   ON closed_won_deals (modified_time, is_closed_won, is_deleted, deal_id)",
                [],
            )
            .map_err(&err)?;
            // The few quarantined rows, for FLAG_QUARANTINED (partial: it costs nothing for the others).
            tx.execute(
                "CREATE INDEX IF NOT EXISTS closed_won_deals_quarantined ON closed_won_deals (deal_id)
                   WHERE is_quarantined = 1",
                [],
            )
            .map_err(&err)?;
            for ddl in views_ddl() {
                tx.execute(&ddl, []).map_err(&err)?;
            }
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn declare_fields(&self, fields: &[FieldColumn]) -> Result<(), WarehouseError> {
        let err = self.err();
        let fields = fields.to_vec();
        let (plan, history) = self
            .with(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(&err)?;
                let existing = table_columns(&tx, "closed_won_deals").map_err(&err)?;
                let known = known_fields(&tx).map_err(&err)?;
                let plan = plan_fields(&fields, &known, &existing);
                for col in &plan.add {
                    let ty = columns::sqlite_type(col.cell_type);
                    tx.execute(&format!("ALTER TABLE closed_won_deals ADD COLUMN {} {ty}", col.name), [])
                        .map_err(&err)?;
                }
                // The history copies the custom columns too (`ADD COLUMN`: older versions read NULL).
                let history = columns::history_custom(&plan.active, &known, &existing);
                let in_history = table_columns(&tx, HISTORY_TABLE).map_err(&err)?;
                for col in history.iter().filter(|c| !in_history.contains(&c.name)) {
                    let ty = columns::sqlite_type(col.cell_type);
                    tx.execute(&format!("ALTER TABLE {HISTORY_TABLE} ADD COLUMN {} {ty}", col.name), [])
                        .map_err(&err)?;
                }
                let staged = table_columns(&tx, "staging_changes").map_err(&err)?;
                for col in plan.active.iter().filter(|c| !staged.contains(&c.name)) {
                    let ty = columns::sqlite_type(col.cell_type);
                    tx.execute(&format!("ALTER TABLE temp.staging_changes ADD COLUMN {} {ty}", col.name), [])
                        .map_err(&err)?;
                }
                upsert_fields(&tx, &fields, &ts(now())).map_err(&err)?;
                tx.commit().map_err(&err)?;
                Ok((plan, history))
            })
            .await?;
        plan.log();
        if let Ok(mut custom) = self.custom.lock() {
            *custom = plan.active;
        }
        if let Ok(mut custom) = self.history_custom.lock() {
            *custom = history;
        }
        Ok(())
    }

    async fn succeeded_windows(&self) -> Result<Vec<CoveredWindow>, WarehouseError> {
        let err = self.err();
        self.with(move |c| {
            let rows = query_all(
                c,
                "SELECT window_start, window_end, kind FROM sync_runs WHERE status = 'succeeded'",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
            )
            .map_err(&err)?;
            Ok(rows
                .into_iter()
                .filter_map(|(s, e, k)| {
                    Some(CoveredWindow { start: parse_ts(&s)?, end: parse_ts(&e)?, kind: RunKind::parse(&k) })
                })
                .collect())
        })
        .await
    }

    async fn begin_run(&self, run: &RunStart) -> Result<(), WarehouseError> {
        let err = self.err();
        let run = run.clone();
        self.with(move |c| {
            // The write lock is busy for longer than the busy timeout when another run is merging (from its
            // `merge_ahead` to its commit): that run holds the lease, which the ledger (readable meanwhile) says.
            // (`new_unchecked` borrows the connection shared, so the busy arm can still read with it.)
            let tx = match rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) if is_busy(&e) => {
                    let holder = c
                        .query_row(HOLDER, params![run.run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                        .optional()
                        .ok()
                        .flatten();
                    return Err(match holder {
                        Some((run_id, expires)) => {
                            WarehouseError::Busy { run_id, expires_at: parse_ts(&expires).unwrap_or_else(now) }
                        }
                        None => err(e),
                    });
                }
                Err(e) => return Err(err(e)),
            };
            let now = now();
            // A run whose lease expired died without saying so: record that, and drop its staging.
            tx.execute(
                "UPDATE sync_runs SET status = 'failed', finished_at = ?1,
                   error = 'abandoned: the run stopped renewing its lease (killed or crashed)'
                 WHERE status = 'running' AND lease_expires_at <= ?2",
                params![ts(now), lease_ts(now)],
            )
            .map_err(&err)?;
            let holder: Option<(String, String)> = tx
                .query_row(HOLDER, params![run.run_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(&err)?;
            if let Some((run_id, expires)) = holder {
                return Err(WarehouseError::Busy { run_id, expires_at: parse_ts(&expires).unwrap_or(now) });
            }
            // Staged rows of runs that are over: a committed run leaves its own (see `commit`).
            tx.execute(
                "DELETE FROM staging_changes WHERE run_id NOT IN (SELECT run_id FROM sync_runs WHERE status = 'running')",
                [],
            )
            .map_err(&err)?;
            // Idempotent for the same run id (a retried begin_run renews its own lease).
            tx.execute(
                "INSERT INTO sync_runs (run_id, kind, started_at, heartbeat_at, lease_expires_at, window_start,
                   window_end, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')
                 ON CONFLICT (run_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                   lease_expires_at = excluded.lease_expires_at
                 WHERE sync_runs.status = 'running'",
                params![
                    run.run_id,
                    run.kind.as_str(),
                    ts(run.started_at),
                    lease_ts(now),
                    lease_ts(now + run.lease_ttl),
                    ts(run.window_start),
                    ts(run.window_end)
                ],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn record_window(&self, run: &RunStart) -> Result<(), WarehouseError> {
        let err = self.err();
        let run = run.clone();
        self.with(move |c| {
            let updated = c
                .execute(
                    "UPDATE sync_runs SET window_start = ?2, window_end = ?3 WHERE run_id = ?1 AND status = 'running'",
                    params![run.run_id, ts(run.window_start), ts(run.window_end)],
                )
                .map_err(&err)?;
            // 0 rows: another run found our lease expired, marked this run abandoned and took over.
            if updated == 0 {
                return Err(WarehouseError::LeaseLost { run_id: run.run_id });
            }
            Ok(())
        })
        .await
    }

    async fn heartbeat(&self, run: &RunStart) -> Result<(), WarehouseError> {
        let err = self.err();
        let (run_id, ttl) = (run.run_id.clone(), run.lease_ttl);
        self.with(move |c| {
            let now = now();
            let renewed = c
                .execute(
                    "UPDATE sync_runs SET heartbeat_at = ?2, lease_expires_at = ?3 WHERE run_id = ?1 AND status = 'running'",
                    params![run_id, lease_ts(now), lease_ts(now + ttl)],
                )
                .map_err(&err)?;
            // 0 rows: another run found our lease expired, marked this run abandoned and took over.
            if renewed == 0 {
                return Err(WarehouseError::LeaseLost { run_id });
            }
            Ok(())
        })
        .await
    }

    async fn stage(&self, run: &RunStart, changes: &[DealChange]) -> Result<(), WarehouseError> {
        let custom = self.active_custom();
        let n = DEAL_COLUMNS.len() + 1 + custom.len();
        let placeholders = (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let cols = columns::column_names(&custom).collect::<Vec<_>>().join(", ");
        let insert = Arc::new(format!("INSERT INTO staging_changes (change_kind, {cols}) VALUES ({placeholders})"));
        // Encoded a chunk at a time: an encoded row copies every value of its change, so encoding a whole page
        // first would hold the page twice (at 2,000 rows, several MiB more at the peak of a backfill). Staging is
        // a TEMP table outside the write-ahead log, so a transaction per chunk costs no sync. A savepoint, not a
        // transaction: after `merge_ahead` the connection's write transaction is open, and a savepoint nests in
        // it (outside one, a savepoint is a transaction of its own).
        for chunk in changes.chunks(STAGE_CHUNK_ROWS) {
            let err = self.err();
            let rows: Vec<Vec<SqlValue>> =
                chunk.iter().map(|change| staged_row(&run.run_id, change, &custom)).collect();
            let insert = Arc::clone(&insert);
            self.with(move |c| {
                let tx = c.savepoint().map_err(&err)?;
                {
                    let mut stmt = tx.prepare_cached(&insert).map_err(&err)?;
                    for row in rows {
                        stmt.execute(rusqlite::params_from_iter(row)).map_err(&err)?;
                    }
                }
                tx.commit().map_err(&err)
            })
            .await?;
        }
        Ok(())
    }

    async fn merge_ahead(&self, run: &RunStart, rows: usize) -> Result<usize, WarehouseError> {
        let err = self.err();
        let custom = self.active_custom();
        let history_custom = self.history_custom();
        let (run_id, ahead) = (run.run_id.clone(), Arc::clone(&self.ahead));
        self.with(move |c| {
            let mut ahead = ahead.lock().map_err(|_| WarehouseError::other("the SQLite connection is poisoned"))?;
            if ahead.as_ref().is_some_and(|a| a.stopped) {
                return Ok(0);
            }
            // The step: the staged rows after the last step's, at most `rows` of them (by rowid: a run's rows are
            // staged in sequence, and a TEMP table holds this connection's runs only).
            let after = ahead.as_ref().map_or(0, |a| a.through_rowid);
            let last: i64 =
                c.query_row("SELECT COALESCE(MAX(rowid), 0) FROM staging_changes", [], |r| r.get(0)).map_err(&err)?;
            let through = last.min(after.saturating_add(i64::try_from(rows).unwrap_or(i64::MAX)));
            if through <= after {
                return Ok(0);
            }
            let step = params![run_id, after, through];
            match ahead.as_mut() {
                // A deal with rows in an earlier step and in this one: its newest version must be chosen among all
                // of them at once, so the steps stop here (see `commit_in`).
                Some(a) => {
                    if c.query_row(SPLIT_DEALS, step, |r| r.get::<_, bool>(0)).map_err(&err)? {
                        tracing::debug!(through_rowid = a.through_rowid, "a deal was staged again after a step of the merge ahead: no further step");
                        a.stopped = true;
                        return Ok(0);
                    }
                }
                None => {
                    let any: bool = c
                        .query_row(&format!("SELECT EXISTS ({STEP_DEALS})"), step, |r| r.get(0))
                        .map_err(&err)?;
                    if !any {
                        return Ok(0);
                    }
                    // The write lock is taken here and held until `commit`: paging is near its end, so that is
                    // about the time the last pages take to arrive (see `fetch`). Readers (analysts, `status`)
                    // see the last commit meanwhile.
                    c.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
                    let begun = (|| {
                        c.execute_batch(
                            "DROP TABLE IF EXISTS temp.ahead_before;
                             CREATE TEMP TABLE ahead_before AS SELECT * FROM main.closed_won_deals WHERE false;
                             DROP TABLE IF EXISTS temp.ahead_closed;
                             CREATE TEMP TABLE ahead_closed (rid INTEGER NOT NULL, deal_id TEXT NOT NULL);",
                        )?;
                        c.query_row(&format!("SELECT COALESCE(MAX(rowid), 0) FROM main.{HISTORY_TABLE}"), [], |r| {
                            r.get::<_, i64>(0)
                        })
                    })();
                    match begun {
                        Ok(history_before) => {
                            *ahead = Some(Ahead {
                                through_rowid: 0,
                                stopped: false,
                                upserted: 0,
                                unwon: 0,
                                synced_at: ts(now()),
                                history_before,
                            });
                        }
                        Err(e) => {
                            let _ = c.execute_batch("ROLLBACK");
                            return Err(err(e));
                        }
                    }
                }
            }
            let Some(a) = ahead.as_mut() else { return Ok(0) };
            let merged = (|| {
                // The step's deals as they are before it (none of them was changed by an earlier step), then the
                // merge of its rows, then their history, as `commit` writes it, keeping what undoing it needs: the
                // versions it closes (every current version of these deals: reopening one it left open changes
                // nothing; the history rows it inserts are above `history_before`).
                c.execute(
                    &format!("INSERT INTO temp.ahead_before SELECT * FROM main.closed_won_deals WHERE deal_id IN ({STEP_DEALS})"),
                    step,
                )?;
                let range = params![run_id, a.synced_at, after, through];
                let upserted = c.execute(&merge_won(&custom), range)? as u64;
                let unwon = c.execute(MERGE_UNWON, range)? as u64;
                c.execute(
                    &format!(
                        "INSERT INTO temp.ahead_closed SELECT rowid, deal_id FROM main.{HISTORY_TABLE}
                         WHERE is_current = 1 AND deal_id IN ({STEP_DEALS})"
                    ),
                    step,
                )?;
                let scope = HistoryScope::Only(STEP_DEALS);
                c.execute(&history_close(scope), step)?;
                let versions = c.execute(&history_insert(&history_custom, scope), step)?;
                Ok::<_, rusqlite::Error>((upserted, unwon, versions))
            })();
            match merged {
                Ok((upserted, unwon, versions)) => {
                    tracing::debug!(
                        after_rowid = after,
                        through_rowid = through,
                        upserted,
                        unwon,
                        versions,
                        "merged a step of the staged changes, and wrote their history, ahead of the commit"
                    );
                    a.through_rowid = through;
                    a.upserted += upserted;
                    a.unwon += unwon;
                    Ok(usize::try_from(through - after).unwrap_or(usize::MAX))
                }
                Err(e) => {
                    // Every step is undone with the transaction; the run fails with this error.
                    *ahead = None;
                    let _ = c.execute_batch("ROLLBACK");
                    Err(err(e))
                }
            }
        })
        .await
    }

    async fn commit(&self, run: &RunStart, report: &RunReport) -> Result<MergeCounts, WarehouseError> {
        let err = self.err();
        let custom = self.active_custom();
        let history_custom = self.history_custom();
        let (run, report, ahead) = (run.clone(), report.clone(), Arc::clone(&self.ahead));
        self.with(move |c| {
            let ahead = ahead.lock().map_err(|_| WarehouseError::other("the SQLite connection is poisoned"))?.take();
            // IMMEDIATE: see `prepare`. After `merge_ahead` the transaction is open already.
            if ahead.is_none() {
                c.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
            }
            let committed = commit_in(c, &err, &run, &report, ahead, &custom, &history_custom)
                .and_then(|counts| c.execute_batch("COMMIT").map(|()| counts).map_err(&err));
            if committed.is_err() && !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            committed
        })
        .await
    }

    async fn fail_run(&self, run: &RunStart, report: &RunReport, error: &str) -> Result<(), WarehouseError> {
        let err = self.err();
        let (run_id, report, error, ahead) =
            (run.run_id.clone(), report.clone(), error.to_owned(), Arc::clone(&self.ahead));
        self.with(move |c| {
            // A merge begun ahead is undone: nothing of a failed run is merged.
            let ahead = ahead.lock().map_err(|_| WarehouseError::other("the SQLite connection is poisoned"))?.take();
            if ahead.is_some() || !c.is_autocommit() {
                c.execute_batch("ROLLBACK").map_err(&err)?;
            }
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(&err)?;
            tx.execute(
                "UPDATE sync_runs SET status = 'failed', finished_at = ?2, error = ?3, deals_quarantined = ?4,
                   api_calls = ?5, api_credits = ?6 WHERE run_id = ?1",
                params![
                    run_id,
                    ts(now()),
                    error,
                    int(report.deals_quarantined),
                    int(report.api_calls),
                    int(report.api_credits)
                ],
            )
            .map_err(&err)?;
            tx.execute("DELETE FROM staging_changes WHERE run_id = ?1", params![run_id]).map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn count_won_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u64, WarehouseError> {
        let err = self.err();
        self.with(move |c| c.query_row(COUNT_WON, params![ts(start), ts(end)], |r| r.get::<_, u64>(0)).map_err(&err))
            .await
    }

    async fn holds_deals(&self) -> Result<bool, WarehouseError> {
        let err = self.err();
        self.with(move |c| c.query_row(HOLDS_DEALS, [], |r| r.get::<_, bool>(0)).map_err(&err)).await
    }

    async fn won_ids_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<String>, WarehouseError> {
        let err = self.err();
        self.with(move |c| {
            let sql = COUNT_WON.replace("COUNT(*)", "deal_id") + " ORDER BY deal_id";
            query_all(c, &sql, params![ts(start), ts(end)], |r| r.get(0)).map_err(&err)
        })
        .await
    }

    async fn ledger(&self) -> Result<Vec<LedgerRow>, WarehouseError> {
        let err = self.err();
        self.with(move |c| {
            query_all(
                c,
                "SELECT run_id, kind, status, window_start, window_end, deals_upserted, error,
                   started_at, finished_at, zoho_won_count, warehouse_won_count FROM sync_runs
                 ORDER BY started_at DESC, rowid DESC",
                [],
                |r| {
                    Ok(LedgerRow {
                        run_id: r.get(0)?,
                        kind: r.get(1)?,
                        status: r.get(2)?,
                        window_start: parse_ts(&r.get::<_, String>(3)?).unwrap_or_default(),
                        window_end: parse_ts(&r.get::<_, String>(4)?).unwrap_or_default(),
                        deals_upserted: r.get(5)?,
                        error: r.get(6)?,
                        started_at: r.get::<_, Option<String>>(7)?.as_deref().and_then(parse_ts),
                        finished_at: r.get::<_, Option<String>>(8)?.as_deref().and_then(parse_ts),
                        zoho_won_count: r.get::<_, Option<i64>>(9)?.and_then(|n| u64::try_from(n).ok()),
                        warehouse_won_count: r.get::<_, Option<i64>>(10)?.and_then(|n| u64::try_from(n).ok()),
                    })
                },
            )
            .map_err(&err)
        })
        .await
    }

    async fn stored_deals(&self) -> Result<Vec<StoredDeal>, WarehouseError> {
        let err = self.err();
        self.with(move |c| {
            let custom =
                readable_custom(&known_fields(c).map_err(&err)?, &table_columns(c, "closed_won_deals").map_err(&err)?);
            let cols = columns::column_names(&custom).collect::<Vec<_>>().join(", ");
            let sql = format!("SELECT {cols} FROM closed_won_deals ORDER BY length(deal_id), deal_id");
            let rows = query_all(c, &sql, [], |r| read_deal(r, &custom)).map_err(&err)?;
            rows.into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| WarehouseError::other_from("closed_won_deals", e))
        })
        .await
    }

    async fn quarantined(&self) -> Result<Vec<QuarantinedRow>, WarehouseError> {
        let err = self.err();
        self.with(move |c| {
            query_all(
                c,
                "SELECT deal_id, field, reason, record, run_id FROM quarantined_deals
                 ORDER BY length(deal_id), deal_id",
                [],
                |r| {
                    Ok(QuarantinedRow {
                        deal_id: r.get(0)?,
                        field: r.get(1)?,
                        reason: r.get(2)?,
                        record: r.get(3)?,
                        run_id: r.get(4)?,
                    })
                },
            )
            .map_err(&err)
        })
        .await
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    #[test]
    fn a_bignumeric_value_is_stored_as_its_exact_text_and_read_back_digit_for_digit() {
        let rate = ExactDecimal::parse("98765432109876543210.123456789012345678").expect("decimal");
        let stored = encode(Cell::BigDecimal(rate.clone()));
        assert_eq!(stored, SqlValue::Text("98765432109876543210.123456789012345678".into()));
        // Through a real TEXT column (no REAL or NUMERIC affinity to turn it into a float).
        let c = Connection::open_in_memory().expect("in-memory SQLite");
        c.execute(&format!("CREATE TABLE v (x {})", columns::sqlite_type(CellType::BigDecimal)), []).expect("table");
        c.execute("INSERT INTO v VALUES (?1)", [&stored]).expect("insert");
        let back: SqlValue = c.query_row("SELECT x FROM v", [], |r| r.get(0)).expect("read");
        assert_eq!(decode("x", CellType::BigDecimal, back), Ok(Cell::BigDecimal(rate)));
        assert!(decode("x", CellType::BigDecimal, SqlValue::Text("12,5".into())).is_err());
    }
}

#[cfg(test)]
mod exact_sum_tests {
    use super::*;

    fn sum(values: &[Option<&str>]) -> Option<String> {
        let c = Connection::open_in_memory().expect("in-memory SQLite");
        c.execute("CREATE TABLE v (x TEXT)", []).expect("table");
        for v in values {
            c.execute("INSERT INTO v VALUES (?1)", params![v]).expect("insert");
        }
        let sql = format!("SELECT {} FROM (SELECT {} FROM v)", decimal_sum("a"), decimal_parts("x", "a"));
        c.query_row(&sql, [], |r| r.get(0)).expect("sum")
    }

    #[test]
    fn decimal_text_sums_exactly_where_a_float_sum_would_not() {
        assert_eq!(sum(&[Some("0.1"), Some("0.2")]).as_deref(), Some("0.3"));
        assert_eq!(
            sum(&[Some("12345678901234.123456789"), Some("1"), Some("0.876543211")]).as_deref(),
            Some("12345678901236")
        );
        assert_eq!(sum(&[Some("-0.35"), Some("0.1")]).as_deref(), Some("-0.25"));
        assert_eq!(sum(&[Some("-5.5"), Some("2.25"), None]).as_deref(), Some("-3.25"));
        assert_eq!(sum(&[Some("5"), Some("-5.000000001")]).as_deref(), Some("-0.000000001"));
        assert_eq!(sum(&[Some("-1.5"), Some("0.5")]).as_deref(), Some("-1"));
        assert_eq!(sum(&[None, None]), None);
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    fn run(id: &str) -> RunStart {
        let now = Utc::now();
        RunStart {
            run_id: id.to_owned(),
            kind: RunKind::Scheduled,
            started_at: now,
            window_start: now - chrono::Duration::hours(24),
            window_end: now,
            lease_ttl: chrono::Duration::minutes(10),
        }
    }

    /// A run that cannot get the write lock within the busy timeout (another run merging ahead holds it) is told
    /// which run holds the lease, as when it finds the lease taken; with no such run it gets SQLite's error.
    #[tokio::test]
    async fn a_run_kept_off_the_write_lock_is_told_which_run_holds_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warehouse.sqlite3");
        let first = SqliteWarehouse::open(&path).expect("open");
        first.prepare().await.expect("prepare");
        let second = SqliteWarehouse::open(&path).expect("open again");
        second.conn.lock().expect("connection").busy_timeout(Duration::from_millis(200)).expect("busy timeout");
        // Another process holds the write lock, no run holds the lease: SQLite's own error.
        let other = Connection::open(&path).expect("a third connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
        let err = second.begin_run(&run("r2")).await.expect_err("the write lock is taken");
        assert!(matches!(err, WarehouseError::Sqlite { .. }), "{err:?}");
        other.execute_batch("ROLLBACK").expect("release it");
        // A run holds the lease and the write lock (as from its merge ahead to its commit).
        first.begin_run(&run("r1")).await.expect("begin r1");
        other.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
        match second.begin_run(&run("r2")).await {
            Err(WarehouseError::Busy { run_id, .. }) => assert_eq!(run_id, "r1"),
            other => panic!("expected Busy naming r1, got {other:?}"),
        }
        other.execute_batch("ROLLBACK").expect("release it");
        // Nothing was written for r2: the ledger holds r1 only.
        let ledger = second.ledger().await.expect("ledger");
        assert_eq!(ledger.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["r1"]);
    }
}

#[cfg(test)]
mod page_size_tests {
    use super::*;

    fn page_size(path: &Path) -> i64 {
        Connection::open(path).expect("open").query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page_size")
    }

    /// A file the job creates gets 16 KiB pages; a file made by an earlier version (SQLite's 4 KiB pages, in WAL
    /// mode) keeps its page size and is used as it is.
    #[tokio::test]
    async fn a_new_file_gets_large_pages_and_an_existing_file_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join("new.sqlite3");
        let w = SqliteWarehouse::open(&new).expect("open");
        w.prepare().await.expect("prepare");
        assert_eq!(page_size(&new), PAGE_SIZE);

        let old = dir.path().join("old.sqlite3");
        {
            let c = Connection::open(&old).expect("create");
            c.pragma_update(None, "journal_mode", "WAL").expect("wal");
            c.execute_batch("CREATE TABLE before_us (x INTEGER)").expect("a table");
        }
        assert_eq!(page_size(&old), 4096);
        let w = SqliteWarehouse::open(&old).expect("open the old file");
        w.prepare().await.expect("prepare the old file");
        assert!(!w.holds_deals().await.expect("holds_deals"), "the old file holds no deals");
        assert_eq!(page_size(&old), 4096, "an existing file's page size is not changed");
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    fn plan(c: &Connection, sql: &str) -> String {
        let bound = sql.replace("?1", "'2020-01-01T00:00:00Z'").replace("?2", "'2030-01-01T00:00:00Z'");
        query_all(c, &format!("EXPLAIN QUERY PLAN {bound}"), [], |r| r.get::<_, String>(3)).expect("plan").join("; ")
    }

    /// The commit's count of the window's won rows, and the ids `reconcile` lists, are read from an index alone
    /// (never the wide rows); a file made by an earlier version, with its index on `modified_time` alone, gets
    /// the new one in its place.
    #[tokio::test]
    async fn the_window_is_counted_and_listed_from_an_index_alone_in_new_and_old_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.sqlite3");
        {
            let c = Connection::open(&path).expect("create");
            c.execute_batch(&deal_table_ddl()).expect("the deals table");
            c.execute_batch("CREATE INDEX closed_won_deals_modified ON closed_won_deals (modified_time)")
                .expect("an earlier version's index");
        }
        let w = SqliteWarehouse::open(&path).expect("open");
        w.prepare().await.expect("prepare");
        let c = w.conn.lock().expect("connection");
        let indexes: Vec<String> = query_all(
            &c,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'closed_won_deals' AND sql IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("indexes");
        assert!(!indexes.iter().any(|n| n == "closed_won_deals_modified"), "the old index is gone: {indexes:?}");
        for sql in [COUNT_WON.to_owned(), COUNT_WON.replace("COUNT(*)", "deal_id") + " ORDER BY deal_id"] {
            let plan = plan(&c, &sql);
            assert!(plan.contains("COVERING INDEX closed_won_deals_window"), "{sql}\nreads the rows: {plan}");
        }
    }
}
