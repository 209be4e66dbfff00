//! Zoho's JSON → [`Deal`]. Strict about types (a wrong type quarantines the record with a reason), lenient
//! about presence (a missing optional field is `None`), and never panics whatever the input.
//!
//! Formats (docs/zoho-api.md §5.2): datetimes are ISO 8601 with an offset and no fraction, dates `YYYY-MM-DD`,
//! money a JSON number (kept exact: serde_json's `arbitrary_precision` keeps the digits Zoho sent), lookups
//! `{"name","id"}`; COQL returns dot-joined lookup fields under keys like `Owner.email`.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::deal::{Cell, CellType, CustomValue, Deal, ExactDecimal, FieldColumn};

/// The `deal_id` of a quarantined record whose id is unreadable.
pub const UNKNOWN_ID: &str = "<unknown>";

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deal {deal_id}: field {field}: {reason}")]
pub struct Quarantined {
    /// The record's id, or `<unknown>` when even that is unreadable.
    pub deal_id: String,
    pub field: String,
    pub reason: String,
}

/// The Deal fields this job maps into [`Deal`]'s columns. A query selects each one only if the org's field
/// metadata has it (`Pipeline`, `Currency` and `Exchange_Rate` exist only with the pipeline feature or
/// multi-currency: docs/zoho-api.md §3f); `id` is selected always (it is not in the metadata), and `Owner.email`
/// whenever `Owner` is. A record that lacks a field maps to `None` in that column.
pub const STANDARD_FIELDS: &[&str] = &[
    "id",
    "Deal_Name",
    "Stage",
    "Pipeline",
    "Amount",
    "Currency",
    "Exchange_Rate",
    "Probability",
    "Expected_Revenue",
    "Closing_Date",
    "Account_Name",
    "Contact_Name",
    "Owner",
    "Owner.email",
    "Lead_Source",
    "Type",
    "Created_Time",
    "Modified_Time",
];

/// One Deals field as `GET /settings/fields?module=Deals` describes it: the parts the select list and the
/// won-stage discovery need. Fields the API user's profile hides are absent from the metadata altogether.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMeta {
    /// The name queries use (`Deal_Name`, `Region__c`, `Languages_Known`).
    pub api_name: String,
    /// The label shown in Zoho's UI (`field_label`).
    pub label: String,
    /// A formula field's `formula.return_type` (`double`, `text`, `date`, `boolean`, …).
    pub formula_return: Option<String>,
    /// Zoho's `data_type`: `text`, `picklist`, `formula`, `multiselectlookup`, `fileupload`, `subform`, …
    pub data_type: String,
    /// A custom field (`custom_field: true`).
    pub custom: bool,
    /// `visible: false` marks a field the org has switched off; it is not selected.
    pub visible: bool,
    /// Pick-list values (Stage's carry their deal category; Pipeline's carry their stage `maps`).
    pub pick_list_values: Vec<PickListValue>,
    /// `length`: how many digits (characters, for text) the field holds. UNCONFIRMED which data types carry
    /// it, and whether a number's length counts its decimal places (docs/zoho-api.md §8): `None` = unknown.
    pub length: Option<u32>,
    /// `decimal_place`: how many digits a number keeps after the point. UNCONFIRMED which data types carry it
    /// (docs/zoho-api.md §8): `None` = unknown.
    pub decimal_place: Option<u32>,
}

/// A pick-list value (or a pipeline's stage map entry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PickListValue {
    pub display_value: Option<String>,
    pub actual_value: Option<String>,
    /// `forecast_type` (renamed "deal category" in Zoho's UI): `Open`, `Closed Won`, `Closed Lost`.
    pub forecast_type: Option<String>,
    /// `deal_category`, the newer spelling of the same.
    pub deal_category: Option<String>,
    /// A Pipeline value's stages (`pick_list_values[].maps[]`, and `pipeline[].maps[]` of the pipeline API).
    pub maps: Vec<PickListValue>,
}

impl PickListValue {
    /// Parses one value leniently: a key with an unexpected shape is `None`, never an error (a shape Zoho adds
    /// later must not stop the nightly run). A category may be text or `{"name": …}`.
    pub fn from_json(v: &Value) -> PickListValue {
        let text = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("name").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        PickListValue {
            display_value: text("display_value"),
            actual_value: text("actual_value"),
            forecast_type: text("forecast_type"),
            deal_category: text("deal_category"),
            maps: v.get("maps").and_then(Value::as_array).into_iter().flatten().map(PickListValue::from_json).collect(),
        }
    }

    /// Whether this stage's category is "Closed Won" (either key).
    pub fn is_won(&self) -> bool {
        [&self.forecast_type, &self.deal_category]
            .into_iter()
            .any(|c| c.as_deref().is_some_and(|c| c.trim().eq_ignore_ascii_case("Closed Won")))
    }

    /// Whether the value carries any category at all.
    pub fn has_category(&self) -> bool {
        self.forecast_type.is_some() || self.deal_category.is_some()
    }
}

