//! The column catalogue of `closed_won_deals`: the one list that drives DDL, staging, the merge and reading
//! back on both warehouses, plus the row codec shared by them (a change as named, typed cells; named cells back
//! as a [`StoredDeal`]). Each warehouse only encodes a [`Cell`] its own way (`sqlite.rs`, `bigquery/codec.rs`).
//!
//! # Adding a standard column
//! One entry in [`DEAL_COLUMNS`] (`deal_column!(name, Type, "description")`, or
//! `deal_column!(name, field, Type, "…")` when the `Deal` field is named differently) and the field on
//! [`Deal`] (plus its mapping in `zoho/model.rs`). `prepare` adds it to existing tables
//! (`ALTER TABLE … ADD COLUMN`); DDL, staging, the merge, the reader, README's table check and the dbt check
//! follow from the entry.
//!
//! Not here: custom columns discovered from Zoho's field metadata (see [`CustomColumn`]): they are added by
//! [`super::Warehouse::declare_fields`] at run time and travel on [`Deal::custom`].

use crate::deal::{Cell, CellType, CellValue, Deal, DealChange};

use super::{change_kind, StoredDeal};

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A field of [`Deal`]: staged from a won change, updated by the merge, read back into the field.
    Deal {
        get: fn(&Deal) -> Cell,
        /// Writes the cell back; `false` when the cell is of another type.
        set: fn(&mut Deal, Cell) -> bool,
    },
    /// Written by the merge itself (flags and bookkeeping), read back into [`StoredDeal`].
    Merge,
}

/// One column of `closed_won_deals`.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub cell_type: CellType,
    pub bigquery_type: &'static str,
    pub sqlite_type: &'static str,
    /// The column's description (BigQuery column description, README, dbt).
    pub description: &'static str,
    pub source: Source,
}

impl Column {
    const fn new(name: &'static str, cell_type: CellType, description: &'static str, source: Source) -> Column {
        Column {
            name,
            cell_type,
            bigquery_type: bigquery_type(cell_type),
            sqlite_type: sqlite_type(cell_type),
            description,
            source,
        }
    }

    pub(crate) const fn merge(name: &'static str, cell_type: CellType, description: &'static str) -> Column {
        Column::new(name, cell_type, description, Source::Merge)
    }

    /// Whether a won change's version of the row updates this column (every `Deal` field but the key).
    pub fn is_data(&self) -> bool {
        matches!(self.source, Source::Deal { .. }) && self.name != KEY
    }
}

/// BigQuery's type for a cell type.
pub const fn bigquery_type(t: CellType) -> &'static str {
    t.as_str()
}

/// SQLite's declared type for a cell type: INTEGER for integers and booleans (0/1), TEXT for everything else
/// (NUMERIC and BIGNUMERIC decimals alike as exact text, dates `YYYY-MM-DD`, times RFC 3339 UTC, lists as JSON text). Never a type with
/// REAL or NUMERIC affinity, which would turn decimal text into a float.
pub const fn sqlite_type(t: CellType) -> &'static str {
    match t {
        CellType::Int | CellType::Bool => "INTEGER",
        _ => "TEXT",
    }
}

/// The key column.
pub const KEY: &str = "deal_id";

macro_rules! deal_column {
    ($name:ident, $ty:ident, $desc:expr) => {
        deal_column!($name, $name, $ty, $desc)
    };
    ($name:ident, $($field:ident).+, $ty:ident, $desc:expr) => {
        Column::new(
            stringify!($name),
            CellType::$ty,
            $desc,
            Source::Deal {
                get: |d| CellValue::to_cell(&d.$($field).+),
                set: |d, c| match CellValue::from_cell(c) {
                    Some(v) => {
                        d.$($field).+ = v;
                        true
                    }
                    None => false,
                },
            },
        )
    };
}

