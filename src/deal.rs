//! The domain types shared by both sides of the pipeline: a typed closed-won deal, its changes, and the
//! `Modified_Time` window a run covers.
//!
//! `zoho/` turns Zoho's JSON into [`Deal`]s and [`DealChange`]s; `warehouse/` stores them. Nothing here knows
//! about HTTP or SQL. Timestamps are UTC, money is an exact decimal, and the record as Zoho sent it is kept in
//! [`Deal::raw`] so that custom and future fields are never lost.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

/// One deal as the warehouse stores it (a row of `closed_won_deals`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deal {
    /// Zoho record id (a 19-digit number, kept as text).
    pub deal_id: String,
    pub deal_name: Option<String>,
    /// The stage value as it appears in the record.
    pub stage: Option<String>,
    pub pipeline: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub exchange_rate: Option<Decimal>,
    pub probability: Option<i64>,
    pub expected_revenue: Option<Decimal>,
    pub closing_date: Option<NaiveDate>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub contact_id: Option<String>,
    pub contact_name: Option<String>,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub lead_source: Option<String>,
    pub deal_type: Option<String>,
    pub created_time: Option<DateTime<Utc>>,
    /// Zoho's `Modified_Time`: the version of this row. An older version never overwrites a newer one.
    pub modified_time: DateTime<Utc>,
    /// The record exactly as Zoho sent it (JSON text), custom fields included.
    pub raw: String,
    /// Money in the org's home currency (issue #11; see `zoho::currencies` for the convention).
    pub home: HomeMoney,
    /// When the deal entered a won stage, and how the job knows (issue #11; see `sync::won_at`).
    pub won: WonAt,
    /// The custom fields' typed values, by column (empty when the org has none or they were not mapped).
    pub custom: Vec<CustomValue>,
}

// --- issue #11, part B: home-currency money and the won date (grouped to move into the column catalogue) ---

/// A deal's amounts in the org's home currency, computed from the record's own `Exchange_Rate`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HomeMoney {
    /// ISO code of the org's home currency; `None` when the job could not learn it (no multi-currency, or the
    /// currencies API could not be read).
    pub currency: Option<String>,
    /// `amount` in the home currency; `None` when it cannot be computed exactly (no amount, or a foreign-currency
    /// deal without a usable exchange rate).
    pub amount: Option<Decimal>,
    /// `expected_revenue` in the home currency, the same way.
    pub expected_revenue: Option<Decimal>,
}

/// How `won_at` was learned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WonAtSource {
    /// From Zoho's stage history: the time the deal moved into its won stage.
    StageHistory,
    /// The `Modified_Time` of the first version the job saw in a won stage (no history read).
    Observed,
    /// First seen in a backfill (or the first run) without its stage history: the won date is not known.
    #[default]
    Unknown,
}

impl WonAtSource {
    /// The warehouse's spelling (`won_at_source` column).
    pub fn as_str(&self) -> &'static str {
        match self {
            WonAtSource::StageHistory => "stage_history",
            WonAtSource::Observed => "observed",
            WonAtSource::Unknown => "unknown",
        }
    }

    /// Reads the warehouse's spelling; anything else (a row written before the column existed) is `Unknown`.
    pub fn parse(s: &str) -> WonAtSource {
        match s {
            "stage_history" => WonAtSource::StageHistory,
            "observed" => WonAtSource::Observed,
            _ => WonAtSource::Unknown,
        }
    }
}

/// When a deal entered a won stage. On a staged change this is the job's candidate; the merge keeps the stored
/// value of a row that is already won (an edit never moves it) and takes the candidate only for a new row or
/// an un-won row that is won again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WonAt {
    pub at: Option<DateTime<Utc>>,
    pub source: WonAtSource,
}

/// One custom column's value on a [`Deal`].
#[derive(Debug, Clone, PartialEq)]
pub struct CustomValue {
    /// The column's name (a safe identifier: lower-case letters, digits, underscores).
    pub column: String,
    pub value: Cell,
}

/// One column that a field of the source system lands in (or a field with no column), as the warehouse's
/// `deal_fields` data dictionary records it. Custom columns carry their type; standard ones are the
/// warehouse's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldColumn {
    pub api_name: String,
    pub label: String,
    /// The source system's data type (Zoho's `data_type`).
    pub data_type: String,
    /// The column, when the field has one.
    pub column: Option<String>,
    /// The type of a custom column (`None` for standard columns and fields without a column).
    pub cell_type: Option<CellType>,
    pub custom: bool,
}