/// Parses `GET /settings/fields?module=Deals` (`{"fields": [...]}`). An entry without an `api_name` is skipped.
pub fn parse_fields(body: &Value) -> Option<Vec<FieldMeta>> {
    let fields = body.get("fields")?.as_array()?;
    Some(
        fields
            .iter()
            .filter_map(|f| {
                let api_name = f.get("api_name")?.as_str()?.to_owned();
                Some(FieldMeta {
                    label: f.get("field_label").and_then(Value::as_str).unwrap_or(&api_name).to_owned(),
                    formula_return: f
                        .get("formula")
                        .and_then(|x| x.get("return_type"))
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase),
                    api_name,
                    data_type: f.get("data_type").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase(),
                    custom: f.get("custom_field").and_then(Value::as_bool).unwrap_or(false),
                    visible: f.get("visible").and_then(Value::as_bool).unwrap_or(true),
                    pick_list_values: f
                        .get("pick_list_values")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(PickListValue::from_json)
                        .collect(),
                    length: count(f.get("length")),
                    decimal_place: count(f.get("decimal_place")),
                })
            })
            .collect(),
    )
}

/// A digit count of the field metadata: a whole number, or its digits as text; anything else (null, a
/// negative, a fraction, a shape Zoho adds later) is unknown, never an error.
fn count(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The id of a record, if it has a readable one.
pub fn record_id(record: &Value) -> Option<String> {
    id_value(record.get("id")?)
}

/// A record's `id` value as an id, if it is one (digits, as text or a number).
pub fn id_value(id: &Value) -> Option<String> {
    match id {
        Value::String(s) if is_id(s) => Some(s.clone()),
        Value::Number(n) if is_id(&n.to_string()) => Some(n.to_string()),
        _ => None,
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The record as compact JSON text, in a buffer of its own length. `to_string` grows its buffer by doubling, and
/// a backfill holds thousands of these while a page waits to be staged: up to twice the text per deal, for
/// nothing.
fn compact_json(record: &Value) -> String {
    let mut text = serde_json::to_string(record).unwrap_or_default();
    text.shrink_to_fit();
    text
}

/// Maps one record (an element of a COQL or Get Records `data` array) to a [`Deal`], without custom columns.
pub fn to_deal(record: &Value) -> Result<Deal, Quarantined> {
    to_deal_with(record, &[])
}

/// Maps one record to a [`Deal`] whose [`Deal::custom`] carries a typed value for each of `custom`'s columns
/// (NULL when the record lacks the field). A value that does not fit its column's type quarantines the record,
/// naming the field and the value.
pub fn to_deal_with(record: &Value, custom: &[CustomField]) -> Result<Deal, Quarantined> {
    let Value::Object(obj) = record else {
        return Err(q(UNKNOWN_ID, "(record)", format!("expected a JSON object, got {}", kind(record))));
    };
    let deal_id = match obj.get("id") {
        None | Some(Value::Null) => return Err(q(UNKNOWN_ID, "id", "missing".into())),
        Some(_) => record_id(record).ok_or_else(|| q(UNKNOWN_ID, "id", "not a numeric record id".into()))?,
    };
    let f = Fields { obj, id: &deal_id };
    let (account_id, account_name) = f.lookup("Account_Name")?;
    let (contact_id, contact_name) = f.lookup("Contact_Name")?;
    let (owner_id, owner_name) = f.lookup("Owner")?;
    let owner_email = match f.string("Owner.email")? {
        Some(e) => Some(e),
        None => f.nested_string("Owner", "email")?,
    };
    let modified_time = f.datetime("Modified_Time")?.ok_or_else(|| q(&deal_id, "Modified_Time", "missing".into()))?;
    Ok(Deal {
        deal_name: f.string("Deal_Name")?,
        stage: f.string("Stage")?,
        pipeline: f.name_or_string("Pipeline")?,
        amount: f.decimal("Amount")?,
        currency: f.string("Currency")?,
        exchange_rate: f.decimal("Exchange_Rate")?,
        probability: f.integer("Probability")?,
        expected_revenue: f.decimal("Expected_Revenue")?,
        closing_date: f.date("Closing_Date")?,
        account_id,
        account_name,
        contact_id,
        contact_name,
        owner_id,
        owner_name,
        owner_email,
        lead_source: f.string("Lead_Source")?,
        deal_type: f.string("Type")?,
        created_time: f.datetime("Created_Time")?,
        modified_time,
        raw: compact_json(record),
        // Filled by `currencies::OrgCurrencies::apply` and the won-date step of the sync.
        home: Default::default(),
        won: Default::default(),
        custom: custom_values(&f, custom)?,
        deal_id,
    })
}

/// How a custom field's value is read, from its Zoho `data_type` (docs/zoho-api.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomKind {
    /// text, textarea, email, phone, website, picklist, autonumber, and text formulas → STRING.
    Text,
    /// integer → INT64 (a JSON whole number).
    Int,
    /// bigint → INT64; Zoho may send it as a string of digits or a number (UNCONFIRMED which), both are read.
    BigInt,
    /// currency, decimal, double, percent, rollup summary, number formulas → NUMERIC (exact; never a float).
    Decimal,
    /// The same types when the field metadata says they hold more than NUMERIC (see [`CustomKind::of_field`])
    /// → BIGNUMERIC (SQLite: exact decimal text), carried as exact text.
    BigDecimal,
    /// boolean → BOOL.
    Bool,
    /// date → DATE.
    Date,
    /// datetime → TIMESTAMP (UTC).
    DateTime,
    /// multiselectpicklist → `ARRAY<STRING>` (JSON text on SQLite).
    MultiPick,
    /// lookup, userlookup, ownerlookup → `<col>_id` + `<col>_name`.
    Lookup,
    /// Any other type COQL can select: its JSON as text (STRING), so nothing is lost and nothing misfits.
    Other,
}

impl CustomKind {
    /// The kind for a Zoho `data_type` (lower case) and, for formulas, their return type.
    pub fn of(data_type: &str, formula_return: Option<&str>) -> CustomKind {
        match data_type {
            "text" | "textarea" | "email" | "phone" | "website" | "url" | "picklist" | "autonumber" => CustomKind::Text,
            "integer" => CustomKind::Int,
            "bigint" => CustomKind::BigInt,
            "currency" | "decimal" | "double" | "percent" | "rollup_summary" => CustomKind::Decimal,
            "boolean" => CustomKind::Bool,
            "date" => CustomKind::Date,
            "datetime" => CustomKind::DateTime,
            "multiselectpicklist" => CustomKind::MultiPick,
            "lookup" | "userlookup" | "ownerlookup" => CustomKind::Lookup,
            "formula" => match formula_return.unwrap_or("") {
                "double" | "currency" | "decimal" | "percent" => CustomKind::Decimal,
                "integer" => CustomKind::Int,
                "boolean" => CustomKind::Bool,
                "date" => CustomKind::Date,
                "datetime" => CustomKind::DateTime,
                "text" | "string" => CustomKind::Text,
                _ => CustomKind::Other,
            },
            _ => CustomKind::Other,
        }
    }

    /// The kind of a field from all of its metadata: [`CustomKind::of`] its type, and a decimal one whose
    /// `length`/`decimal_place` say it can hold more than NUMERIC is [`CustomKind::BigDecimal`].
    pub fn of_field(f: &FieldMeta) -> CustomKind {
        match CustomKind::of(&f.data_type, f.formula_return.as_deref()) {
            CustomKind::Decimal if exceeds_numeric(f.length, f.decimal_place) => CustomKind::BigDecimal,
            kind => kind,
        }
    }

    /// The warehouse-neutral type of its column(s).
    pub fn cell_type(self) -> CellType {
        match self {
            CustomKind::Text | CustomKind::Lookup | CustomKind::Other => CellType::Text,
            CustomKind::Int | CustomKind::BigInt => CellType::Int,
            CustomKind::Decimal => CellType::Decimal,
            CustomKind::BigDecimal => CellType::BigDecimal,
            CustomKind::Bool => CellType::Bool,
            CustomKind::Date => CellType::Date,
            CustomKind::DateTime => CellType::Timestamp,
            CustomKind::MultiPick => CellType::TextList,
        }
    }
}

/// NUMERIC's digits: 29 before the point, 9 after (docs/bigquery.md).
const NUMERIC_INTEGER_DIGITS: u32 = 29;
const NUMERIC_FRACTION_DIGITS: u32 = 9;

/// Whether a decimal field's metadata says it may hold a value NUMERIC would round or refuse: more than 9
/// decimal places, or a `length` beyond 29 digits.
///
/// Which types carry `length`/`decimal_place`, and whether a number's `length` counts its decimal places, are
/// UNCONFIRMED (docs/zoho-api.md §8), so the rule holds either way: the integer digits are at most `length`
/// whichever way it is meant, so `length > 29` is the test (a field of 30–38 digits with decimals counted may
/// be typed BIGNUMERIC when NUMERIC would have done: BIGNUMERIC holds every NUMERIC value exactly, so that
/// costs nothing). Absent metadata is unknown: the field stays NUMERIC, and a value beyond NUMERIC quarantines
/// its deal naming the field, so nothing is ever stored rounded.
pub fn exceeds_numeric(length: Option<u32>, decimal_place: Option<u32>) -> bool {
    decimal_place.is_some_and(|d| d > NUMERIC_FRACTION_DIGITS) || length.is_some_and(|l| l > NUMERIC_INTEGER_DIGITS)
}

/// A selected custom field and the column it lands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomField {
    pub api_name: String,
    pub label: String,
    pub data_type: String,
    pub kind: CustomKind,
    /// The column (a lookup's two columns are `<column>_id` and `<column>_name`).
    pub column: String,
}

impl CustomField {
    /// Its columns and their types.
    pub fn columns(&self) -> Vec<(String, CellType)> {
        match self.kind {
            CustomKind::Lookup => {
                vec![(format!("{}_id", self.column), CellType::Text), (format!("{}_name", self.column), CellType::Text)]
            }
            k => vec![(self.column.clone(), k.cell_type())],
        }
    }
}

/// SQL words a column must not be named (they would need quoting in every analyst's query): such a custom
/// field gets the `cf_` prefix, as a clash with a standard column does.
const RESERVED_COLUMNS: &[&str] = &[
    "all",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "between",
    "by",
    "case",
    "cast",
    "collate",
    "contains",
    "create",
    "cross",
    "cube",
    "current",
    "default",
    "define",
    "desc",
    "distinct",
    "else",
    "end",
    "enum",
    "escape",
    "except",
    "exclude",
    "exists",
    "extract",
    "false",
    "fetch",
    "following",
    "for",
    "from",
    "full",
    "group",
    "grouping",
    "groups",
    "hash",
    "having",
    "if",
    "ignore",
    "in",
    "inner",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "lateral",
    "left",
    "like",
    "limit",
    "lookup",
    "merge",
    "natural",
    "new",
    "no",
    "not",
    "null",
    "nulls",
    "of",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "partition",
    "preceding",
    "primary",
    "proto",
    "qualify",
    "range",
    "recursive",
    "references",
    "respect",
    "right",
    "rollup",
    "rows",
    "select",
    "set",
    "some",
    "struct",
    "tablesample",
    "then",
    "to",
    "treat",
    "true",
    "union",
    "unnest",
    "using",
    "when",
    "where",
    "window",
    "with",
    "within",
    "table",
    "values",
    "external",
    "check",
    "column",
    "constraint",
    "foreign",
    "unique",
    "key",
    "change_kind",
];

/// The column of a custom field: its API name in lower case (`Deal_Region` → `deal_region`), with `cf_` in
/// front when that (or a lookup's `_id`/`_name` column) clashes with a standard column (`taken`) or an SQL
/// reserved word (`Order` → `cf_order`).
pub fn custom_column_name(api_name: &str, kind: CustomKind, taken: &[&str]) -> String {
    let base = api_name.to_ascii_lowercase();
    let names: Vec<String> = match kind {
        CustomKind::Lookup => vec![format!("{base}_id"), format!("{base}_name")],
        _ => vec![base.clone()],
    };
    let clash = names.iter().any(|n| taken.contains(&n.as_str()) || RESERVED_COLUMNS.contains(&n.as_str()))
        || RESERVED_COLUMNS.contains(&base.as_str());
    if clash {
        format!("cf_{base}")
    } else {
        base
    }
}

/// The Deals fields that become standard columns, and those columns.
pub const STANDARD_FIELD_COLUMNS: &[(&str, &[&str])] = &[
    ("Deal_Name", &["deal_name"]),
    ("Stage", &["stage"]),
    ("Pipeline", &["pipeline"]),
    ("Amount", &["amount"]),
    ("Currency", &["currency"]),
    ("Exchange_Rate", &["exchange_rate"]),
    ("Probability", &["probability"]),
    ("Expected_Revenue", &["expected_revenue"]),
    ("Closing_Date", &["closing_date"]),
    ("Account_Name", &["account_id", "account_name"]),
    ("Contact_Name", &["contact_id", "contact_name"]),
    ("Owner", &["owner_id", "owner_name", "owner_email"]),
    ("Lead_Source", &["lead_source"]),
    ("Type", &["deal_type"]),
    ("Created_Time", &["created_time"]),
    ("Modified_Time", &["modified_time"]),
];

/// The custom fields of `selected` (the won-deal query's columns, quoted or not) with their columns, named
/// clear of `standard_columns`; and one [`FieldColumn`] per column of every field in the metadata (a field with
/// no column gets one row with none), for the warehouse's `deal_fields`.
pub fn field_columns(
    fields: &[FieldMeta],
    selected: &[String],
    standard_columns: &[&str],
) -> (Vec<CustomField>, Vec<FieldColumn>) {
    let selected: Vec<&str> = selected.iter().map(|c| c.trim_matches('\'')).collect();
    let mut custom = Vec::new();
    let mut rows = Vec::new();
    for f in fields {
        let row = |column: Option<String>, cell_type: Option<CellType>| FieldColumn {
            api_name: f.api_name.clone(),
            label: f.label.clone(),
            data_type: f.data_type.clone(),
            column,
            cell_type,
            custom: f.custom,
        };
        if let Some((_, cols)) = STANDARD_FIELD_COLUMNS.iter().find(|(api, _)| *api == f.api_name) {
            rows.extend(cols.iter().map(|c| row(Some((*c).to_owned()), None)));
        } else if f.custom && selected.contains(&f.api_name.as_str()) {
            let kind = CustomKind::of_field(f);
            let field = CustomField {
                api_name: f.api_name.clone(),
                label: f.label.clone(),
                data_type: f.data_type.clone(),
                kind,
                column: custom_column_name(&f.api_name, kind, standard_columns),
            };
            rows.extend(field.columns().into_iter().map(|(c, t)| row(Some(c), Some(t))));
            custom.push(field);
        } else {
            rows.push(row(None, None));
        }
    }
    (custom, rows)
}

/// Replaces the `_name` of every user-lookup custom column (COQL gives the user's last name only, as for
/// `Owner`) by the full name `full_name` knows for its `_id`.
pub fn apply_user_names(deal: &mut Deal, custom: &[CustomField], full_name: impl Fn(&str) -> Option<String>) {
    for c in custom.iter().filter(|c| matches!(c.data_type.as_str(), "userlookup" | "ownerlookup")) {
        let (id_col, name_col) = (format!("{}_id", c.column), format!("{}_name", c.column));
        let id = deal.custom.iter().find(|v| v.column == id_col).and_then(|v| match &v.value {
            Cell::Text(id) => Some(id.clone()),
            _ => None,
        });
        if let Some(full) = id.as_deref().and_then(&full_name) {
            if let Some(v) = deal.custom.iter_mut().find(|v| v.column == name_col) {
                v.value = Cell::Text(full);
            }
        }
    }
}

/// NUMERIC's range: at most 29 digits before the point and 9 after (docs/bigquery.md). A value beyond it
/// would be rounded or refused by the warehouse, so it does not fit.
fn fits_numeric(d: &Decimal) -> bool {
    d.normalize().scale() <= 9
        && d.trunc().abs() < Decimal::from_str("100000000000000000000000000000").unwrap_or(Decimal::MAX)
}

fn custom_values(f: &Fields<'_>, custom: &[CustomField]) -> Result<Vec<CustomValue>, Quarantined> {
    let mut out = Vec::with_capacity(custom.len());
    for c in custom {
        let name = c.api_name.as_str();
        let misfit = |v: &Value, what: &str| {
            f.err(name, format!("{} {} does not fit {what} (column {})", kind(v), clip(&v.to_string()), c.column))
        };
        let value = f.get(name);
        let cell = match (c.kind, value) {
            (CustomKind::Lookup, _) => {
                let (id, label) = f.lookup(name)?;
                out.push(CustomValue { column: format!("{}_id", c.column), value: id.map_or(Cell::Null, Cell::Text) });
                out.push(CustomValue {
                    column: format!("{}_name", c.column),
                    value: label.map_or(Cell::Null, Cell::Text),
                });
                continue;
            }
            (_, None) => Cell::Null,
            (CustomKind::Text, Some(Value::String(s))) => Cell::Text(s.clone()),
            (CustomKind::Text, Some(v)) => return Err(misfit(v, "text")),
            (CustomKind::Other, Some(Value::String(s))) => Cell::Text(s.clone()),
            (CustomKind::Other, Some(v)) => Cell::Text(v.to_string()),
            (CustomKind::Int | CustomKind::BigInt, Some(v)) => {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) if c.kind == CustomKind::BigInt => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                Cell::Int(n.ok_or_else(|| misfit(v, "a 64-bit whole number"))?)
            }
            (CustomKind::Decimal, Some(v @ Value::Number(n))) => {
                let text = n.to_string();
                let d =
                    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok().map(|d| d.normalize());
                match d {
                    Some(d) if fits_numeric(&d) => Cell::Decimal(d),
                    _ => return Err(misfit(v, "an exact decimal of at most 29 integer and 9 fractional digits")),
                }
            }
            (CustomKind::Decimal, Some(v)) => return Err(misfit(v, "a number")),
            // The literal digits Zoho sent (serde_json's `arbitrary_precision`), validated by hand: never a float.
            (CustomKind::BigDecimal, Some(v @ Value::Number(n))) => match ExactDecimal::parse(&n.to_string()) {
                Ok(d) => Cell::BigDecimal(d),
                Err(e) => return Err(misfit(v, &format!("an exact decimal (BIGNUMERIC): {e}"))),
            },
            (CustomKind::BigDecimal, Some(v)) => return Err(misfit(v, "a number")),
            (CustomKind::Bool, Some(Value::Bool(b))) => Cell::Bool(*b),
            (CustomKind::Bool, Some(v)) => return Err(misfit(v, "true/false")),
            (CustomKind::Date, Some(_)) => f.date(name)?.map_or(Cell::Null, Cell::Date),
            (CustomKind::DateTime, Some(_)) => f.datetime(name)?.map_or(Cell::Null, Cell::Timestamp),
            (CustomKind::MultiPick, Some(Value::Array(items))) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => list.push(s.clone()),
                        other => return Err(misfit(other, "a list of text values")),
                    }
                }
                Cell::TextList(list)
            }
            (CustomKind::MultiPick, Some(v)) => return Err(misfit(v, "a list of text values")),
        };
        out.push(CustomValue { column: c.column.clone(), value: cell });
    }
    Ok(out)
}