/// The standard columns of `closed_won_deals`, in order. `deal_id` is the key. Timestamps are UTC; money is
/// exact (BigQuery NUMERIC, SQLite decimal text).
pub const DEAL_COLUMNS: &[Column] = &[
    deal_column!(deal_id, Text, "Zoho record id (19 digits, as text); the key"),
    deal_column!(deal_name, Text, "Deal Name"),
    deal_column!(stage, Text, "Stage as it appears in the record"),
    deal_column!(pipeline, Text, "Pipeline (NULL in orgs without the pipeline feature)"),
    deal_column!(amount, Decimal, "Deal amount in the deal currency, exact"),
    deal_column!(currency, Text, "ISO currency code of the deal (NULL in orgs without multi-currency)"),
    deal_column!(exchange_rate, Decimal, "Zoho's exchange rate of the deal currency, as the record carries it"),
    deal_column!(probability, Int, "Probability (%)"),
    deal_column!(expected_revenue, Decimal, "Expected revenue in the deal currency, exact"),
    deal_column!(closing_date, Date, "Closing Date as typed in Zoho (the table is partitioned by its month)"),
    deal_column!(account_id, Text, "Account: Zoho record id"),
    deal_column!(account_name, Text, "Account: name"),
    deal_column!(contact_id, Text, "Contact: Zoho record id"),
    deal_column!(contact_name, Text, "Contact: name"),
    deal_column!(owner_id, Text, "Deal owner: Zoho user id"),
    deal_column!(owner_name, Text, "Deal owner: full name"),
    deal_column!(owner_email, Text, "Deal owner: email"),
    deal_column!(lead_source, Text, "Lead Source"),
    deal_column!(deal_type, Text, "Type (Zoho's Type field)"),
    deal_column!(created_time, Timestamp, "Zoho Created_Time, UTC"),
    deal_column!(
        modified_time,
        Timestamp,
        "Zoho Modified_Time, UTC: the version of the row; older never overwrites newer"
    ),
    Column::merge("is_closed_won", CellType::Bool, "False once the deal left its won stage"),
    Column::merge("is_deleted", CellType::Bool, "True once the deal was deleted in Zoho"),
    Column::merge("deleted_time", CellType::Timestamp, "When Zoho deleted the deal (NULL when unknown or not deleted)"),
    Column::new(
        "raw",
        CellType::Json,
        "The record exactly as Zoho sent it, custom fields included",
        Source::Deal {
            get: |d| Cell::Json(d.raw.clone()),
            set: |d, c| match c {
                Cell::Json(s) | Cell::Text(s) => {
                    d.raw = s;
                    true
                }
                Cell::Null => {
                    d.raw = String::new();
                    true
                }
                _ => false,
            },
        },
    ),
    Column::merge("synced_at", CellType::Timestamp, "When the sync last wrote this row"),
    Column::merge(
        "is_quarantined",
        CellType::Bool,
        "True while Zoho's newest version of the deal could not be read (see quarantined_deals): the row holds an older version",
    ),
    Column::merge("run_id", CellType::Text, "The sync run that last wrote this row (see sync_runs)"),
    deal_column!(home_currency, home.currency, Text, "ISO code of the org's home currency (NULL when unknown)"),
    deal_column!(
        amount_home,
        home.amount,
        Decimal,
        "amount in the home currency: amount / exchange_rate of the record, rounded to the home currency's decimal places"
    ),
    deal_column!(expected_revenue_home, home.expected_revenue, Decimal, "expected_revenue in the home currency, the same way"),
    deal_column!(won_at, won.at, Timestamp, "When the deal entered its won stage (see won_at_source); never moved by an edit"),
    Column::new(
        "won_at_source",
        CellType::Text,
        "stage_history | observed | unknown: how won_at was learned",
        Source::Deal {
            get: |d| Cell::Text(d.won.source.as_str().to_owned()),
            set: |d, c| match c {
                Cell::Text(s) => {
                    d.won.source = crate::deal::WonAtSource::parse(&s);
                    true
                }
                Cell::Null => {
                    d.won.source = crate::deal::WonAtSource::Unknown;
                    true
                }
                _ => false,
            },
        },
    ),
];

