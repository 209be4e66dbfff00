//! Reading Deals: won-stage discovery from the Stage metadata, COQL keyset paging inside a fixed window,
//! the count used for reconciliation, and deleted records.
//!
//! Paging is keyset on `id` (`… and id > {last} order by id asc limit 2000`), never OFFSET: OFFSET stops at
//! 100,000 rows and skips or repeats rows when deals change under it. (One-row OFFSET probes, [`key_at`], only
//! choose where the scheduler's slices begin; they never decide which rows are read.) The window's upper bound is fixed for
//! the whole run, so a deal modified during the run leaves this window and lands in the next one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::client::ZohoClient;
use super::model::{self, FieldMeta, PickListValue, STANDARD_FIELDS};
use super::Error;
/// The window type lives with the domain types (`crate::deal`); re-exported for the paging API that takes it.
pub use crate::deal::Window;
use crate::error_chain::Chain;

/// COQL's maximum LIMIT.
pub const PAGE_SIZE: u32 = 2000;
/// COQL's maximum number of selected columns (500 since v7: docs/zoho-api.md §3c).
pub const MAX_COLUMNS: usize = 500;
/// COQL refuses a query selecting more formula fields than this (`LIMIT_EXCEEDED`).
pub const MAX_FORMULA_FIELDS: usize = 5;
/// Field types COQL cannot select (`INVALID_QUERY` "unsupported data type": docs/zoho-api.md §3c), as Zoho's
/// field metadata spells them in `data_type`.
pub const UNSUPPORTED_TYPES: &[&str] = &["multiselectlookup", "fileupload", "imageupload", "subform"];
/// Get Records / deleted records: at most 200 per page.
const DELETED_PAGE_SIZE: u32 = 200;

/// What the Deals metadata tells us.
#[derive(Debug, Clone, PartialEq)]
pub struct DealsMetadata {
    /// The org's Deals fields, as its metadata lists them.
    pub fields: Vec<FieldMeta>,
    /// Stage values in the "Closed Won" category, from the Stage pick list and every pipeline's stage map
    /// (actual and display values). Empty when none is found: the caller decides (`ZOHO_WON_STAGES`).
    pub won_stages: Vec<String>,
    /// What a won-deal query selects in this org.
    pub select: SelectList,
    /// The org's home currency (issue #11): read by [`metadata`] only when the Deals have a `Currency` field.
    pub currencies: super::currencies::OrgCurrencies,
}

impl DealsMetadata {
    /// Whether the org's currencies must still be read (one call): the Deals have a `Currency` field, so the
    /// org has multi-currency (home currency, issue #11; part of the metadata, so the credit budget counts it).
    pub fn needs_currencies(&self) -> bool {
        self.currencies == super::currencies::OrgCurrencies::Unknown
    }

    /// Builds the select list and the won-stage union from the field metadata and the pipelines API's stage maps
    /// (`pipelines`: empty when not read).
    pub fn new(fields: Vec<FieldMeta>, pipelines: &[PickListValue]) -> DealsMetadata {
        let won_stages = won_stages(&fields, pipelines);
        let select = select_list(&fields);
        // Without a Currency field the org has one currency (docs/zoho-api.md §3f): no call needed.
        let currencies = match fields.iter().any(|f| f.api_name == "Currency") {
            true => super::currencies::OrgCurrencies::Unknown,
            false => super::currencies::OrgCurrencies::Single,
        };
        DealsMetadata { fields, won_stages, select, currencies }
    }

    /// The won stages to use: `configured` (`ZOHO_WON_STAGES`) when set, else the discovered ones; an error
    /// naming the variable when neither gives any.
    pub fn won_stages_or(&self, configured: Option<&[String]>) -> Result<Vec<String>, Error> {
        match configured {
            Some(c) if !c.is_empty() => Ok(c.to_vec()),
            _ if !self.won_stages.is_empty() => Ok(self.won_stages.clone()),
            _ => Err(malformed(
                "settings/fields",
                "no Stage pick-list value nor pipeline stage has the deal category \"Closed Won\"; set \
                 ZOHO_WON_STAGES to the won stage names (comma-separated)",
            )),
        }
    }

    /// Whether the org has a field with this API name.
    pub fn has_field(&self, api_name: &str) -> bool {
        self.fields.iter().any(|f| f.api_name == api_name)
    }
}

/// A won-deal query's columns, and what was left out and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelectList {
    /// Columns as they go into COQL (a reserved word quoted).
    pub columns: Vec<String>,
    /// Custom fields of a type COQL cannot select.
    pub unsupported: Vec<String>,
    /// Formula fields beyond the [`MAX_FORMULA_FIELDS`] a query may select: not kept in `raw`.
    pub formula_over_cap: Vec<String>,
    /// API names that are not letters, digits and underscores: never put into a query.
    pub invalid_names: Vec<String>,
    /// Fields the metadata marks not visible.
    pub hidden: Vec<String>,
    /// Custom fields beyond the [`MAX_COLUMNS`] cap.
    pub over_column_cap: Vec<String>,
}

/// Builds the select list from the org's field metadata:
/// - the standard fields of [`STANDARD_FIELDS`] that this org has (`id`, `Stage` and `Modified_Time` always:
///   every org has them and paging and mapping need them; `Owner.email` when `Owner` exists);
/// - every custom field COQL can select, in metadata order, except: unsupported types ([`UNSUPPORTED_TYPES`]),
///   formula fields beyond the first [`MAX_FORMULA_FIELDS`] (skipped with a warning rather than read by a
///   second query per page: they are kept only in `raw`, and a second query would double a run's credits),
///   fields marked not visible, API names that are not plain identifiers, and anything beyond [`MAX_COLUMNS`].
///
/// Reserved words are quoted (`'External'`, Kaizen #171).
pub fn select_list(fields: &[FieldMeta]) -> SelectList {
    let mut out = SelectList::default();
    let find = |name: &str| fields.iter().find(|f| f.api_name == name);
    let mut formulas = 0usize;
    for &name in STANDARD_FIELDS {
        let selected = match name {
            "id" | "Stage" | "Modified_Time" => true,
            "Owner.email" => find("Owner").is_some_and(|f| f.visible),
            _ => find(name).is_some_and(|f| f.visible && !UNSUPPORTED_TYPES.contains(&f.data_type.as_str())),
        };
        if selected {
            if find(name).is_some_and(|f| f.data_type == "formula") {
                formulas += 1;
            }
            out.columns.push(column(name));
        }
    }
    for f in fields.iter().filter(|f| f.custom && !STANDARD_FIELDS.contains(&f.api_name.as_str())) {
        let name = f.api_name.clone();
        if !is_api_name(&name) {
            out.invalid_names.push(name);
        } else if !f.visible {
            out.hidden.push(name);
        } else if UNSUPPORTED_TYPES.contains(&f.data_type.as_str()) {
            out.unsupported.push(name);
        } else if out.columns.len() >= MAX_COLUMNS {
            out.over_column_cap.push(name);
        } else if f.data_type == "formula" && formulas >= MAX_FORMULA_FIELDS {
            out.formula_over_cap.push(name);
        } else {
            formulas += usize::from(f.data_type == "formula");
            out.columns.push(column(&name));
        }
    }
    out
}