/// Parses a Zoho datetime (`2026-11-27T10:15:00+05:30`) to UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    id: &'a str,
}

impl Fields<'_> {
    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn err(&self, field: &str, reason: String) -> Quarantined {
        q(self.id, field, reason)
    }

    fn string(&self, field: &str) -> Result<Option<String>, Quarantined> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(field, format!("expected text, got {}", kind(v)))),
        }
    }

    /// `Pipeline` is a plain picklist string in most orgs, `{"name","id"}` in some: accept both.
    fn name_or_string(&self, field: &str) -> Result<Option<String>, Quarantined> {
        match self.get(field) {
            Some(Value::Object(o)) => match o.get("name") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                None | Some(Value::Null) => Ok(None),
                Some(v) => Err(self.err(field, format!("expected text in name, got {}", kind(v)))),
            },
            _ => self.string(field),
        }
    }

    fn nested_string(&self, field: &str, key: &str) -> Result<Option<String>, Quarantined> {
        match self.get(field).and_then(|v| v.get(key)).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(&format!("{field}.{key}"), format!("expected text, got {}", kind(v)))),
        }
    }

    /// A lookup `{"name","id"}` → (id, name).
    fn lookup(&self, field: &str) -> Result<(Option<String>, Option<String>), Quarantined> {
        match self.get(field) {
            None => Ok((None, None)),
            Some(Value::Object(_)) => {
                let id = match self.get(field).and_then(|v| v.get("id")).filter(|v| !v.is_null()) {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(v) => return Err(self.err(&format!("{field}.id"), format!("expected an id, got {}", kind(v)))),
                };
                Ok((id, self.nested_string(field, "name")?))
            }
            Some(v) => Err(self.err(field, format!("expected a lookup object {{name, id}}, got {}", kind(v)))),
        }
    }

    fn decimal(&self, field: &str) -> Result<Option<Decimal>, Quarantined> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let text = n.to_string();
                Decimal::from_str(&text)
                    .or_else(|_| Decimal::from_scientific(&text))
                    .map(|d| Some(d.normalize()))
                    .map_err(|_| {
                        self.err(field, format!("number {} is out of range for an exact decimal", clip(&text)))
                    })
            }
            Some(v) => Err(self.err(field, format!("expected a number, got {}", kind(v)))),
        }
    }

    fn integer(&self, field: &str) -> Result<Option<i64>, Quarantined> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a whole number, got {}", clip(&n.to_string())))),
            Some(v) => Err(self.err(field, format!("expected a whole number, got {}", kind(v)))),
        }
    }

    fn date(&self, field: &str) -> Result<Option<NaiveDate>, Quarantined> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| self.err(field, format!("{:?} is not a valid YYYY-MM-DD date", clip(s)))),
            Some(v) => Err(self.err(field, format!("expected a date, got {}", kind(v)))),
        }
    }

    fn datetime(&self, field: &str) -> Result<Option<DateTime<Utc>>, Quarantined> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => parse_datetime(s)
                .map(Some)
                .ok_or_else(|| self.err(field, format!("{:?} is not an ISO 8601 datetime with an offset", clip(s)))),
            Some(v) => Err(self.err(field, format!("expected a datetime, got {}", kind(v)))),
        }
    }
}