/// The named cells a change stages, standard columns only (the caller adds `run_id` and custom columns): a won
/// change carries every `Deal` column and its flags; an un-won change its id, stage and version; a deletion its
/// id and time. Columns a change says nothing about are absent (NULL in staging).
pub fn change_cells(change: &DealChange) -> (&'static str, Vec<(&'static str, Cell)>) {
    match change {
        DealChange::Won(d) => {
            let mut cells: Vec<(&'static str, Cell)> = DEAL_COLUMNS
                .iter()
                .filter_map(|c| match c.source {
                    Source::Deal { get, .. } => Some((c.name, get(d))),
                    Source::Merge => None,
                })
                .collect();
            cells.push(("is_closed_won", Cell::Bool(true)));
            cells.push(("is_deleted", Cell::Bool(false)));
            (change_kind::WON, cells)
        }
        DealChange::Unwon { deal_id, stage, modified_time } => (
            change_kind::UNWON,
            vec![
                (KEY, Cell::Text(deal_id.clone())),
                ("stage", stage.to_cell()),
                ("modified_time", Cell::Timestamp(*modified_time)),
                ("is_closed_won", Cell::Bool(false)),
                ("is_deleted", Cell::Bool(false)),
            ],
        ),
        DealChange::Deleted { deal_id, deleted_time } => (
            change_kind::DELETED,
            vec![
                (KEY, Cell::Text(deal_id.clone())),
                ("deleted_time", Cell::Timestamp(*deleted_time)),
                ("is_closed_won", Cell::Bool(false)),
                ("is_deleted", Cell::Bool(true)),
            ],
        ),
        DealChange::Vanished { deal_id } => (
            change_kind::VANISHED,
            vec![
                (KEY, Cell::Text(deal_id.clone())),
                ("is_closed_won", Cell::Bool(false)),
                ("is_deleted", Cell::Bool(true)),
            ],
        ),
    }
}

/// A stored value a warehouse could not read back as its column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column} holds an unreadable value {value:?}")]
pub struct Unreadable {
    pub column: String,
    pub value: String,
}

/// A row read back, by column name: `cell(column)` decodes one stored value as the column's type.
pub fn stored_deal(
    custom: &[CustomColumn],
    mut cell: impl FnMut(&str, CellType) -> Result<Cell, Unreadable>,
) -> Result<StoredDeal, Unreadable> {
    let mut deal = Deal::default();
    let (mut is_closed_won, mut is_deleted, mut deleted_time, mut run_id) = (false, false, None, String::new());
    let mut is_quarantined = false;
    for c in DEAL_COLUMNS {
        let value = cell(c.name, c.cell_type)?;
        let shown = format!("{value:?}");
        let ok = match (c.source, c.name, value) {
            (Source::Deal { set, .. }, _, v) => set(&mut deal, v),
            (Source::Merge, "is_closed_won", v) => {
                Option::<bool>::from_cell(v).map(|b| is_closed_won = b.unwrap_or(false)).is_some()
            }
            (Source::Merge, "is_deleted", v) => {
                Option::<bool>::from_cell(v).map(|b| is_deleted = b.unwrap_or(false)).is_some()
            }
            (Source::Merge, "deleted_time", v) => Option::from_cell(v).map(|t| deleted_time = t).is_some(),
            (Source::Merge, "is_quarantined", v) => {
                Option::<bool>::from_cell(v).map(|b| is_quarantined = b.unwrap_or(false)).is_some()
            }
            (Source::Merge, "run_id", v) => {
                Option::<String>::from_cell(v).map(|r| run_id = r.unwrap_or_default()).is_some()
            }
            (Source::Merge, _, _) => true,
        };
        if !ok {
            return Err(Unreadable { column: c.name.to_owned(), value: shown });
        }
    }
    for c in custom {
        let value = cell(&c.name, c.cell_type)?;
        deal.custom.push(crate::deal::CustomValue { column: c.name.clone(), value });
    }
    Ok(StoredDeal { deal, is_closed_won, is_deleted, deleted_time, run_id, is_quarantined })
}

/// Every column of a `closed_won_deals` row: the standard ones ([`DEAL_COLUMNS`], in order), then `custom`.
/// The one list behind the staging tables, the merge's INSERT and the readers on both warehouses.
pub fn all_columns<'a>(custom: &'a [CustomColumn]) -> impl Iterator<Item = (&'a str, CellType)> + Clone + 'a {
    DEAL_COLUMNS.iter().map(|c| (c.name, c.cell_type)).chain(custom.iter().map(|c| (c.name.as_str(), c.cell_type)))
}

/// The names of [`all_columns`], in the same order.
pub fn column_names<'a>(custom: &'a [CustomColumn]) -> impl Iterator<Item = &'a str> + Clone + 'a {
    all_columns(custom).map(|(name, _)| name)
}

/// A custom column of `closed_won_deals` (discovered from the source's field metadata), with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomColumn {
    pub name: String,
    pub cell_type: CellType,
}

/// A row of `deal_fields` as `declare_fields` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownField {
    pub api_name: String,
    pub column_name: Option<String>,
    /// The type the column was created with ([`CellType::as_str`]).
    pub column_type: Option<String>,
    pub is_custom: bool,
}

/// What `declare_fields` does with this run's field metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPlan {
    /// Columns to add (`ALTER TABLE … ADD COLUMN`).
    pub add: Vec<CustomColumn>,
    /// The custom columns this run fills (added or already there, with an unchanged type).
    pub active: Vec<CustomColumn>,
    /// Fields whose type changed since their column was created: (api name, column, old type, new type). The
    /// column keeps its type; their values stay in `raw` only.
    pub retyped: Vec<(String, String, String, String)>,
    /// Custom fields known with a column but absent from the metadata now (deleted or hidden): (api name,
    /// column). The column stays.
    pub gone: Vec<(String, String)>,
    /// Column names refused as unsafe (not a lower-case identifier, or a standard column's name).
    pub refused: Vec<String>,
}