impl SelectList {
    /// Says once, at the right level, what the select list leaves out.
    pub fn log(&self) {
        if !self.unsupported.is_empty() {
            tracing::info!(
                fields = ?self.unsupported,
                "custom fields of a type COQL cannot select (multi-select lookup, file/image upload, subform) are not kept in raw"
            );
        }
        if !self.formula_over_cap.is_empty() {
            tracing::warn!(
                fields = ?self.formula_over_cap,
                "COQL selects at most {MAX_FORMULA_FIELDS} formula fields per query; these formula fields are not kept in raw"
            );
        }
        if !self.invalid_names.is_empty() {
            tracing::warn!(fields = ?self.invalid_names, "field API names that are not letters, digits and underscores are never put into a query; these fields are not kept in raw");
        }
        if !self.over_column_cap.is_empty() {
            tracing::warn!(fields = ?self.over_column_cap, "COQL selects at most {MAX_COLUMNS} columns; these custom fields are not kept in raw");
        }
        if !self.hidden.is_empty() {
            tracing::debug!(fields = ?self.hidden, "fields marked not visible are not selected");
        }
    }
}

/// A field API name that may go into a query: ASCII letters, digits and underscores (Zoho derives API names
/// from labels this way; anything else is not trusted into COQL).
pub fn is_api_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// COQL's keywords and the SQL reserved words a field's API name may collide with; such a column must be quoted
/// (Kaizen #171: Zoho's own example is a field named `External`). Zoho publishes no list, so this one is broad
/// (SQL:2016's reserved words that are also ordinary English labels). Whether Zoho accepts a quoted name that
/// did not need quoting is unconfirmed, so only these words are quoted, never every name. Compared
/// case-insensitively.
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "and",
    "any",
    "as",
    "asc",
    "between",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "column",
    "constraint",
    "count",
    "create",
    "cross",
    "current",
    "date",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "escape",
    "except",
    "exists",
    "external",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "in",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "leading",
    "left",
    "like",
    "limit",
    "natural",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "primary",
    "references",
    "right",
    "rows",
    "select",
    "set",
    "some",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

/// A column as it goes into COQL: a reserved word in single quotes (Kaizen #171 allows single or double quotes;
/// COQL answers the column under its plain API name), anything else as is.
pub fn column(api_name: &str) -> String {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(api_name)) {
        format!("'{api_name}'")
    } else {
        api_name.to_owned()
    }
}

/// The won stages: the union of the Stage pick list's values in the "Closed Won" category (forecast type or
/// deal category), every pipeline's stage map in the Pipeline field's pick list (`pick_list_values[].maps[]`)
/// and the pipelines API's maps (`pipelines`). Whether a stage used only in a secondary pipeline also carries
/// its category on the top-level Stage pick list is unconfirmed (docs/zoho-api.md §3f), so all are read. Both
/// the actual and the display value are kept (which one records carry is unconfirmed, §5.3). A stage in no
/// category is logged at debug.
pub fn won_stages(fields: &[FieldMeta], pipelines: &[PickListValue]) -> Vec<String> {
    let field = |name: &str| fields.iter().find(|f| f.api_name == name);
    let stage_values = field("Stage").map(|f| f.pick_list_values.as_slice()).unwrap_or_default();
    let pipeline_maps = field("Pipeline").into_iter().flat_map(|f| &f.pick_list_values).chain(pipelines);
    let all = stage_values.iter().chain(pipeline_maps.flat_map(|p| &p.maps));
    let mut won: Vec<String> = Vec::new();
    for v in all {
        if !v.has_category() {
            tracing::debug!(stage = ?v.actual_value.as_ref().or(v.display_value.as_ref()), "a stage in no deal category (not counted as won)");
        }
        if !v.is_won() {
            continue;
        }
        for s in [&v.actual_value, &v.display_value].into_iter().flatten() {
            if !won.contains(s) {
                won.push(s.clone());
            }
        }
    }
    won
}

/// Whether won-stage discovery needs the pipelines API: the org has several pipelines (Pipeline pick-list
/// values) and the field metadata carries no stage map for them. With one pipeline (or none), the Stage pick
/// list is that pipeline's stage list, and two more calls a night buy nothing.
pub fn needs_pipeline_api(fields: &[FieldMeta]) -> bool {
    fields
        .iter()
        .find(|f| f.api_name == "Pipeline")
        .is_some_and(|f| f.pick_list_values.len() > 1 && f.pick_list_values.iter().all(|p| p.maps.is_empty()))
}

/// How to page `expected` rows with at most `concurrency` concurrent streams, spending the fewest credits:
/// COQL charges by LIMIT (1–200: 1 credit, 201–1000: 2, 1001–2000: 3), so a small nightly delta is read with
/// a small LIMIT, and a window is cut into time slices only when each slice still fills a few pages.
/// Returns `(slices, page_size)`. The count is only an estimate: paging goes on until a page is not full.
pub fn plan_pages(expected: u64, concurrency: usize) -> (usize, u32) {
    const ROWS_PER_SLICE: u64 = 2 * PAGE_SIZE as u64;
    let slices = expected.div_ceil(ROWS_PER_SLICE).clamp(1, concurrency.max(1) as u64) as usize;
    let per_slice = expected.div_ceil(slices as u64);
    let page_size = match per_slice {
        0..=200 => 200,
        201..=1000 => 1000,
        _ => PAGE_SIZE,
    };
    (slices, page_size)
}

