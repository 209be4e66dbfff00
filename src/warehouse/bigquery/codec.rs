//! Row codec: a `DealChange` as a staged JSON row, and a selected row back as a `StoredDeal`.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value};

use crate::deal::{Cell, CellType, DealChange, ExactDecimal};
use crate::warehouse::columns::{self, change_cells, custom_cells, CustomColumn, Unreadable};
use crate::warehouse::{StoredDeal, WarehouseError};

/// BigQuery NUMERIC keeps 9 decimal places.
pub(super) const NUMERIC_SCALE: u32 = 9;

/// A stored value (as the REST API's text cell; TIMESTAMP selected as `UNIX_MICROS`, JSON and arrays as
/// `TO_JSON_STRING`) back as a cell of type `t`.
pub(super) fn decode(column: &str, t: CellType, v: Option<&str>) -> Result<Cell, Unreadable> {
    let Some(v) = v else { return Ok(Cell::Null) };
    let cell = match t {
        CellType::Text => Some(Cell::Text(v.to_owned())),
        CellType::Json => Some(Cell::Json(v.to_owned())),
        CellType::Int => v.parse().ok().map(Cell::Int),
        CellType::Bool => match v {
            "true" => Some(Cell::Bool(true)),
            "false" => Some(Cell::Bool(false)),
            _ => None,
        },
        CellType::Decimal => Decimal::from_str(v).or_else(|_| Decimal::from_scientific(v)).ok().map(Cell::Decimal),
        // Canonical text (`1.5`); a padded one (`1.500000000000000000`, the emulator's DECIMAL(38,18) cast to
        // STRING, docs/bigquery.md) reads to the same value.
        CellType::BigDecimal => ExactDecimal::parse(v).ok().map(Cell::BigDecimal),
        CellType::Date => NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().map(Cell::Date),
        CellType::Timestamp => v.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).map(Cell::Timestamp),
        // BigQuery has no NULL array (a NULL is stored as []); the emulator answers `null`.
        CellType::TextList if v == "null" => Some(Cell::Null),
        CellType::TextList => serde_json::from_str(v).ok().map(Cell::TextList),
    };
    cell.ok_or_else(|| Unreadable { column: column.to_owned(), value: v.to_owned() })
}

/// A cell as the staging row's JSON value (sent as a STRING field of `@rows` and cast in the INSERT).
pub(super) fn encode(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s) | Cell::Json(s) => Value::String(s.clone()),
        Cell::Int(i) => Value::from(*i),
        Cell::Bool(b) => Value::Bool(*b),
        Cell::Decimal(d) => numeric(d),
        // As text, cast to BIGNUMERIC in the INSERT: never a JSON number (a float to most readers).
        Cell::BigDecimal(d) => Value::String(d.as_str().to_owned()),
        Cell::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
        Cell::Timestamp(t) => rfc3339(t),
        Cell::TextList(v) => Value::String(serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())),
    }
}

/// How a column is selected so that [`decode`] can read it.
pub(super) fn select_expr(name: &str, t: CellType) -> String {
    match t {
        // Integers of microseconds: the REST API's own TIMESTAMP text differs between BigQuery
        // ("1.7E9") and the emulator ("1700000000.0").
        CellType::Timestamp => format!("UNIX_MICROS({name}) AS {name}"),
        CellType::Json | CellType::TextList => format!("TO_JSON_STRING({name}) AS {name}"),
        _ => name.to_owned(),
    }
}

/// One row of `stored_deals`' SELECT (columns in [`DEAL_COLUMNS`] order) as a [`StoredDeal`].
pub(super) fn stored_deal(row: &[Option<String>], custom: &[CustomColumn]) -> Result<StoredDeal, WarehouseError> {
    let names = columns::column_names(custom);
    let by_name: HashMap<&str, Option<&str>> =
        names.enumerate().map(|(i, n)| (n, row.get(i).and_then(|v| v.as_deref()))).collect();
    columns::stored_deal(custom, |name, t| decode(name, t, by_name.get(name).copied().flatten()))
        .map_err(|e| WarehouseError::other_from("BigQuery returned an unreadable value", e))
}

/// One change as a staging row: JSON values by column name, sent as the STRING fields of `@rows`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StagedRow {
    /// The change kind ([`change_kind`]).
    pub(super) kind: &'static str,
    /// The change's key, `kind:deal_id:version-in-µs` (hashed past 128 characters): distinct per change.
    pub(super) insert_id: String,
    pub(super) deal_id: String,
    pub(super) json: Value,
    /// Serialized size, for cutting batches under the request size limit.
    pub(super) size: usize,
}

/// RFC 3339 with microseconds: what `CAST(… AS TIMESTAMP)` reads on BigQuery and the emulator alike, and
/// BigQuery keeps microseconds.
pub(super) fn rfc3339(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// NUMERIC as a decimal string (never through f64), rounded to NUMERIC's 9 places like BigQuery's own CAST.
pub(super) fn numeric(d: &Decimal) -> Value {
    Value::String(
        d.round_dp_with_strategy(NUMERIC_SCALE, RoundingStrategy::MidpointAwayFromZero).normalize().to_string(),
    )
}

pub(super) fn staged_row(run_id: &str, change: &DealChange, custom: &[CustomColumn]) -> StagedRow {
    let (kind, cells) = change_cells(change);
    let mut m = Map::new();
    for (name, cell) in &cells {
        m.insert((*name).to_owned(), encode(cell));
    }
    if let DealChange::Won(d) = change {
        for (name, cell) in custom_cells(d, custom) {
            m.insert(name, encode(&cell));
        }
    }
    let version = match change {
        DealChange::Won(d) => d.modified_time,
        DealChange::Unwon { modified_time, .. } => *modified_time,
        DealChange::Deleted { deleted_time, .. } => *deleted_time,
        DealChange::Vanished { .. } => DateTime::<Utc>::UNIX_EPOCH,
    };
    m.insert("run_id".into(), Value::String(run_id.to_owned()));
    m.insert("change_kind".into(), Value::String(kind.to_owned()));
    let json = Value::Object(m);
    let size = json.to_string().len();
    StagedRow {
        kind,
        insert_id: insert_id(kind, change.deal_id(), &version),
        deal_id: change.deal_id().to_owned(),
        json,
        size,
    }
}

/// insertAll's `insertId` was at most 128 characters; the same bound keeps our change keys short.
pub(super) const INSERT_ID_MAX: usize = 128;

/// The change's key: the same change of the same deal version maps to the same key, so the verification
/// before the merge counts distinct changes (a redelivered batch counts once). Keys that would exceed 128
/// characters are hashed.
pub(super) fn insert_id(kind: &str, deal_id: &str, version: &DateTime<Utc>) -> String {
    let id = format!("{kind}:{deal_id}:{}", version.timestamp_micros());
    if id.len() <= INSERT_ID_MAX {
        return id;
    }
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{kind}:h{hash:016x}:{}", version.timestamp_micros())
}