/// Whether `name` may be spliced into SQL as a custom column: a lower-case ASCII identifier that is not a
/// standard column. (The source side only names columns this way; this is defence in depth.)
pub fn is_safe_custom_column(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 300
        && !DEAL_COLUMNS.iter().any(|c| c.name == name)
        && name != "change_kind"
}

/// Decides which custom columns to add and fill, from the metadata's columns (`fields`), what `deal_fields`
/// knew (`known`) and the table's columns (`existing`).
pub fn plan_fields(fields: &[crate::deal::FieldColumn], known: &[KnownField], existing: &[String]) -> FieldPlan {
    let mut plan = FieldPlan::default();
    for f in fields {
        let (Some(name), Some(t)) = (&f.column, f.cell_type) else { continue };
        if !is_safe_custom_column(name) {
            plan.refused.push(name.clone());
            continue;
        }
        if plan.active.iter().any(|c| &c.name == name) {
            continue;
        }
        let before = known.iter().find(|k| k.column_name.as_deref() == Some(name)).and_then(|k| k.column_type.clone());
        // A decimal field first seen as NUMERIC whose metadata later says more (BIGNUMERIC) is retyped like any
        // other: the column keeps NUMERIC and is no longer filled, the values stay in `raw`, and a warning says
        // so. Widening in place was weighed and not done: BigQuery can `ALTER COLUMN … SET DATA TYPE BIGNUMERIC`
        // from NUMERIC, but the deals, history and run staging tables would each need it, with no transaction
        // across them (a crash in between leaves them disagreeing), and the emulator implements no column type
        // change, so it could not be tested; SQLite would need nothing (both are TEXT there), and the two
        // warehouses would diverge. README "Tables" gives the two statements that widen it by hand.
        match before {
            Some(old) if old != t.as_str() => {
                plan.retyped.push((f.api_name.clone(), name.clone(), old, t.as_str().to_owned()));
                continue;
            }
            _ => {}
        }
        let column = CustomColumn { name: name.clone(), cell_type: t };
        if !existing.iter().any(|e| e.eq_ignore_ascii_case(name)) {
            plan.add.push(column.clone());
        }
        plan.active.push(column);
    }
    for k in known.iter().filter(|k| k.is_custom) {
        if let Some(col) = &k.column_name {
            if !fields.iter().any(|f| f.api_name == k.api_name) && !plan.gone.iter().any(|(_, c)| c == col) {
                plan.gone.push((k.api_name.clone(), col.clone()));
            }
        }
    }
    plan
}

impl FieldPlan {
    /// Says what changed, once per run.
    pub fn log(&self) {
        if !self.add.is_empty() {
            let names: Vec<&str> = self.add.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(columns = ?names, "added columns for custom fields new in Zoho");
        }
        for (api, column, old, new) in &self.retyped {
            tracing::warn!(
                field = %api, column = %column, old_type = %old, new_type = %new,
                "a custom field changed type in Zoho: its column keeps its old type and is no longer filled; its values are kept in raw only"
            );
        }
        for (api, column) in &self.gone {
            tracing::warn!(field = %api, column = %column, "a custom field is no longer in Zoho's metadata (deleted or hidden): its column is kept and no longer filled");
        }
        for name in &self.refused {
            tracing::warn!(column = %name, "a custom column name that is not a safe identifier was ignored (its values stay in raw)");
        }
    }
}

/// A won deal's values for the `active` custom columns (NULL for a column the deal carries no value for).
/// Values of other columns (a retyped field) are not staged: they stay in `raw`.
pub fn custom_cells(deal: &Deal, active: &[CustomColumn]) -> Vec<(String, Cell)> {
    active
        .iter()
        .map(|c| {
            let value = deal.custom.iter().find(|v| v.column == c.name).map(|v| v.value.clone());
            (c.name.clone(), value.unwrap_or(Cell::Null))
        })
        .collect()
}

/// The custom columns to read back: those `deal_fields` knows with a type that the table has.
pub fn readable_custom(known: &[KnownField], existing: &[String]) -> Vec<CustomColumn> {
    let mut out: Vec<CustomColumn> = Vec::new();
    for k in known.iter().filter(|k| k.is_custom) {
        let (Some(name), Some(t)) = (&k.column_name, k.column_type.as_deref().and_then(CellType::parse)) else {
            continue;
        };
        if is_safe_custom_column(name) && existing.iter().any(|e| e == name) && !out.iter().any(|c| &c.name == name) {
            out.push(CustomColumn { name: name.clone(), cell_type: t });
        }
    }
    out
}