/// Which deals a query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageFilter {
    /// Deals in a won stage.
    Won,
    /// Deals not in a won stage (to flag rows that left "won").
    NotWon,
}

/// Loads the Deals metadata: the fields (one call) and, when the org has several pipelines whose stage maps
/// the field metadata does not carry, the pipelines (two calls: layouts, then the pipelines of the first
/// layout that has any).
pub async fn metadata(client: &ZohoClient) -> Result<DealsMetadata, Error> {
    let mut meta = stage_metadata(client).await?;
    if meta.needs_currencies() {
        meta.currencies = super::currencies::OrgCurrencies::load(client).await?;
    }
    Ok(meta)
}

/// [`metadata`] without the currencies call: a caller that has other calls to make once the won stages are
/// known makes it alongside them (see [`DealsMetadata::needs_currencies`]).
pub async fn stage_metadata(client: &ZohoClient) -> Result<DealsMetadata, Error> {
    let body = client
        .get("settings/fields", &[("module", "Deals".to_owned())], &[])
        .await?
        .ok_or_else(|| malformed("settings/fields", "no content"))?;
    let fields = parse_fields(&body)?;
    let pipelines = match needs_pipeline_api(&fields) {
        false => Vec::new(),
        true => match pipelines(client).await {
            Ok(p) => p,
            // Without the pipeline scope or permission, the Stage pick list still gives the won stages of the
            // standard pipeline; a won stage used only elsewhere can be named in ZOHO_WON_STAGES.
            Err(e @ (Error::ScopeMismatch { .. } | Error::PermissionDenied { .. } | Error::Rejected { .. })) => {
                tracing::warn!(error = %Chain(&e), "could not read the Deals pipelines; won stages come from the Stage pick list only (add the scopes ZohoCRM.settings.layouts.READ and ZohoCRM.settings.pipeline.READ, or set ZOHO_WON_STAGES)");
                Vec::new()
            }
            Err(e) => return Err(e),
        },
    };
    let meta = DealsMetadata::new(fields, &pipelines);
    meta.select.log();
    Ok(meta)
}

/// Parses `GET /settings/fields?module=Deals` into fields, the select list and the won stages the field
/// metadata alone gives (no pipelines API).
pub fn parse_metadata(body: &Value) -> Result<DealsMetadata, Error> {
    Ok(DealsMetadata::new(parse_fields(body)?, &[]))
}

fn parse_fields(body: &Value) -> Result<Vec<FieldMeta>, Error> {
    model::parse_fields(body).ok_or_else(|| malformed("settings/fields", "no `fields` array"))
}

/// Every Deals pipeline with its stage maps: `GET settings/layouts?module=Deals`, then
/// `GET settings/pipeline?layout_id=` per layout (Zoho attaches pipelines to a layout; most orgs have one Deals
/// layout, so this is two calls).
pub async fn pipelines(client: &ZohoClient) -> Result<Vec<PickListValue>, Error> {
    let layouts = client.get("settings/layouts", &[("module", "Deals".to_owned())], &[]).await?.unwrap_or_default();
    let ids: Vec<String> = layouts
        .get("layouts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| {
            l.get("id").and_then(|id| id.as_str().map(str::to_owned).or_else(|| id.as_u64().map(|n| n.to_string())))
        })
        .collect();
    let mut all = Vec::new();
    for id in ids {
        let body = client.get("settings/pipeline", &[("layout_id", id)], &[]).await?.unwrap_or_default();
        all.extend(body.get("pipeline").and_then(Value::as_array).into_iter().flatten().map(PickListValue::from_json));
    }
    Ok(all)
}

/// A COQL string literal: a quote inside is doubled (`'Partner''s'`), as in standard SQL; a backslash is an
/// ordinary character (Kaizen #171, question 3).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A COQL datetime literal (UTC, no fraction).
fn instant(t: DateTime<Utc>) -> String {
    quote(&t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
}

fn stage_clause(filter: StageFilter, stages: &[String]) -> String {
    let list = stages.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
    match filter {
        StageFilter::Won => format!("Stage in ({list})"),
        StageFilter::NotWon => format!("Stage not in ({list})"),
    }
}

/// What a paged query selects.
#[derive(Debug, Clone, Copy)]
pub struct DealQuery<'a> {
    pub columns: &'a [String],
    pub filter: StageFilter,
    pub stages: &'a [String],
    pub window: Window,
    /// Rows per page: [`PAGE_SIZE`] in production (fewest credits per row); smaller in tests.
    pub page_size: u32,
}

/// The keyset page query. Zoho wants more than two criteria parenthesised in pairs: `((A and B) and (C and D))`.
pub fn page_query(q: &DealQuery<'_>, after_id: &str) -> String {
    page_query_in(q, &Ties::default(), after_id)
}

/// The keyset page query over the part of `q.window` that `ties` bounds (see [`Ties`]).
pub fn page_query_in(q: &DealQuery<'_>, ties: &Ties, after_id: &str) -> String {
    let (lower, upper) = range_clauses(q.window, ties);
    format!(
        "select {} from Deals where (({} and {lower}) and ({upper} and id > {})) order by id asc limit {}",
        q.columns.join(", "),
        stage_clause(q.filter, q.stages),
        after_id,
        q.page_size
    )
}

/// Where a part of a window starts and ends in the window's `(Modified_Time, id)` order, when a boundary falls
/// inside one second: the deals of that second are divided by id. With both `None` the part is the whole
/// window, `Modified_Time >= start and Modified_Time < end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ties {
    /// At `window.start`, only the deals with an id at or above this one.
    pub from_id: Option<String>,
    /// At `window.end`, also the deals with an id below this one.
    pub to_id: Option<String>,
}

/// A deal's place in a window's `(Modified_Time, id)` order: where a probe says a part of the window begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Ties {
    /// The part of a window that begins at `key` (inclusive): `(key.at, key.id)` and after.
    pub fn from_key(key: &Key) -> Ties {
        Ties { from_id: Some(key.id.clone()), to_id: None }
    }
}

/// The lower and upper conditions of a window's part (each one criterion, or a parenthesised `or`).
fn range_clauses(window: Window, ties: &Ties) -> (String, String) {
    let (start, end) = (instant(window.start), instant(window.end));
    let lower = match &ties.from_id {
        None => format!("Modified_Time >= {start}"),
        Some(id) => format!("(Modified_Time > {start} or (Modified_Time = {start} and id >= {id}))"),
    };
    let upper = match &ties.to_id {
        None => format!("Modified_Time < {end}"),
        Some(id) => format!("(Modified_Time < {end} or (Modified_Time = {end} and id < {id}))"),
    };
    (lower, upper)
}

