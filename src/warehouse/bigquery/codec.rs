//! Row codec: a `DealChange` as a staged JSON row, and a selected row back as a `StoredDeal`.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value};

use crate::deal::{Deal, DealChange};
use crate::warehouse::{change_kind, StoredDeal, WarehouseError, DEAL_COLUMNS};

/// BigQuery NUMERIC keeps 9 decimal places.
pub(super) const NUMERIC_SCALE: u32 = 9;

/// One row of `stored_deals`' SELECT (columns in [`DEAL_COLUMNS`] order) as a [`StoredDeal`].
pub(super) fn stored_deal(row: &[Option<String>]) -> Result<StoredDeal, WarehouseError> {
    let by_name: HashMap<&str, Option<&str>> =
        DEAL_COLUMNS.iter().enumerate().map(|(i, c)| (c.name, row.get(i).and_then(|v| v.as_deref()))).collect();
    let get = |name: &str| by_name.get(name).copied().flatten();
    let text = |name: &str| get(name).map(str::to_owned);
    let unreadable =
        |name: &str, v: &str| WarehouseError::Other(format!("BigQuery returned an unreadable {name} {v:?}"));
    let dec = |name: &str| -> Result<Option<Decimal>, WarehouseError> {
        get(name)
            .map(|v| Decimal::from_str(v).or_else(|_| Decimal::from_scientific(v)).map_err(|_| unreadable(name, v)))
            .transpose()
    };
    let ts = |name: &str| -> Result<Option<DateTime<Utc>>, WarehouseError> {
        get(name)
            .map(|v| v.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(|| unreadable(name, v)))
            .transpose()
    };
    let flag = |name: &str| get(name) == Some("true");
    let deal = Deal {
        deal_id: text("deal_id").unwrap_or_default(),
        deal_name: text("deal_name"),
        stage: text("stage"),
        pipeline: text("pipeline"),
        amount: dec("amount")?,
        currency: text("currency"),
        exchange_rate: dec("exchange_rate")?,
        probability: get("probability").map(|v| v.parse().map_err(|_| unreadable("probability", v))).transpose()?,
        expected_revenue: dec("expected_revenue")?,
        closing_date: get("closing_date")
            .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| unreadable("closing_date", v)))
            .transpose()?,
        account_id: text("account_id"),
        account_name: text("account_name"),
        contact_id: text("contact_id"),
        contact_name: text("contact_name"),
        owner_id: text("owner_id"),
        owner_name: text("owner_name"),
        owner_email: text("owner_email"),
        lead_source: text("lead_source"),
        deal_type: text("deal_type"),
        created_time: ts("created_time")?,
        modified_time: ts("modified_time")?.unwrap_or_default(),
        raw: text("raw").unwrap_or_default(),
    };
    Ok(StoredDeal {
        deal,
        is_closed_won: flag("is_closed_won"),
        is_deleted: flag("is_deleted"),
        deleted_time: ts("deleted_time")?,
        run_id: text("run_id").unwrap_or_default(),
    })
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

pub(super) fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> Value) -> Value {
    v.as_ref().map(f).unwrap_or(Value::Null)
}

pub(super) fn staged_row(run_id: &str, change: &DealChange) -> StagedRow {
    let s = |v: &String| Value::String(v.clone());
    let mut m = Map::new();
    let (kind, version) = match change {
        DealChange::Won(d) => {
            m.insert("deal_id".into(), s(&d.deal_id));
            m.insert("deal_name".into(), opt(&d.deal_name, s));
            m.insert("stage".into(), opt(&d.stage, s));
            m.insert("pipeline".into(), opt(&d.pipeline, s));
            m.insert("amount".into(), opt(&d.amount, numeric));
            m.insert("currency".into(), opt(&d.currency, s));
            m.insert("exchange_rate".into(), opt(&d.exchange_rate, numeric));
            m.insert("probability".into(), opt(&d.probability, |p| Value::from(*p)));
            m.insert("expected_revenue".into(), opt(&d.expected_revenue, numeric));
            m.insert("closing_date".into(), opt(&d.closing_date, |x| Value::String(x.format("%Y-%m-%d").to_string())));
            m.insert("account_id".into(), opt(&d.account_id, s));
            m.insert("account_name".into(), opt(&d.account_name, s));
            m.insert("contact_id".into(), opt(&d.contact_id, s));
            m.insert("contact_name".into(), opt(&d.contact_name, s));
            m.insert("owner_id".into(), opt(&d.owner_id, s));
            m.insert("owner_name".into(), opt(&d.owner_name, s));
            m.insert("owner_email".into(), opt(&d.owner_email, s));
            m.insert("lead_source".into(), opt(&d.lead_source, s));
            m.insert("deal_type".into(), opt(&d.deal_type, s));
            m.insert("created_time".into(), opt(&d.created_time, rfc3339));
            m.insert("modified_time".into(), rfc3339(&d.modified_time));
            m.insert("is_closed_won".into(), Value::Bool(true));
            m.insert("is_deleted".into(), Value::Bool(false));
            // The JSON text as received; the staging INSERT parses it (PARSE_JSON).
            m.insert("raw".into(), Value::String(d.raw.clone()));
            (change_kind::WON, d.modified_time)
        }
        DealChange::Unwon { deal_id, stage, modified_time } => {
            m.insert("deal_id".into(), s(deal_id));
            m.insert("stage".into(), opt(stage, s));
            m.insert("modified_time".into(), rfc3339(modified_time));
            m.insert("is_closed_won".into(), Value::Bool(false));
            (change_kind::UNWON, *modified_time)
        }
        DealChange::Deleted { deal_id, deleted_time } => {
            m.insert("deal_id".into(), s(deal_id));
            m.insert("deleted_time".into(), rfc3339(deleted_time));
            m.insert("is_deleted".into(), Value::Bool(true));
            (change_kind::DELETED, *deleted_time)
        }
        DealChange::Vanished { deal_id } => {
            m.insert("deal_id".into(), s(deal_id));
            m.insert("is_deleted".into(), Value::Bool(true));
            (change_kind::VANISHED, DateTime::<Utc>::UNIX_EPOCH)
        }
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