fn q(id: &str, field: &str, reason: String) -> Quarantined {
    Quarantined { deal_id: id.to_owned(), field: field.to_owned(), reason }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Keeps error messages short when the input is huge.
fn clip(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        serde_json::from_str(
            r#"{"id":"3652397000000269093","Deal_Name":"Müller \"Big\" O'Brien — 年度","Amount":12500.1,
            "Stage":"Closed Won","Closing_Date":"2026-11-27","Probability":100,"Expected_Revenue":12500.1,
            "Currency":"USD","Exchange_Rate":1,"Account_Name":{"name":"Acme","id":"3652397000000251001"},
            "Contact_Name":null,"Owner":{"name":"Boyle","id":"3652397000000186017"},"Owner.email":"p@z.com",
            "Lead_Source":"Web","Type":"New Business","Pipeline":"Standard (Standard)",
            "Created_Time":"2026-10-01T09:00:00+05:30","Modified_Time":"2026-11-27T10:15:00+05:30",
            "Region__c":"EMEA","$currency_symbol":"$"}"#,
        )
        .expect("valid JSON")
    }

    /// A valid record for the fuzz tests to spoil.
    pub(super) fn sample_for_fuzz() -> Value {
        sample()
    }

    #[test]
    fn a_full_record_maps_exactly() {
        let d = to_deal(&sample()).expect("maps");
        assert_eq!(d.deal_id, "3652397000000269093");
        assert_eq!(d.amount.map(|a| a.to_string()), Some("12500.1".into()));
        assert_eq!(crate::deal::format_utc(&d.modified_time), "2026-11-27T04:45:00Z");
        assert_eq!(d.account_id.as_deref(), Some("3652397000000251001"));
        assert_eq!(d.owner_email.as_deref(), Some("p@z.com"));
        assert_eq!(d.contact_id, None);
        assert!(d.deal_name.as_deref().is_some_and(|n| n.contains("年度") && n.contains('"')));
        assert!(d.raw.contains("\"Region__c\":\"EMEA\"") && d.raw.contains("12500.1"));
    }

    #[test]
    fn wrong_types_quarantine_with_field_and_id() {
        for (field, value) in [
            ("Amount", json!("lots")),
            ("Closing_Date", json!("2026-02-30")),
            ("Modified_Time", json!(17)),
            ("Probability", json!(50.5)),
            ("Owner", json!("Boyle")),
        ] {
            let mut r = sample();
            r[field] = value;
            let err = to_deal(&r).expect_err(field);
            assert_eq!(err.deal_id, "3652397000000269093");
            assert!(err.field.starts_with(field), "{err}");
        }
    }

    #[test]
    fn numbers_beyond_f64_and_decimal_are_quarantined_not_panics() {
        let r: Value = serde_json::from_str(r#"{"id":"1","Modified_Time":"2026-11-27T10:15:00Z","Amount":1e400}"#)
            .expect("arbitrary precision parses it");
        let err = to_deal(&r).expect_err("out of range");
        assert_eq!(err.field, "Amount");
    }

    #[test]
    fn a_record_from_an_org_without_pipelines_or_currencies_maps_those_columns_to_none() {
        let mut r = sample();
        for absent in ["Pipeline", "Currency", "Exchange_Rate"] {
            r.as_object_mut().expect("object").remove(absent);
        }
        let d = to_deal(&r).expect("maps");
        assert_eq!((d.pipeline, d.currency, d.exchange_rate), (None, None, None));
        assert_eq!(d.amount.map(|a| a.to_string()), Some("12500.1".into()));
    }

    fn custom(api: &str, data_type: &str) -> CustomField {
        let kind = CustomKind::of(data_type, None);
        CustomField {
            api_name: api.into(),
            label: api.into(),
            data_type: data_type.into(),
            kind,
            column: custom_column_name(api, kind, &["amount", "stage", "account_id"]),
        }
    }

    #[test]
    fn zoho_types_map_to_exact_column_types_never_float() {
        for (data_type, cell) in [
            ("text", CellType::Text),
            ("picklist", CellType::Text),
            ("email", CellType::Text),
            ("phone", CellType::Text),
            ("website", CellType::Text),
            ("textarea", CellType::Text),
            ("integer", CellType::Int),
            ("bigint", CellType::Int),
            ("currency", CellType::Decimal),
            ("decimal", CellType::Decimal),
            ("double", CellType::Decimal),
            ("percent", CellType::Decimal),
            ("boolean", CellType::Bool),
            ("date", CellType::Date),
            ("datetime", CellType::Timestamp),
            ("multiselectpicklist", CellType::TextList),
            ("lookup", CellType::Text),
            ("something_new", CellType::Text),
        ] {
            assert_eq!(CustomKind::of(data_type, None).cell_type(), cell, "{data_type}");
        }
        assert_eq!(CustomKind::of("formula", Some("double")).cell_type(), CellType::Decimal);
        assert_eq!(CustomKind::of("formula", Some("boolean")).cell_type(), CellType::Bool);
        assert_eq!(custom("Partner_Account", "userlookup").columns().len(), 2);
    }

    #[test]
    fn columns_are_the_lower_case_api_name_with_cf_on_a_clash_or_a_reserved_word() {
        let taken = ["amount", "stage", "account_id"];
        assert_eq!(custom_column_name("Deal_Region", CustomKind::Text, &taken), "deal_region");
        assert_eq!(custom_column_name("Amount", CustomKind::Decimal, &taken), "cf_amount");
        assert_eq!(custom_column_name("STAGE", CustomKind::Text, &taken), "cf_stage");
        // A lookup clashes through its _id column.
        assert_eq!(custom_column_name("Account", CustomKind::Lookup, &taken), "cf_account");
        assert_eq!(custom_column_name("Order", CustomKind::Int, &taken), "cf_order");
        assert_eq!(custom_column_name("External", CustomKind::Text, &taken), "cf_external");
    }

    #[test]
    fn custom_values_are_typed_and_a_misfit_quarantines_naming_the_field_and_value() {
        let fields = [
            custom("Seats", "integer"),
            custom("Account_Number_Long", "bigint"),
            custom("List_Price", "currency"),
            custom("Languages_Known", "multiselectpicklist"),
            custom("Partner_Account", "lookup"),
            custom("Kickoff_At", "datetime"),
            custom("Absent", "text"),
        ];
        let mut r = sample();
        r["Seats"] = json!(12);
        r["Account_Number_Long"] = json!("9007199254740993");
        r["List_Price"] = serde_json::from_str("1234567.891").expect("number");
        r["Languages_Known"] = json!(["English", "Deutsch"]);
        r["Partner_Account"] = json!({"name": "Partner Co", "id": "77"});
        r["Kickoff_At"] = json!("2026-11-27T10:15:00+05:30");
        let d = to_deal_with(&r, &fields).expect("maps");
        let get = |c: &str| d.custom.iter().find(|v| v.column == c).map(|v| v.value.clone()).expect(c);
        assert_eq!(get("seats"), Cell::Int(12));
        assert_eq!(get("account_number_long"), Cell::Int(9_007_199_254_740_993), "beyond 2^53, exact");
        assert_eq!(get("list_price"), Cell::Decimal(Decimal::from_str("1234567.891").expect("decimal")));
        assert_eq!(get("languages_known"), Cell::TextList(vec!["English".into(), "Deutsch".into()]));
        assert_eq!(get("partner_account_id"), Cell::Text("77".into()));
        assert_eq!(get("partner_account_name"), Cell::Text("Partner Co".into()));
        assert_eq!(
            crate::deal::format_utc(&match get("kickoff_at") {
                Cell::Timestamp(t) => t,
                c => panic!("{c:?}"),
            }),
            "2026-11-27T04:45:00Z"
        );
        assert_eq!(get("absent"), Cell::Null);

        for (field, value) in [
            ("Seats", json!("twelve")),
            ("Account_Number_Long", json!("99999999999999999999")),
            ("List_Price", serde_json::from_str("0.0000000001").expect("number")),
            ("Languages_Known", json!("English")),
        ] {
            let mut bad = r.clone();
            bad[field] = value.clone();
            let q = to_deal_with(&bad, &fields).expect_err(field);
            assert_eq!(q.field, field);
            let shown = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            assert!(q.reason.contains(&shown), "the reason shows the value: {}", q.reason);
        }
    }

    fn decimal_field(api: &str, data_type: &str, length: Option<u32>, decimal_place: Option<u32>) -> FieldMeta {
        FieldMeta {
            api_name: api.into(),
            label: api.into(),
            data_type: data_type.into(),
            custom: true,
            visible: true,
            length,
            decimal_place,
            ..FieldMeta::default()
        }
    }

    #[test]
    fn a_decimal_field_is_bignumeric_only_when_its_metadata_says_numeric_could_not_hold_it() {
        let kind = |t: &str, length, places| CustomKind::of_field(&decimal_field("X", t, length, places));
        // Unknown (UNCONFIRMED which types carry the keys): NUMERIC, and a value beyond it quarantines.
        assert_eq!(kind("decimal", None, None), CustomKind::Decimal);
        assert_eq!(kind("currency", Some(16), Some(2)), CustomKind::Decimal, "Zoho's usual currency field");
        // The edges: 9 places and 29 digits fit NUMERIC; one more does not.
        assert_eq!(kind("decimal", Some(29), Some(9)), CustomKind::Decimal);
        assert_eq!(kind("decimal", None, Some(9)), CustomKind::Decimal);
        assert_eq!(kind("decimal", None, Some(10)), CustomKind::BigDecimal);
        assert_eq!(kind("double", Some(16), Some(12)), CustomKind::BigDecimal);
        assert_eq!(kind("percent", Some(30), None), CustomKind::BigDecimal);
        // Whether `length` counts the decimal places is UNCONFIRMED: 30 digits with 2 places may be 30 integer
        // digits, so it is BIGNUMERIC (which holds every NUMERIC value too).
        assert_eq!(kind("currency", Some(30), Some(2)), CustomKind::BigDecimal);
        assert_eq!(kind("formula", Some(16), Some(12)), CustomKind::Other, "a formula of unknown return type");
        let mut formula = decimal_field("F", "formula", None, Some(12));
        formula.formula_return = Some("double".into());
        assert_eq!(CustomKind::of_field(&formula), CustomKind::BigDecimal);
        // Other types ignore the digits (a text field's `length` is its characters).
        assert_eq!(kind("text", Some(255), None), CustomKind::Text);
        assert_eq!(kind("integer", Some(40), None), CustomKind::Int);
        assert_eq!(CustomKind::BigDecimal.cell_type().as_str(), "BIGNUMERIC");
    }

    #[test]
    fn field_metadata_digits_are_read_as_numbers_or_text_and_anything_else_is_unknown() {
        let body = json!({"fields": [
            {"api_name": "A", "data_type": "decimal", "length": 16, "decimal_place": 12},
            {"api_name": "B", "data_type": "currency", "length": "16", "decimal_place": "2"},
            {"api_name": "C", "data_type": "double"},
            {"api_name": "D", "data_type": "double", "length": null, "decimal_place": -1},
            {"api_name": "E", "data_type": "double", "length": 1.5, "decimal_place": {"x": 1}},
        ]});
        let got: Vec<(Option<u32>, Option<u32>)> =
            parse_fields(&body).expect("fields").iter().map(|f| (f.length, f.decimal_place)).collect();
        assert_eq!(got, [(Some(16), Some(12)), (Some(16), Some(2)), (None, None), (None, None), (None, None)]);
    }

    #[test]
    fn a_bignumeric_value_is_kept_digit_for_digit_and_one_beyond_it_quarantines_naming_deal_and_field() {
        let meta = [decimal_field("Unit_Rate", "decimal", Some(16), Some(12))];
        let (custom, rows) = field_columns(&meta, &["Unit_Rate".to_owned()], &["amount"]);
        assert_eq!(rows[0].cell_type, Some(CellType::BigDecimal), "deal_fields records BIGNUMERIC");
        let number = |s: &str| serde_json::from_str::<Value>(s).expect("a JSON number");
        for (sent, kept) in [
            ("1234.567890123456", "1234.567890123456"),
            ("-0.000000000001", "-0.000000000001"),
            ("12.5E-11", "0.000000000125"),
            ("100", "100"),
        ] {
            let mut r = sample();
            r["Unit_Rate"] = number(sent);
            let d = to_deal_with(&r, &custom).expect(sent);
            assert_eq!(
                d.custom[0].value,
                Cell::BigDecimal(ExactDecimal::parse(kept).expect("decimal")),
                "{sent} is kept exactly"
            );
            assert_eq!(d.custom[0].value, Cell::BigDecimal(ExactDecimal::parse(sent).expect("same value")));
        }
        for bad in [number(&format!("0.{}1", "0".repeat(38))), number("1e40"), json!("12.5")] {
            let shown: String = bad.to_string().chars().take(11).collect();
            let mut r = sample();
            r["Unit_Rate"] = bad.clone();
            let q = to_deal_with(&r, &custom).expect_err("does not fit");
            assert_eq!((q.deal_id.as_str(), q.field.as_str()), ("3652397000000269093", "Unit_Rate"));
            assert!(q.reason.contains(&shown) && q.reason.contains("unit_rate"), "{}", q.reason);
        }
        let mut r = sample();
        r["Unit_Rate"] = number("1e40");
        let q = to_deal_with(&r, &custom).expect_err("beyond BIGNUMERIC");
        assert!(q.reason.contains("BIGNUMERIC"), "the reason says which bound: {}", q.reason);
    }

    #[test]
    fn a_record_without_id_or_not_an_object_is_quarantined() {
        assert_eq!(to_deal(&json!([1])).expect_err("array").deal_id, "<unknown>");
        assert_eq!(to_deal(&json!({"Deal_Name":"x"})).expect_err("no id").field, "id");
    }
}