/// COQL reaches at most this many rows with LIMIT and OFFSET: the largest offset of a one-row probe
/// (docs/zoho-api.md §3c).
pub const MAX_PROBE_OFFSET: u64 = 99_999;

/// The query for the deal at `offset` in a window part's `(Modified_Time, id)` order (from the end when
/// `descending`): one row, `limit 1` (1 credit).
///
/// The `limit … offset …` spelling is one of the two seen in public code (docs/zoho-api.md §3c: Zoho's grammar
/// line is UNCONFIRMED). If Zoho refuses it, [`key_at`]'s error is `Rejected` and the scheduler pages without
/// probes: the probes only balance the streams, they never decide which rows are read.
pub fn key_query(
    filter: StageFilter,
    stages: &[String],
    window: Window,
    ties: &Ties,
    offset: u64,
    descending: bool,
) -> String {
    let (lower, upper) = range_clauses(window, ties);
    let dir = if descending { "desc" } else { "asc" };
    format!(
        "select id, Modified_Time from Deals where (({} and {lower}) and {upper}) order by Modified_Time {dir}, id {dir} limit 1 offset {offset}",
        stage_clause(filter, stages),
    )
}

/// The key of the deal at `offset` in a window part's `(Modified_Time, id)` order, or `None` past its end.
pub async fn key_at(
    client: &ZohoClient,
    filter: StageFilter,
    stages: &[String],
    window: Window,
    ties: &Ties,
    offset: u64,
    descending: bool,
) -> Result<Option<Key>, Error> {
    let query = key_query(filter, stages, window, ties, offset, descending);
    let page = parse_page("coql", client.coql(&query, 1).await?)?;
    let Some(record) = page.records.first() else { return Ok(None) };
    let id = model::record_id(record);
    let at = record.get("Modified_Time").and_then(Value::as_str).and_then(model::parse_datetime);
    match (id, at) {
        // The id goes into later queries unquoted, as the keyset cursor does: only digits are accepted.
        (Some(id), Some(at)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(Key { at, id })),
        _ => Err(malformed("coql", "a probe's row has no readable id or Modified_Time")),
    }
}

/// One page of records and whether Zoho says there are more.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Value>,
    pub more: bool,
}

/// A deal record as Zoho sent it: its JSON text, read into a tree only when it is mapped.
pub type RawRecord = Box<RawValue>;

/// One COQL page of deals whose records stay JSON text until each is mapped. Read as one `Value`, a page of
/// 2,000 deals is a tree of ~15 MiB (every number keeps its text, every field its own allocations); as text it
/// is the ~2 MiB Zoho sent, and each record becomes a tree of a few KiB only while it is mapped. With pages
/// downloading on several streams while the loader stages, that is most of a backfill's memory.
#[derive(Debug, Default)]
pub struct RawPage {
    pub records: Vec<RawRecord>,
    pub more: bool,
}

impl<'de> Deserialize<'de> for RawPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The envelope: `data` must be an array (of anything JSON: each record is judged when it is mapped),
        /// `info.more_records` is read as leniently as [`parse_page`] reads it.
        #[derive(Deserialize)]
        struct Body {
            data: Option<Records>,
            #[serde(default)]
            info: Value,
        }
        struct Records(Vec<RawRecord>);
        impl<'de> Deserialize<'de> for Records {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Elements;
                impl<'de> Visitor<'de> for Elements {
                    type Value = Records;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("`data` as an array of records")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records, A::Error> {
                        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PAGE_SIZE as usize));
                        while let Some(record) = seq.next_element::<RawRecord>()? {
                            records.push(record);
                        }
                        Ok(Records(records))
                    }
                }
                d.deserialize_seq(Elements)
            }
        }
        let body = Body::deserialize(d)?;
        let Some(Records(records)) = body.data else {
            return Err(serde::de::Error::custom("no `data` in the response"));
        };
        let more = body.info.get("more_records").and_then(Value::as_bool).unwrap_or(false);
        Ok(RawPage { records, more })
    }
}

/// A raw record's `id` (if readable, as [`model::record_id`] reads it) and `Modified_Time`, read without building
/// the record's tree.
pub fn raw_key(record: &RawValue) -> (Option<String>, Option<DateTime<Utc>>) {
    #[derive(Deserialize)]
    struct Key {
        #[serde(default)]
        id: Value,
        #[serde(default, rename = "Modified_Time")]
        modified_time: Value,
    }
    // (A struct also reads from an array, by position: a record that is not an object has no key.)
    if !record.get().trim_start().starts_with('{') {
        return (None, None);
    }
    match serde_json::from_str::<Key>(record.get()) {
        Ok(key) => (model::id_value(&key.id), key.modified_time.as_str().and_then(model::parse_datetime)),
        // Not an object, or a key twice: read the whole record as the mapping will.
        Err(_) => match serde_json::from_str::<Value>(record.get()) {
            Ok(v) => {
                (model::record_id(&v), v.get("Modified_Time").and_then(Value::as_str).and_then(model::parse_datetime))
            }
            Err(_) => (None, None),
        },
    }
}

/// Parses a COQL or Get Records body (`None` = 204).
pub fn parse_page(endpoint: &str, body: Option<Value>) -> Result<Page, Error> {
    let Some(mut body) = body else {
        return Ok(Page { records: Vec::new(), more: false });
    };
    let more = body.pointer("/info/more_records").and_then(Value::as_bool).unwrap_or(false);
    match body.get_mut("data").map(Value::take) {
        Some(Value::Array(records)) => Ok(Page { records, more }),
        Some(other) => Err(malformed(endpoint, &format!("`data` is not an array but {other:.40}"))),
        None => Err(malformed(endpoint, "no `data` in the response")),
    }
}