/// What a run learned about one deal. The warehouse applies these idempotently (see `warehouse::Warehouse`).
// Won is by far the most common change; boxing it would add an allocation per deal for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DealChange {
    /// The deal is in a won stage: insert it, or update the stored row if this version is not older.
    Won(Deal),
    /// The deal was modified and is no longer in a won stage: an existing row is flagged
    /// `is_closed_won = false` (if this version is not older); no row is created for it.
    Unwon { deal_id: String, stage: Option<String>, modified_time: DateTime<Utc> },
    /// The deal was deleted in Zoho: an existing row is flagged `is_deleted` with the deletion time.
    Deleted { deal_id: String, deleted_time: DateTime<Utc> },
    /// Zoho no longer has the deal at all, and no longer says when it was deleted (found by `reconcile` past
    /// Zoho's deletion retention): an existing row not yet flagged deleted gets `is_deleted` with a NULL
    /// `deleted_time`; no row is created.
    Vanished { deal_id: String },
}

impl DealChange {
    /// The Zoho record id this change is about.
    pub fn deal_id(&self) -> &str {
        match self {
            DealChange::Won(d) => &d.deal_id,
            DealChange::Unwon { deal_id, .. }
            | DealChange::Deleted { deal_id, .. }
            | DealChange::Vanished { deal_id } => deal_id,
        }
    }
}

/// Formats a UTC timestamp the way the warehouse stores it: RFC 3339, whole seconds, `Z`.
pub fn format_utc(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `Modified_Time` window: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// Splits the window into at most `n` consecutive slices of equal length (whole seconds).
    pub fn slices(&self, n: usize) -> Vec<Window> {
        let total = (self.end - self.start).num_seconds().max(0);
        let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX).min(total.max(1));
        let step = total / n;
        (0..n)
            .map(|i| Window {
                start: self.start + chrono::Duration::seconds(i * step),
                end: if i == n - 1 { self.end } else { self.start + chrono::Duration::seconds((i + 1) * step) },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn slices_cover_the_window_exactly() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).single().expect("valid");
        let w = Window { start, end: start + chrono::Duration::seconds(10_001) };
        let s = w.slices(4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].start, w.start);
        assert_eq!(s[3].end, w.end);
        assert!(s.windows(2).all(|p| p[0].end == p[1].start));
        assert_eq!(Window { start, end: start }.slices(4).len(), 1);
    }
}
/// The type of one stored value, independent of any warehouse: each warehouse maps it to its own column type
/// (BigQuery: STRING, INT64, NUMERIC, BOOL, DATE, TIMESTAMP, JSON, `ARRAY<STRING>`; SQLite: TEXT or INTEGER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellType {
    Text,
    /// A signed 64-bit integer.
    Int,
    /// An exact decimal that fits BigQuery's NUMERIC: at most 29 digits before the point and 9 after.
    Decimal,
    Bool,
    Date,
    /// A UTC instant.
    Timestamp,
    /// JSON text.
    Json,
    /// A list of strings (a multi-select pick list).
    TextList,
}

impl CellType {
    /// The spelling used in `deal_fields.column_type` and in messages (BigQuery's type names).
    pub const fn as_str(self) -> &'static str {
        match self {
            CellType::Text => "STRING",
            CellType::Int => "INT64",
            CellType::Decimal => "NUMERIC",
            CellType::Bool => "BOOL",
            CellType::Date => "DATE",
            CellType::Timestamp => "TIMESTAMP",
            CellType::Json => "JSON",
            CellType::TextList => "ARRAY<STRING>",
        }
    }

    /// Reads [`CellType::as_str`] back.
    pub fn parse(s: &str) -> Option<CellType> {
        [
            CellType::Text,
            CellType::Int,
            CellType::Decimal,
            CellType::Bool,
            CellType::Date,
            CellType::Timestamp,
            CellType::Json,
            CellType::TextList,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One typed value of a row, as `zoho/` produces it and each warehouse encodes it its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Decimal(Decimal),
    Bool(bool),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    /// JSON text.
    Json(String),
    TextList(Vec<String>),
}

/// A Rust value that is one cell of a stored deal (the standard columns' field types).
pub trait CellValue: Sized {
    fn to_cell(&self) -> Cell;
    /// `None` when the cell is of another type (a reader then reports the column as unreadable).
    fn from_cell(cell: Cell) -> Option<Self>;
}

macro_rules! cell_value {
    ($t:ty, $variant:ident) => {
        impl CellValue for Option<$t> {
            fn to_cell(&self) -> Cell {
                self.clone().map_or(Cell::Null, Cell::$variant)
            }
            fn from_cell(cell: Cell) -> Option<Self> {
                match cell {
                    Cell::Null => Some(None),
                    Cell::$variant(v) => Some(Some(v)),
                    _ => None,
                }
            }
        }
        impl CellValue for $t {
            fn to_cell(&self) -> Cell {
                Cell::$variant(self.clone())
            }
            fn from_cell(cell: Cell) -> Option<Self> {
                match cell {
                    Cell::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
cell_value!(String, Text);
cell_value!(i64, Int);
cell_value!(Decimal, Decimal);
cell_value!(bool, Bool);
cell_value!(NaiveDate, Date);
cell_value!(DateTime<Utc>, Timestamp);