#[cfg(test)]
mod fuzz {
    //! Arbitrary JSON into the mapper and the page parser: never a panic, and a refusal always names a field.
    use super::*;
    use crate::zoho::client::classify;
    use crate::zoho::deals::parse_page;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            // numbers beyond f64 and beyond any decimal, kept exact by arbitrary_precision
            "[1-9][0-9]{0,400}(\\.[0-9]{1,40})?(e[+-]?[0-9]{1,4})?"
                .prop_map(|s| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null)),
            ".{0,64}".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}([+-][0-9]{2}:[0-9]{2}|Z))?".prop_map(Value::String),
            Just(Value::String("x".repeat(100_000))),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map("[A-Za-z_$.]{1,12}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_value_in_any_field_maps_or_is_quarantined_naming_the_field(
            field in prop::sample::select(STANDARD_FIELDS),
            value in arb_json(),
        ) {
            let mut record = super::tests::sample_for_fuzz();
            record[field] = value;
            match to_deal(&record) {
                Ok(d) => prop_assert_eq!(d.deal_id.is_empty(), false),
                Err(q) => {
                    prop_assert!(!q.reason.is_empty());
                    prop_assert!(q.field.starts_with(field.split('.').next().unwrap_or(field)) || q.field == "(record)",
                        "{} blamed {}", field, q.field);
                    prop_assert!(q.reason.len() < 400, "reasons stay short: {}", q.reason.len());
                }
            }
        }

        #[test]
        fn any_record_shape_never_panics(record in arb_json()) {
            let _ = to_deal(&record);
        }

        #[test]
        fn any_page_body_never_panics(body in arb_json(), text in ".{0,200}") {
            let _ = parse_page("coql", Some(body));
            let _ = classify("coql", 200, &text, None);
            let _ = classify("coql", 400, &text, None);
        }
    }

    #[test]
    fn invalid_utf16_escapes_and_deep_nesting_fail_the_page_not_the_process() {
        for text in [
            r#"{"data":[{"id":"1","Deal_Name":"\ud800"}]}"#.to_owned(),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ] {
            let r = classify("coql", 200, &text, None);
            if let Ok(Some(v)) = r {
                let _ = parse_page("coql", Some(v));
            }
        }
    }
}