/// Pages through the deals `q` selects, calling `on_page` for each page in id order. Stops early (returning
/// `Ok`) when `on_page` returns `false`.
pub async fn page_deals<F, Fut>(client: &ZohoClient, q: &DealQuery<'_>, mut on_page: F) -> Result<(), Error>
where
    F: FnMut(Vec<Value>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let fetch = |after: String| async move {
        let page = parse_page("coql", client.coql(&page_query(q, &after), q.page_size).await?)?;
        tracing::debug!(records = page.records.len(), more = page.more, after = %after, "COQL page");
        Ok::<_, Error>(page)
    };
    let mut after = "0".to_owned();
    let mut page = fetch(after.clone()).await?;
    loop {
        let n = page.records.len();
        // The next key is the largest id of this page; a page whose ids we cannot read cannot be paged past.
        let last = page.records.iter().filter_map(model::record_id).max_by(|a, b| cmp_ids(a, b));
        let next = match last {
            Some(id) if page.more || n as u32 >= q.page_size => {
                if cmp_ids(&id, &after) != std::cmp::Ordering::Greater {
                    return Err(malformed("coql", "keyset paging did not advance (ids not ascending)"));
                }
                Some(id)
            }
            None if n > 0 && page.more => {
                return Err(malformed("coql", "a page had no readable ids, so paging cannot continue"));
            }
            _ => None,
        };
        let Some(next) = next else {
            on_page(page.records).await;
            return Ok(());
        };
        // The next page is requested as soon as its key is known, while this one is handed over: Zoho's time
        // to answer overlaps with mapping and loading.
        let (keep_going, fetched) = tokio::join!(on_page(page.records), fetch(next.clone()));
        if !keep_going {
            return Ok(());
        }
        page = fetched?;
        after = next;
    }
}

/// Numeric order of record ids (ids are digit strings of varying length).
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Zoho's count of won deals modified in the window (for reconciliation and `--dry-run`).
pub async fn count_deals(client: &ZohoClient, stages: &[String], window: Window) -> Result<u64, Error> {
    count_matching(client, StageFilter::Won, stages, window).await
}

/// How a count is made. Zoho documents `COUNT` "for number, lookup and picklist fields"; `COUNT(id)` appears in
/// no Zoho example (docs/zoho-api.md §3c, unconfirmed), so a refusal must not fail the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountStrategy {
    /// `select COUNT(id) …`: one credit.
    CountId = 0,
    /// `select COUNT(Stage) …`: Stage is a mandatory picklist, so it counts every deal; one credit.
    CountStage = 1,
    /// Page the matching ids (`select id … limit 2000`): 3 credits per 2000 deals (1 for up to 200). Always
    /// works where the sync's own queries work.
    PageIds = 2,
}

impl CountStrategy {
    fn from_u8(n: u8) -> CountStrategy {
        match n {
            0 => CountStrategy::CountId,
            1 => CountStrategy::CountStage,
            _ => CountStrategy::PageIds,
        }
    }

    fn next(self) -> Option<CountStrategy> {
        match self {
            CountStrategy::CountId => Some(CountStrategy::CountStage),
            CountStrategy::CountStage => Some(CountStrategy::PageIds),
            CountStrategy::PageIds => None,
        }
    }
}

/// Zoho's count of the deals `filter` selects in the window. Tries `COUNT(id)`, then `COUNT(Stage)`, then paging
/// ids, moving on only when Zoho refuses the query (a 4xx such as `INVALID_QUERY` or `SYNTAX_ERROR`), and
/// remembers the first that works on the client for the rest of the run (so the refusal costs one call per run).
pub async fn count_matching(
    client: &ZohoClient,
    filter: StageFilter,
    stages: &[String],
    window: Window,
) -> Result<u64, Error> {
    let mut strategy = CountStrategy::from_u8(client.count_strategy());
    loop {
        match count_with(client, strategy, filter, stages, window).await {
            Ok(n) => {
                client.set_count_strategy(strategy as u8);
                return Ok(n);
            }
            Err(e @ Error::Rejected { .. }) => match strategy.next() {
                Some(next) => {
                    tracing::info!(error = %Chain(&e), ?strategy, ?next, "Zoho refused this way of counting deals; counting another way for the rest of the run");
                    strategy = next;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

async fn count_with(
    client: &ZohoClient,
    strategy: CountStrategy,
    filter: StageFilter,
    stages: &[String],
    window: Window,
) -> Result<u64, Error> {
    let aggregate = match strategy {
        CountStrategy::CountId => "COUNT(id)",
        CountStrategy::CountStage => "COUNT(Stage)",
        CountStrategy::PageIds => {
            let cols = vec!["id".to_owned()];
            let q = DealQuery { columns: &cols, filter, stages, window, page_size: PAGE_SIZE };
            let mut n = 0u64;
            page_deals(client, &q, |records| {
                n += records.len() as u64;
                async { true }
            })
            .await?;
            return Ok(n);
        }
    };
    let query = format!(
        "select {aggregate} from Deals where ({} and (Modified_Time >= {} and Modified_Time < {}))",
        stage_clause(filter, stages),
        instant(window.start),
        instant(window.end)
    );
    let body = client.coql(&query, 1).await?;
    let page = parse_page("coql", body)?;
    let Some(first) = page.records.first() else { return Ok(0) };
    first
        .as_object()
        .and_then(|o| o.values().find_map(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))))
        .ok_or_else(|| malformed("coql", &format!("the {aggregate} answer has no number")))
}

/// A deal deleted in Zoho.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedDeal {
    pub id: String,
    pub deleted_time: DateTime<Utc>,
}

/// Deals deleted since `since` (recycle bin and permanent), via `GET /Deals/deleted` with `If-Modified-Since`.
///
/// The list is paged by page number, so pages need not wait for each other: they are asked for in waves of
/// 1, 2, 4 … up to `parallel` pages at once, and the first page that is not followed by more ends the list. A
/// wave can ask for up to `parallel - 1` pages past the end (1 credit each, answered 204); `parallel = 1` pages
/// one after another and asks for nothing past the end (what a run under `--max-credits` needs). An entry seen
/// twice (a deletion during the run can shift the list by one) is kept once.
pub async fn deleted_since(
    client: &Arc<ZohoClient>,
    since: DateTime<Utc>,
    parallel: usize,
) -> Result<Vec<DeletedDeal>, Error> {
    let header = since.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut next, mut wave) = (1u32, 1usize);
    loop {
        let mut calls = tokio::task::JoinSet::new();
        for page in next..next + wave as u32 {
            let (client, header) = (Arc::clone(client), header.clone());
            calls.spawn(async move {
                let query =
                    [("type", "all".into()), ("page", page.to_string()), ("per_page", DELETED_PAGE_SIZE.to_string())];
                let body = client.get("Deals/deleted", &query, &[("If-Modified-Since", header)]).await;
                (page, body)
            });
        }
        let mut pages = Vec::with_capacity(wave);
        while let Some(joined) = calls.join_next().await {
            let (number, body) = joined.map_err(|e| malformed("Deals/deleted", &format!("a page task failed: {e}")))?;
            pages.push((number, parse_page("Deals/deleted", body?)?));
        }
        pages.sort_by_key(|(number, _)| *number);
        for (_, page) in pages {
            for r in &page.records {
                let id = model::record_id(r);
                let at = r.get("deleted_time").and_then(Value::as_str).and_then(model::parse_datetime);
                match (id, at) {
                    (Some(id), Some(deleted_time)) if deleted_time >= since => {
                        if seen.insert(id.clone()) {
                            out.push(DeletedDeal { id, deleted_time });
                        }
                    }
                    (Some(_), Some(_)) => {}
                    _ => tracing::warn!(record = %format!("{r:.200}"), "skipping an unreadable deleted-record entry"),
                }
            }
            if !page.more || page.records.is_empty() {
                return Ok(out);
            }
        }
        next += wave as u32;
        wave = (wave * 2).min(parallel.max(1));
    }
}

/// `reconcile`: the ids of every won deal whose `Modified_Time` lies in `window`, paged by id with the cheapest
/// columns (`id, Modified_Time`, 2000 per call: 3 credits per 2000 deals).
pub async fn won_ids(client: &ZohoClient, stages: &[String], window: Window) -> Result<Vec<String>, Error> {
    let cols = vec!["id".to_owned(), "Modified_Time".to_owned()];
    let q = DealQuery { columns: &cols, filter: StageFilter::Won, stages, window, page_size: PAGE_SIZE };
    let mut ids = Vec::new();
    page_deals(client, &q, |records| {
        ids.extend(records.iter().filter_map(model::record_id));
        async { true }
    })
    .await?;
    Ok(ids)
}

/// A deal's current stage and version, as `reconcile` asks for it by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentStage {
    pub id: String,
    pub stage: Option<String>,
    pub modified_time: DateTime<Utc>,
}