/// The custom columns a history version copies: those this run fills (`active`), then every other custom column
/// `deal_fields` knows with a type that `closed_won_deals` has (a retyped or vanished field's column still holds
/// the values the row had, and a version is a copy of the row).
pub fn history_custom(active: &[CustomColumn], known: &[KnownField], deal_columns: &[String]) -> Vec<CustomColumn> {
    let mut out = active.to_vec();
    for c in readable_custom(known, deal_columns) {
        if !out.iter().any(|o| o.name == c.name) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deal::FieldColumn;

    fn field(api: &str, column: &str, t: CellType) -> FieldColumn {
        FieldColumn {
            api_name: api.into(),
            label: api.into(),
            data_type: "text".into(),
            column: Some(column.into()),
            cell_type: Some(t),
            custom: true,
        }
    }

    fn known(api: &str, column: &str, t: CellType) -> KnownField {
        KnownField {
            api_name: api.into(),
            column_name: Some(column.into()),
            column_type: Some(t.as_str().into()),
            is_custom: true,
        }
    }

    #[test]
    fn a_new_field_is_added_a_known_one_filled_a_retyped_one_left_alone_and_a_gone_one_reported() {
        let fields = [
            field("New_One", "new_one", CellType::Text),
            field("Seats", "seats", CellType::Int),
            field("Region", "region", CellType::Decimal),
            field("Bad", "drop table", CellType::Text),
            field("Amount", "amount", CellType::Decimal),
        ];
        let was = [
            known("Seats", "seats", CellType::Int),
            known("Region", "region", CellType::Text),
            known("Gone", "gone", CellType::Text),
        ];
        let existing = ["seats".to_owned(), "region".to_owned(), "gone".to_owned()];
        let plan = plan_fields(&fields, &was, &existing);
        let names = |cols: &[CustomColumn]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plan.add), ["new_one"]);
        assert_eq!(names(&plan.active), ["new_one", "seats"]);
        assert_eq!(plan.retyped, [("Region".into(), "region".into(), "STRING".into(), "NUMERIC".into())]);
        assert_eq!(plan.gone, [("Gone".into(), "gone".into())]);
        assert_eq!(plan.refused, ["drop table", "amount"], "unsafe names and standard columns are refused");
    }

    #[test]
    fn a_numeric_field_whose_metadata_later_says_bignumeric_keeps_its_column_and_is_reported_retyped() {
        let plan = plan_fields(
            &[field("Unit_Rate", "unit_rate", CellType::BigDecimal), field("Rate_2", "rate_2", CellType::BigDecimal)],
            &[known("Unit_Rate", "unit_rate", CellType::Decimal)],
            &["unit_rate".to_owned()],
        );
        assert_eq!(plan.retyped, [("Unit_Rate".into(), "unit_rate".into(), "NUMERIC".into(), "BIGNUMERIC".into())]);
        assert!(plan.active.iter().all(|c| c.name != "unit_rate"), "not filled: its values stay in raw");
        assert_eq!(plan.add, [CustomColumn { name: "rate_2".into(), cell_type: CellType::BigDecimal }]);
        // Once widened by hand (README "Tables"), deal_fields says BIGNUMERIC and the column is filled again.
        let plan = plan_fields(
            &[field("Unit_Rate", "unit_rate", CellType::BigDecimal)],
            &[known("Unit_Rate", "unit_rate", CellType::BigDecimal)],
            &["unit_rate".to_owned()],
        );
        assert!(plan.retyped.is_empty() && plan.add.is_empty());
        assert_eq!(plan.active, [CustomColumn { name: "unit_rate".into(), cell_type: CellType::BigDecimal }]);
    }

    #[test]
    fn readme_documents_every_catalogue_column() {
        let readme = include_str!("../../README.md");
        for c in DEAL_COLUMNS {
            assert!(readme.contains(&format!("| `{}` |", c.name)), "README's Tables section lacks {}", c.name);
        }
        assert!(readme.contains("`deal_fields`"));
    }

    #[test]
    fn every_cell_type_has_a_sqlite_type_without_float_affinity() {
        for t in [
            CellType::Decimal,
            CellType::BigDecimal,
            CellType::Date,
            CellType::Timestamp,
            CellType::Json,
            CellType::TextList,
        ] {
            assert_eq!(sqlite_type(t), "TEXT");
            assert_eq!(CellType::parse(t.as_str()), Some(t));
        }
    }
}