/// `IN` takes at most this many values (v7 and later: docs/zoho-api.md §3c).
pub const MAX_IN_VALUES: usize = 100;

/// `reconcile`: the current stage of each deal in `ids` that Zoho still has (a deal it no longer has is simply
/// absent from the answer). One call (1 credit) per 100 ids. Ids that are not plain digits are never put into a
/// query (they cannot be Zoho ids) and count as absent.
pub async fn current_stages(client: &ZohoClient, ids: &[String]) -> Result<Vec<CurrentStage>, Error> {
    let ids: Vec<&String> = ids.iter().filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(MAX_IN_VALUES) {
        let list = chunk.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let query = format!("select id, Stage, Modified_Time from Deals where id in ({list}) limit {MAX_IN_VALUES}");
        let page = parse_page("coql", client.coql(&query, MAX_IN_VALUES as u32).await?)?;
        for r in &page.records {
            match model::to_deal(r) {
                Ok(d) => out.push(CurrentStage { id: d.deal_id, stage: d.stage, modified_time: d.modified_time }),
                Err(q) => {
                    tracing::warn!(deal_id = %q.deal_id, field = %q.field, reason = %q.reason, "reconcile: an unreadable record is left as it is");
                }
            }
        }
    }
    Ok(out)
}

/// For `check`: the run's real won-deal query with `limit 1` (one credit), so a column this org refuses fails at
/// set-up rather than at night. Returns how many deals it found (0 or 1).
pub async fn probe_won_select(
    client: &ZohoClient,
    columns: &[String],
    stages: &[String],
    window: Window,
) -> Result<usize, Error> {
    let q = DealQuery { columns, filter: StageFilter::Won, stages, window, page_size: 1 };
    Ok(parse_page("coql", client.coql(&page_query(&q, "0"), 1).await?)?.records.len())
}

/// For `check`: one page of deleted deals (one credit), proving the profile may read them.
pub async fn probe_deleted(client: &ZohoClient) -> Result<usize, Error> {
    let query = [("type", "all".to_owned()), ("page", "1".to_owned()), ("per_page", "1".to_owned())];
    Ok(parse_page("Deals/deleted", client.get("Deals/deleted", &query, &[]).await?)?.records.len())
}

fn malformed(endpoint: &str, detail: &str) -> Error {
    Error::malformed(endpoint, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn field(api_name: &str, data_type: &str, custom: bool) -> FieldMeta {
        FieldMeta {
            api_name: api_name.into(),
            data_type: data_type.into(),
            custom,
            visible: true,
            ..FieldMeta::default()
        }
    }

    fn fields(body: serde_json::Value) -> Vec<FieldMeta> {
        model::parse_fields(&body).expect("a fields array")
    }

    /// The standard fields every org has, without Pipeline, Currency and Exchange_Rate (a Free-edition org).
    fn free_org() -> Vec<FieldMeta> {
        [
            ("Deal_Name", "text"),
            ("Stage", "picklist"),
            ("Amount", "currency"),
            ("Probability", "integer"),
            ("Expected_Revenue", "currency"),
            ("Closing_Date", "date"),
            ("Account_Name", "lookup"),
            ("Contact_Name", "lookup"),
            ("Owner", "ownerlookup"),
            ("Lead_Source", "picklist"),
            ("Type", "picklist"),
            ("Created_Time", "datetime"),
            ("Modified_Time", "datetime"),
            ("Description", "textarea"),
        ]
        .into_iter()
        .map(|(n, t)| field(n, t, false))
        .collect()
    }

    #[test]
    fn a_free_org_is_not_asked_for_pipeline_currency_or_exchange_rate() {
        let select = select_list(&free_org());
        for absent in ["Pipeline", "Currency", "Exchange_Rate"] {
            assert!(!select.columns.iter().any(|c| c == absent), "{absent} selected: {:?}", select.columns);
        }
        for present in ["id", "Deal_Name", "Stage", "Amount", "Owner", "Owner.email", "Modified_Time"] {
            assert!(select.columns.iter().any(|c| c == present), "{present} missing: {:?}", select.columns);
        }
        assert!(!select.columns.iter().any(|c| c == "Description"), "only mapped standard fields and custom ones");
    }

    #[test]
    fn an_org_with_pipelines_and_multi_currency_gets_those_fields_selected() {
        let mut org = free_org();
        org.extend([field("Pipeline", "picklist", false), field("Currency", "picklist", false)]);
        org.push(field("Exchange_Rate", "double", false));
        let select = select_list(&org);
        for present in ["Pipeline", "Currency", "Exchange_Rate"] {
            assert!(select.columns.iter().any(|c| c == present), "{present} missing");
        }
    }

    #[test]
    fn custom_fields_coql_cannot_select_are_skipped_and_reported() {
        let mut org = free_org();
        for (name, t) in [
            ("Languages_Known", "multiselectlookup"),
            ("Contract_File", "fileupload"),
            ("Logo", "imageupload"),
            ("Line_Items", "subform"),
            ("Deal_Region", "picklist"),
            ("Tags_Multi", "multiselectpicklist"),
        ] {
            org.push(field(name, t, true));
        }
        let select = select_list(&org);
        assert_eq!(select.unsupported, vec!["Languages_Known", "Contract_File", "Logo", "Line_Items"]);
        assert!(
            select.columns.contains(&"Deal_Region".to_owned()) && select.columns.contains(&"Tags_Multi".to_owned())
        );
        for skipped in &select.unsupported {
            assert!(!select.columns.contains(skipped));
        }
    }

    #[test]
    fn at_most_five_formula_fields_are_selected_and_the_rest_are_reported() {
        let mut org = free_org();
        org.extend((1..=7).map(|i| field(&format!("Score_{i}"), "formula", true)));
        let select = select_list(&org);
        let formulas: Vec<_> = select.columns.iter().filter(|c| c.starts_with("Score_")).collect();
        assert_eq!(formulas.len(), MAX_FORMULA_FIELDS);
        assert_eq!(select.formula_over_cap, vec!["Score_6", "Score_7"]);
    }

    #[test]
    fn reserved_words_are_quoted_and_names_that_are_not_identifiers_never_enter_a_query() {
        let mut org = free_org();
        org.extend([
            field("External", "text", true),
            field("order", "text", true),
            field("Bad Name", "text", true),
            field("x') or (1=1", "text", true),
            field("Käse", "text", true),
        ]);
        let select = select_list(&org);
        assert!(select.columns.contains(&"'External'".to_owned()), "{:?}", select.columns);
        assert!(select.columns.contains(&"'order'".to_owned()));
        assert_eq!(select.invalid_names, vec!["Bad Name", "x') or (1=1", "Käse"]);
        assert!(select.columns.iter().all(|c| is_api_name(c.trim_matches('\'')) || c == "Owner.email"));
    }

    #[test]
    fn hidden_fields_are_not_selected_and_the_column_cap_is_500() {
        let mut org = free_org();
        let mut hidden = field("Secret_Margin", "currency", true);
        hidden.visible = false;
        org.push(hidden);
        org.extend((0..600).map(|i| field(&format!("Custom_{i}"), "text", true)));
        let select = select_list(&org);
        assert_eq!(select.hidden, vec!["Secret_Margin"]);
        assert_eq!(select.columns.len(), MAX_COLUMNS);
        let standard = select_list(&free_org()).columns.len();
        assert_eq!(select.columns.len() + select.over_column_cap.len(), 600 + standard, "every field accounted for");
    }

    #[test]
    fn the_metadata_json_parses_into_typed_fields() {
        let f = fields(json!({"fields":[
            {"api_name":"Stage","data_type":"picklist","custom_field":false,"visible":true,
             "pick_list_values":[{"display_value":"Won","actual_value":"Closed Won","forecast_type":"Closed Won",
                                  "forecast_category":{"name":"Closed","id":"1"}}]},
            {"api_name":"Region__c","data_type":"Picklist","custom_field":true},
            {"data_type":"text"},
            {"api_name":"Hidden_One","data_type":"text","custom_field":true,"visible":false}]}));
        assert_eq!(f.len(), 3, "an entry without api_name is skipped");
        assert_eq!(f[0].pick_list_values[0].actual_value.as_deref(), Some("Closed Won"));
        assert!(f[0].pick_list_values[0].is_won());
        assert_eq!(f[1].data_type, "picklist", "data types compare in lower case");
        assert!(f[1].custom && f[1].visible);
        assert!(!f[2].visible);
        assert!(model::parse_fields(&json!({"data": []})).is_none());
    }

    #[test]
    fn won_stages_are_the_union_of_the_stage_pick_list_and_every_pipelines_stage_map() {
        let org = fields(json!({"fields":[
            {"api_name":"Stage","data_type":"picklist","pick_list_values":[
                {"display_value":"Qualification","actual_value":"Qualification","forecast_type":"Open"},
                {"display_value":"Closed Won","actual_value":"Closed Won","forecast_type":"Closed Won"},
                {"display_value":"Won - Renewal","actual_value":"Closed Won - Renewal","deal_category":"Closed Won"},
                {"display_value":"Partner's Win","actual_value":"Partner's Win"},
                {"display_value":"Closed Lost","actual_value":"Closed Lost","forecast_type":"Closed Lost"}]},
            {"api_name":"Pipeline","data_type":"picklist","pick_list_values":[
                {"display_value":"Standard","actual_value":"Standard","maps":[
                    {"display_value":"Closed Won","actual_value":"Closed Won","forecast_type":"Closed Won"}]},
                {"display_value":"Partners","actual_value":"Partners","maps":[
                    {"display_value":"Partner's Win","actual_value":"Partner's Win","forecast_type":"Closed Won"},
                    {"display_value":"Partner Lost","actual_value":"Partner Lost","forecast_type":"Closed Lost"}]}]}]}));
        let api = [PickListValue::from_json(&json!({"display_value":"Channel","maps":[
            {"display_value":"Signed","actual_value":"Channel Signed","forecast_type":"Closed Won"},
            {"display_value":"Closed Won","actual_value":"Closed Won","forecast_type":"Closed Won"}]}))];
        assert_eq!(
            won_stages(&org, &api),
            vec!["Closed Won", "Closed Won - Renewal", "Won - Renewal", "Partner's Win", "Channel Signed", "Signed"],
            "a won stage used only in a secondary pipeline (no category on the Stage pick list) is found"
        );
        assert!(!needs_pipeline_api(&org), "the field metadata carries the stage maps");
    }

    #[test]
    fn an_org_without_pipelines_takes_won_stages_from_the_stage_pick_list_alone() {
        let org = fields(json!({"fields":[{"api_name":"Stage","pick_list_values":[
            {"display_value":"Won","actual_value":"Won","forecast_type":"Closed Won"}]}]}));
        assert_eq!(won_stages(&org, &[]), vec!["Won"]);
        assert!(!needs_pipeline_api(&org));
        let several = fields(json!({"fields":[{"api_name":"Pipeline","pick_list_values":[
            {"display_value":"A","actual_value":"A"},{"display_value":"B","actual_value":"B"}]}]}));
        assert!(needs_pipeline_api(&several), "two pipelines without maps: read the pipelines API");
    }

    #[test]
    fn configured_won_stages_override_discovery_and_none_at_all_is_an_error_naming_the_variable() {
        let meta = DealsMetadata::new(free_org(), &[]);
        assert!(meta.won_stages.is_empty());
        let configured = vec!["Done".to_owned()];
        assert_eq!(meta.won_stages_or(Some(&configured)).expect("configured"), configured);
        let err = meta.won_stages_or(None).expect_err("nothing won").to_string();
        assert!(err.contains("ZOHO_WON_STAGES"), "{err}");
    }

    #[test]
    fn string_literals_double_the_quote_and_keep_backslashes() {
        assert_eq!(quote("Partner's"), "'Partner''s'");
        assert_eq!(quote("it''s"), "'it''''s'");
        assert_eq!(quote(r"C:\deals\"), r"'C:\deals\'");
        assert_eq!(quote("plain"), "'plain'");
    }

    #[test]
    fn the_page_query_pairs_its_criteria_and_doubles_quotes() {
        let w = Window {
            start: Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).single().expect("valid"),
            end: Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).single().expect("valid"),
        };
        let (cols, stages) = (vec!["id".to_owned()], vec!["O'Won".to_owned()]);
        let q = DealQuery { columns: &cols, filter: StageFilter::Won, stages: &stages, window: w, page_size: 2000 };
        let q = page_query(&q, "42");
        assert_eq!(
            q,
            "select id from Deals where ((Stage in ('O''Won') and Modified_Time >= '2026-11-27T00:00:00+00:00') \
             and (Modified_Time < '2026-11-28T00:00:00+00:00' and id > 42)) order by id asc limit 2000"
        );
    }

    #[test]
    fn small_deltas_use_cheap_pages_and_big_windows_are_sliced() {
        assert_eq!(plan_pages(0, 4), (1, 200));
        assert_eq!(plan_pages(150, 4), (1, 200));
        assert_eq!(plan_pages(763, 4), (1, 1000));
        assert_eq!(plan_pages(3000, 4), (1, 2000));
        assert_eq!(plan_pages(9000, 4), (3, 2000));
        assert_eq!(plan_pages(1_000_000, 4), (4, 2000));
        assert_eq!(plan_pages(1_000_000, 1), (1, 2000));
    }

    #[test]
    fn ids_compare_numerically() {
        assert_eq!(cmp_ids("99", "100"), std::cmp::Ordering::Less);
        assert_eq!(cmp_ids("5725767000000000002", "5725767000000000010"), std::cmp::Ordering::Less);
    }

    #[test]
    fn a_204_is_an_empty_last_page() {
        let p = parse_page("coql", None).expect("ok");
        assert!(p.records.is_empty() && !p.more);
        assert!(parse_page("coql", Some(json!({"data": 3}))).is_err());
    }

    #[test]
    fn a_raw_page_keeps_each_record_as_the_text_zoho_sent_and_reads_the_envelope_as_parse_page_does() {
        let text = r#"{"data":[{"id":"5725767000000000001","Amount":12500.10,"Modified_Time":"2026-11-01T10:00:00+05:30"},
            {"id":5725767000000000002,"Nested":{"a":[1,2]}}],"info":{"more_records":true,"count":2}}"#;
        let page: RawPage = serde_json::from_str(text).expect("a page");
        assert!(page.more);
        assert_eq!(page.records.len(), 2);
        // Numbers keep their text (arbitrary precision) through the raw record and its tree.
        assert!(page.records[0].get().contains("12500.10"));
        let tree: Value = serde_json::from_str(page.records[0].get()).expect("JSON");
        let via_tree = parse_page("coql", Some(serde_json::from_str(text).expect("JSON"))).expect("a page");
        assert_eq!(tree, via_tree.records[0]);
        // `more_records` absent or not a boolean reads as no more, as `parse_page` reads it.
        for body in [r#"{"data":[]}"#, r#"{"data":[],"info":{"more_records":"yes"}}"#] {
            let page: RawPage = serde_json::from_str(body).expect("a page");
            assert!(!page.more && page.records.is_empty(), "{body}");
        }
        // No `data`, or a `data` that is not an array, is refused naming `data`.
        for body in [r#"{"info":{}}"#, r#"{"data":3}"#, r#"{"data":{"id":"1"}}"#, r#"{"data":null}"#] {
            let err = serde_json::from_str::<RawPage>(body).expect_err(body).to_string();
            assert!(err.contains("`data`"), "{body}: {err}");
        }
    }

    #[test]
    fn a_raw_records_key_is_read_as_the_tree_would_read_it() {
        let key = |text: &str| raw_key(&RawValue::from_string(text.to_owned()).expect("JSON"));
        let at = model::parse_datetime("2026-11-01T10:00:00+05:30");
        assert!(at.is_some());
        assert_eq!(
            key(r#"{"id":"5725767000000000001","Modified_Time":"2026-11-01T10:00:00+05:30","x":[{}]}"#).0.as_deref(),
            Some("5725767000000000001")
        );
        assert_eq!(
            key(r#"{"Modified_Time":"2026-11-01T10:00:00+05:30","id":5725767000000000002}"#),
            (Some("5725767000000000002".to_owned()), at)
        );
        // Not an id, no time, not an object: nothing readable.
        assert_eq!(key(r#"{"id":"abc","Modified_Time":7}"#), (None, None));
        assert_eq!(key(r#"[1,2]"#), (None, None));
        // A key given twice: read as the record's tree reads it (the last one).
        assert_eq!(key(r#"{"id":"1","id":"2"}"#).0.as_deref(), Some("2"));
    }
}
