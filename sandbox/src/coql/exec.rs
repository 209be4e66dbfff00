//! COQL evaluation: checks a parsed [`Query`] against the Deals metadata (unknown field → INVALID_QUERY,
//! wrong value type → INVALID_QUERY, limits → LIMIT_EXCEEDED), then filters, sorts, pages and projects
//! the live deals the way Zoho's COQL answers.
//!
//! Value semantics: datetimes compare as instants whatever offset the literal uses; dates as dates;
//! `id` and lookups numerically by id; numbers as numbers; text and pick lists exactly
//! (case-sensitive: UNCONFIRMED for Zoho, the stricter choice catches more client bugs), `like`
//! case-insensitively. A null field fails every test except `is null` (SQL semantics, including `!=`
//! and `not in`; Zoho's behaviour there is UNCONFIRMED).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Bound;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Map, Value};

use super::parser::{parse, Agg, Column, CondKind, Expr, Lit, Query};
use super::{
    CoqlError, Options, DEFAULT_LIMIT, MAX_COLUMNS, MAX_CRITERIA, MAX_FORMULA_COLUMNS, MAX_LIMIT, MAX_REACHABLE,
};
use crate::clock::{parse_date, parse_datetime};
use crate::data::Store;
use crate::meta::{FieldDef, FieldType, FormulaType, Module};
use crate::org::Org;

/// Most ORDER BY fields.
const MAX_ORDER_FIELDS: usize = 10;

/// What a successful query produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The 200 body, or `None` for Zoho's 204 with an empty body (nothing matched).
    pub body: Option<Value>,
    /// The LIMIT in force (decides the credit cost).
    pub limit: u64,
}

/// API credits a COQL call costs by its LIMIT: 1–200 → 1, 201–1000 → 2, 1001–2000 → 3
/// (stated for Vertical Solutions COQL; for CRM v8 only secondary sources: UNCONFIRMED).
pub fn credits_for(limit: u64) -> u64 {
    match limit {
        0..=200 => 1,
        201..=1000 => 2,
        _ => 3,
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Id,
    Field(FieldDef),
    Join { lookup: FieldDef, module: Module, field: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    Num,
    Text,
    Date,
    DateTime,
    Bool,
    Lookup,
    Unsupported,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Id => "id",
            Kind::Num => "number",
            Kind::Text => "text",
            Kind::Date => "date",
            Kind::DateTime => "datetime",
            Kind::Bool => "boolean",
            Kind::Lookup => "lookup",
            Kind::Unsupported => "unsupported",
        }
    }
}

/// A value as COQL compares it. Text borrows from the record it was read from: a filter reads every row of a
/// scan, so it copies nothing.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Null,
    Id(u64),
    Num(f64),
    Text(Cow<'a, str>),
    Date(NaiveDate),
    Instant(DateTime<Utc>),
    Bool(bool),
}

impl Scalar<'_> {
    fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Null => Scalar::Null,
            Scalar::Id(x) => Scalar::Id(x),
            Scalar::Num(x) => Scalar::Num(x),
            Scalar::Text(t) => Scalar::Text(Cow::Owned(t.into_owned())),
            Scalar::Date(x) => Scalar::Date(x),
            Scalar::Instant(x) => Scalar::Instant(x),
            Scalar::Bool(x) => Scalar::Bool(x),
        }
    }
}

fn compare(a: &Scalar<'_>, b: &Scalar<'_>) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Id(x), Scalar::Id(y)) => Some(x.cmp(y)),
        (Scalar::Num(x), Scalar::Num(y)) => x.partial_cmp(y),
        (Scalar::Text(x), Scalar::Text(y)) => Some(x.cmp(y)),
        (Scalar::Date(x), Scalar::Date(y)) => Some(x.cmp(y)),
        (Scalar::Instant(x), Scalar::Instant(y)) => Some(x.cmp(y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Sort order with nulls first (ascending).
fn sort_cmp(a: &Scalar<'_>, b: &Scalar<'_>) -> Ordering {
    match (a, b) {
        (Scalar::Null, Scalar::Null) => Ordering::Equal,
        (Scalar::Null, _) => Ordering::Less,
        (_, Scalar::Null) => Ordering::Greater,
        _ => compare(a, b).unwrap_or(Ordering::Equal),
    }
}

fn unknown_column(name: &str, col: usize) -> CoqlError {
    CoqlError::invalid(format!("invalid column given: {name}"), json!({"column_name": name, "line": 1, "column": col}))
}

/// A field COQL cannot select or filter on (multi-select lookup, file/image upload, subform): Zoho answers
/// INVALID_QUERY "unsupported data type" naming the column (docs/zoho-api.md §3c).
fn unsupported_type(name: &str, col: usize) -> CoqlError {
    CoqlError::invalid(
        format!("unsupported data type: {name} cannot be used in a query"),
        json!({"column_name": name, "line": 1, "column": col}),
    )
}

/// What a column name refers to in this org. Fields the org lacks, or hides from the API user, are unknown
/// columns (INVALID_QUERY naming them), as on Zoho (docs/zoho-api.md §3f).
fn resolve(org: &Org, name: &str, col: usize) -> Result<Target, CoqlError> {
    if name == "id" {
        return Ok(Target::Id);
    }
    if let Some((left, right)) = name.split_once('.') {
        let lookup = org.field(left).ok_or_else(|| unknown_column(name, col))?;
        let module = match lookup.ftype {
            FieldType::Lookup(m) => m,
            FieldType::OwnerLookup | FieldType::UserLookup => Module::Users,
            _ => {
                return Err(CoqlError::invalid(
                    format!("{left} is not a lookup field, so {name} cannot be joined"),
                    json!({"column_name": name, "line": 1, "column": col}),
                ))
            }
        };
        let field = module
            .join_fields()
            .iter()
            .find(|(f, _)| *f == right)
            .map(|(f, _)| *f)
            .ok_or_else(|| unknown_column(name, col))?;
        return Ok(Target::Join { lookup, module, field });
    }
    let def = org.field(name).ok_or_else(|| unknown_column(name, col))?;
    if def.ftype.coql_unsupported() {
        return Err(unsupported_type(name, col));
    }
    Ok(Target::Field(def))
}

fn kind_of(t: Target) -> Kind {
    match t {
        Target::Id => Kind::Id,
        Target::Join { field: "id", .. } => Kind::Id,
        Target::Join { .. } => Kind::Text,
        Target::Field(f) => match f.ftype {
            FieldType::Currency
            | FieldType::Double
            | FieldType::Integer
            | FieldType::Percent
            | FieldType::RollupSummary
            | FieldType::Formula(FormulaType::Double) => Kind::Num,
            // Long integers travel as digit strings; they compare as numbers, like ids.
            FieldType::BigInt => Kind::Id,
            FieldType::Text
            | FieldType::TextArea
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
            | FieldType::Picklist
            | FieldType::AutoNumber
            | FieldType::Formula(FormulaType::Text) => Kind::Text,
            FieldType::Date | FieldType::Formula(FormulaType::Date) => Kind::Date,
            FieldType::DateTime => Kind::DateTime,
            FieldType::Boolean | FieldType::Formula(FormulaType::Boolean) => Kind::Bool,
            FieldType::Lookup(_) | FieldType::OwnerLookup | FieldType::UserLookup => Kind::Lookup,
            // Arrays: selectable, but only `is [not] null` filters them here.
            FieldType::Tags | FieldType::MultiPicklist => Kind::Unsupported,
            FieldType::MultiSelectLookup | FieldType::FileUpload | FieldType::ImageUpload | FieldType::Subform => {
                Kind::Unsupported
            }
        },
    }
}

fn lookup_id(rec: &Map<String, Value>, lookup: FieldDef) -> Option<u64> {
    rec.get(lookup.api_name)?.get("id")?.as_str()?.parse().ok()
}

/// A record's value for `t`: borrowed from the record (a filter reads every row of a scan, so no copy), or
/// looked up through a join.
fn raw<'a>(t: Target, rec: &'a Map<String, Value>, store: &Store) -> Cow<'a, Value> {
    static NULL: Value = Value::Null;
    match t {
        Target::Id => Cow::Borrowed(rec.get("id").unwrap_or(&NULL)),
        Target::Field(f) => Cow::Borrowed(rec.get(f.api_name).unwrap_or(&NULL)),
        Target::Join { lookup, module, field } => match lookup_id(rec, lookup) {
            Some(id) => Cow::Owned(store.join_value(module, id, field)),
            None => Cow::Borrowed(&NULL),
        },
    }
}

fn scalar(kind: Kind, v: &Value) -> Scalar<'_> {
    let s = match kind {
        Kind::Id => v.as_str().and_then(|s| s.parse().ok()).map(Scalar::Id),
        Kind::Num => v.as_f64().map(Scalar::Num),
        Kind::Text => v.as_str().map(|s| Scalar::Text(Cow::Borrowed(s))),
        Kind::Date => v.as_str().and_then(parse_date).map(Scalar::Date),
        Kind::DateTime => v.as_str().and_then(parse_datetime).map(Scalar::Instant),
        Kind::Bool => v.as_bool().map(Scalar::Bool),
        Kind::Lookup => v.get("id").and_then(Value::as_str).and_then(|s| s.parse().ok()).map(Scalar::Id),
        Kind::Unsupported => None,
    };
    s.unwrap_or(Scalar::Null)
}

/// A record's value for `t` as COQL compares it, borrowing from the record where it can.
fn value_of<'a>(t: Target, kind: Kind, rec: &'a Map<String, Value>, store: &Store) -> Scalar<'a> {
    match raw(t, rec, store) {
        Cow::Borrowed(v) => scalar(kind, v),
        Cow::Owned(v) => scalar(kind, &v).into_owned(),
    }
}

fn literal(kind: Kind, lit: &Lit, field: &str, col: usize) -> Result<Scalar<'static>, CoqlError> {
    let bad = |why: &str| {
        CoqlError::invalid(
            format!("invalid value given for {field}: {why}"),
            json!({"column_name": field, "line": 1, "column": col}),
        )
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    match (kind, lit) {
        (_, Lit::Null) => Err(bad("use `is null` / `is not null` to test for empty values")),
        (Kind::Id | Kind::Lookup, Lit::Num(s) | Lit::Str(s)) if digits(s) => {
            s.parse().map(Scalar::Id).map_err(|_| bad("id out of range"))
        }
        (Kind::Id | Kind::Lookup, _) => Err(bad("expected a record id")),
        (Kind::Num, Lit::Num(s) | Lit::Str(s)) => {
            s.trim().parse().map(Scalar::Num).map_err(|_| bad("expected a number"))
        }
        (Kind::Text, Lit::Str(s) | Lit::Num(s)) => Ok(Scalar::Text(Cow::Owned(s.clone()))),
        (Kind::Date, Lit::Str(s)) => parse_date(s).map(Scalar::Date).ok_or_else(|| bad("expected a date 'YYYY-MM-DD'")),
        (Kind::DateTime, Lit::Str(s)) => parse_datetime(s)
            .map(Scalar::Instant)
            .ok_or_else(|| bad("expected an ISO 8601 datetime with offset, e.g. '2026-11-27T10:15:00+05:30'")),
        (Kind::Bool, Lit::Bool(b)) => Ok(Scalar::Bool(*b)),
        (Kind::Bool, Lit::Str(s)) if s == "true" || s == "false" => Ok(Scalar::Bool(s == "true")),
        (k, _) => Err(bad(&format!("wrong type of value for a {} field", k.name()))),
    }
}

enum Test {
    Cmp(&'static str, Scalar<'static>),
    In(bool, Vec<Scalar<'static>>),
    Between(bool, Scalar<'static>, Scalar<'static>),
    IsNull(bool),
    Like(bool, String),
}

enum CExpr {
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Cond(Target, Kind, Test),
}

fn op_not_supported(op: &str, field: &str, kind: Kind, col: usize) -> CoqlError {
    CoqlError::invalid(
        format!("operator `{op}` is not supported for {field} (a {} field)", kind.name()),
        json!({"column_name": field, "operator": op, "line": 1, "column": col}),
    )
}

fn compile(org: &Org, e: &Expr) -> Result<CExpr, CoqlError> {
    Ok(match e {
        Expr::And(a, b) => CExpr::And(Box::new(compile(org, a)?), Box::new(compile(org, b)?)),
        Expr::Or(a, b) => CExpr::Or(Box::new(compile(org, a)?), Box::new(compile(org, b)?)),
        Expr::Cond(c) => {
            let target = resolve(org, &c.field, c.col)?;
            let kind = kind_of(target);
            let ordered = matches!(kind, Kind::Id | Kind::Num | Kind::Date | Kind::DateTime);
            let f = c.field.as_str();
            let lit = |l: &Lit| literal(kind, l, f, c.col);
            if kind == Kind::Unsupported && !matches!(c.kind, CondKind::IsNull { .. }) {
                return Err(op_not_supported("criteria", f, kind, c.col));
            }
            let test = match &c.kind {
                CondKind::Cmp(op, l) => {
                    if !ordered && !matches!(*op, "=" | "!=") {
                        return Err(op_not_supported(op, f, kind, c.col));
                    }
                    Test::Cmp(op, lit(l)?)
                }
                CondKind::In { negated, values } => {
                    if kind == Kind::Bool {
                        return Err(op_not_supported("in", f, kind, c.col));
                    }
                    Test::In(*negated, values.iter().map(lit).collect::<Result<_, _>>()?)
                }
                CondKind::Between { negated, lo, hi } => {
                    if !ordered {
                        return Err(op_not_supported("between", f, kind, c.col));
                    }
                    Test::Between(*negated, lit(lo)?, lit(hi)?)
                }
                CondKind::IsNull { negated } => Test::IsNull(*negated),
                CondKind::Like { negated, pattern } => {
                    if kind != Kind::Text {
                        return Err(op_not_supported("like", f, kind, c.col));
                    }
                    Test::Like(*negated, pattern.to_lowercase())
                }
            };
            CExpr::Cond(target, kind, test)
        }
    })
}

/// `%`-wildcard match (Zoho documents 'x%', '%x' and '%x%'; any number of `%` works here).
fn like(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(p) => rest = &rest[p + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The smallest id a row can have to pass `e`, when `e` is a chain of `and`s holding `id > X` or `id >= X`
/// (keyset paging). Lets the executor start its scan there instead of at the first deal: a fast path, not a
/// semantic change — every row it yields still goes through `eval`.
fn id_lower_bound(e: &CExpr) -> Option<u64> {
    match e {
        CExpr::And(a, b) => match (id_lower_bound(a), id_lower_bound(b)) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
        CExpr::Cond(Target::Id, _, Test::Cmp(">", Scalar::Id(x))) => x.checked_add(1),
        CExpr::Cond(Target::Id, _, Test::Cmp(">=", Scalar::Id(x))) => Some(*x),
        _ => None,
    }
}

/// The `Modified_Time` range, bounds included, that holds every row passing `e`: a superset (a strict `>` gives
/// an inclusive bound, an `or` the hull of its sides), or `None` on a side `e` leaves open. Lets the executor
/// read only the rows of the store's `Modified_Time` index in that range instead of every deal: a fast path,
/// not a semantic change — every row it yields still goes through `eval`.
fn modified_range(e: &CExpr) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    match e {
        CExpr::And(a, b) => {
            let ((alo, ahi), (blo, bhi)) = (modified_range(a), modified_range(b));
            (alo.max(blo), ahi.min(bhi).or(ahi).or(bhi))
        }
        CExpr::Or(a, b) => {
            let ((alo, ahi), (blo, bhi)) = (modified_range(a), modified_range(b));
            (alo.and(blo).and(alo.min(blo)), ahi.and(bhi).and(ahi.max(bhi)))
        }
        CExpr::Cond(Target::Field(f), _, test) if f.api_name == MODIFIED_TIME => match test {
            Test::Cmp(">" | ">=", Scalar::Instant(x)) => (Some(*x), None),
            Test::Cmp("<" | "<=", Scalar::Instant(x)) => (None, Some(*x)),
            Test::Cmp("=", Scalar::Instant(x)) => (Some(*x), Some(*x)),
            Test::Between(false, Scalar::Instant(lo), Scalar::Instant(hi)) => (Some(*lo), Some(*hi)),
            _ => (None, None),
        },
        CExpr::Cond(..) => (None, None),
    }
}

/// The field the store indexes (see [`modified_range`]).
const MODIFIED_TIME: &str = "Modified_Time";

/// What a scan already knows of a row without reading its record: its id (the store's key) and, when the row
/// came from the `Modified_Time` index, that time and its `Stage`. A filter on them skips the record's map
/// and the datetime parse (the scan's cost at 200,000 deals); the values are the ones the record holds.
#[derive(Clone, Copy)]
struct Known<'a> {
    id: u64,
    indexed: Option<(DateTime<Utc>, Option<&'a str>)>,
}

/// The field the store's index carries next to `Modified_Time` (see [`Known`]).
const STAGE: &str = "Stage";

/// The live deal `id` if it passes `filter`. Rows the known values already refuse are dropped without reading
/// their record.
fn passing<'s>(filter: &CExpr, known: Known<'_>, store: &'s Store) -> Option<&'s Map<String, Value>> {
    if eval(filter, None, known, store) == Some(false) {
        return None;
    }
    let rec = store.deals().get(&known.id)?;
    eval(filter, Some(rec), known, store).unwrap_or(false).then_some(rec)
}

/// Whether a row passes `e`; with no record, `None` when the answer needs a value only the record holds.
fn eval(e: &CExpr, rec: Option<&Map<String, Value>>, known: Known<'_>, store: &Store) -> Option<bool> {
    match e {
        CExpr::And(a, b) => match eval(a, rec, known, store) {
            Some(false) => Some(false),
            left => match (left, eval(b, rec, known, store)) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
        },
        CExpr::Or(a, b) => match eval(a, rec, known, store) {
            Some(true) => Some(true),
            left => match (left, eval(b, rec, known, store)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        },
        CExpr::Cond(target, kind, test) => {
            let v = match (target, known.indexed) {
                (Target::Id, _) => Scalar::Id(known.id),
                (Target::Field(f), Some((t, _))) if f.api_name == MODIFIED_TIME => Scalar::Instant(t),
                (Target::Field(f), Some((_, stage))) if f.api_name == STAGE && *kind == Kind::Text => {
                    stage.map_or(Scalar::Null, |s| Scalar::Text(Cow::Borrowed(s)))
                }
                _ => value_of(*target, *kind, rec?, store),
            };
            Some(passes(&v, test))
        }
    }
}

/// Whether a value passes one condition's test.
fn passes(v: &Scalar<'_>, test: &Test) -> bool {
    if let Test::IsNull(negated) = test {
        return (*v == Scalar::Null) != *negated;
    }
    if *v == Scalar::Null {
        return false;
    }
    match test {
        Test::Cmp(op, lit) => match compare(v, lit) {
            Some(o) => match *op {
                "=" => o == Ordering::Equal,
                "!=" => o != Ordering::Equal,
                "<" => o == Ordering::Less,
                "<=" => o != Ordering::Greater,
                ">" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            },
            None => false,
        },
        Test::In(negated, list) => list.iter().any(|l| compare(v, l) == Some(Ordering::Equal)) != *negated,
        Test::Between(negated, lo, hi) => {
            let inside = compare(v, lo).is_some_and(|o| o != Ordering::Less)
                && compare(v, hi).is_some_and(|o| o != Ordering::Greater);
            inside != *negated
        }
        Test::Like(negated, pattern) => match v {
            Scalar::Text(t) => like(t, pattern) != *negated,
            _ => false,
        },
        Test::IsNull(_) => false,
    }
}

/// A selected field's value as COQL renders it: lookups as `{"name","id"}`, where a user's name is
/// only the last name (docs/zoho-api.md §3c, §3f; D-COQL7); dot-joins as the related field's value.
fn project(t: Target, rec: &Map<String, Value>, store: &Store) -> Value {
    match t {
        Target::Field(f) if matches!(f.ftype, FieldType::OwnerLookup | FieldType::UserLookup) => {
            match rec.get(f.api_name).and_then(|v| v.get("id")).and_then(Value::as_str) {
                Some(id) => {
                    let last = id.parse().ok().and_then(|id| store.user(id)).map(|u| u.last_name.clone());
                    json!({"name": last, "id": id})
                }
                None => Value::Null,
            }
        }
        Target::Field(f) if matches!(f.ftype, FieldType::Lookup(_)) => match rec.get(f.api_name) {
            Some(v) if v.is_object() => json!({"name": v.get("name"), "id": v.get("id")}),
            _ => Value::Null,
        },
        _ => raw(t, rec, store).into_owned(),
    }
}

/// Parses and runs one `select_query` against the store.
pub fn run(src: &str, store: &Store) -> Result<Outcome, CoqlError> {
    run_with(src, store, Options::default())
}

/// [`run`] with the endpoint's behaviour switches.
pub fn run_with(src: &str, store: &Store, options: Options) -> Result<Outcome, CoqlError> {
    let q = parse(src)?;
    if options.refuse_count_id {
        let count_id = |c: &Column| matches!(c, Column::Aggregate { func: Agg::Count, field, .. } if field == "id");
        if q.columns.iter().any(count_id) {
            // What Zoho answers is UNCONFIRMED; INVALID_QUERY naming the column is how it refuses other
            // columns a function cannot take, so a client keyed on "not 200" or on this code is tested.
            return Err(CoqlError::invalid(
                "COUNT is supported only for number, lookup and picklist fields",
                json!({"column_name": "id", "function": "COUNT"}),
            ));
        }
    }
    execute(&q, store)
}

fn execute(q: &Query, store: &Store) -> Result<Outcome, CoqlError> {
    if !q.module.eq_ignore_ascii_case("Deals") {
        return Err(CoqlError::invalid(
            format!("invalid module given: {} (the sandbox serves only Deals)", q.module),
            json!({"module": q.module}),
        ));
    }
    if q.columns.len() > MAX_COLUMNS {
        return Err(CoqlError::limit(
            format!("at most {MAX_COLUMNS} columns can be selected"),
            json!({"by": "columns", "limit": MAX_COLUMNS}),
        ));
    }
    let criteria = q.filter.criteria();
    if criteria > MAX_CRITERIA {
        return Err(CoqlError::limit(
            format!("at most {MAX_CRITERIA} criteria are allowed, got {criteria}"),
            json!({"by": "criteria", "limit": MAX_CRITERIA}),
        ));
    }
    if q.order.len() > MAX_ORDER_FIELDS {
        return Err(CoqlError::limit(
            format!("at most {MAX_ORDER_FIELDS} order by fields are allowed"),
            json!({"by": "order_by", "limit": MAX_ORDER_FIELDS}),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(CoqlError::limit(
            format!("limit exceeded: at most {MAX_LIMIT} records per query, got {limit}"),
            json!({"by": "limit", "limit": MAX_LIMIT}),
        ));
    }
    if limit == 0 {
        return Err(CoqlError::invalid("limit must be at least 1", json!({"by": "limit"})));
    }
    if q.offset.saturating_add(limit) > MAX_REACHABLE {
        return Err(CoqlError::limit(
            format!("offset + limit may not exceed {MAX_REACHABLE}"),
            json!({"by": "offset", "limit": MAX_REACHABLE}),
        ));
    }

    let aggregates = q.columns.iter().filter(|c| matches!(c, Column::Aggregate { .. })).count();
    if aggregates > 0 && aggregates < q.columns.len() {
        return Err(CoqlError::syntax(
            "aggregate functions cannot be mixed with plain columns (GROUP BY is not supported)",
            1,
            "select",
        ));
    }
    let mut selected = Vec::new();
    for (c, col) in q.columns.iter().zip(&q.column_cols) {
        let (name, func) = match c {
            Column::Field(n) => (n.as_str(), None),
            Column::Aggregate { field, func, key } => (field.as_str(), Some((*func, key.as_str()))),
        };
        let t = resolve(&store.org, name, *col)?;
        if let Some((func, _)) = func {
            if func != Agg::Count && kind_of(t) != Kind::Num {
                return Err(CoqlError::invalid(
                    format!("{name} is not a number field, so it cannot be aggregated"),
                    json!({"column_name": name}),
                ));
            }
        }
        selected.push((name, t, func));
    }
    let formulas = selected
        .iter()
        .filter(|(_, t, _)| matches!(t, Target::Field(FieldDef { ftype: FieldType::Formula(_), .. })))
        .count();
    if formulas > MAX_FORMULA_COLUMNS {
        return Err(CoqlError::limit(
            format!("at most {MAX_FORMULA_COLUMNS} formula fields can be selected in one query, got {formulas}"),
            json!({"by": "formula_fields", "limit": MAX_FORMULA_COLUMNS}),
        ));
    }
    let filter = compile(&store.org, &q.filter)?;
    let mut order = Vec::new();
    for (name, asc, col) in &q.order {
        let t = resolve(&store.org, name, *col)?;
        if kind_of(t) == Kind::Unsupported {
            return Err(op_not_supported("order by", name, Kind::Unsupported, *col));
        }
        order.push((t, kind_of(t), *asc));
    }

    let id_ascending = matches!(order.as_slice(), [(Target::Id, _, true)]) || order.is_empty();
    // Only the page (and one row more, for more_records) is ever needed in order.
    let wanted = q.offset.saturating_add(limit).saturating_add(1) as usize;
    let (after, before) = modified_range(&filter);
    let in_range = || {
        let bound = |t: Option<DateTime<Utc>>| t.map_or(Bound::Unbounded, Bound::Included);
        store.modified_between(bound(after), bound(before))
    };
    let indexed = after.is_some() || before.is_some();
    // The matching rows in id order, at most `take` of them.
    let matching = |take: usize| -> Vec<&Map<String, Value>> {
        let from = id_lower_bound(&filter).unwrap_or(0);
        if indexed {
            let mut ids: Vec<(u64, DateTime<Utc>, Option<&str>)> =
                in_range().map(|(&(t, id), stage)| (id, t, stage)).filter(|(id, ..)| *id >= from).collect();
            if aggregates == 0 {
                ids.sort_unstable_by_key(|(id, ..)| *id);
            }
            ids.iter()
                .filter_map(|&(id, t, stage)| passing(&filter, Known { id, indexed: Some((t, stage)) }, store))
                .take(take)
                .collect()
        } else {
            store
                .deals()
                .range(from..)
                .filter(|(id, rec)| eval(&filter, Some(rec), Known { id: **id, indexed: None }, store) == Some(true))
                .map(|(_, rec)| rec)
                .take(take)
                .collect()
        }
    };
    if aggregates == 0 && id_ascending {
        // Rows come in id order already: stop after the page (and one more row, for more_records).
        return Ok(page(matching(wanted), q.offset, limit, &selected, store));
    }
    // `order by Modified_Time asc, id asc` (or both desc) is the index's own order: walk it and stop after the
    // page, as a one-row probe deep into a window does.
    let index_order = match order.as_slice() {
        [(Target::Field(f), _, a), (Target::Id, _, b)] if f.api_name == MODIFIED_TIME && a == b => Some(*a),
        _ => None,
    };
    if let (0, true, Some(ascending)) = (aggregates, indexed, index_order) {
        let keep = |(&(t, id), stage): (&(DateTime<Utc>, u64), Option<&str>)| {
            passing(&filter, Known { id, indexed: Some((t, stage)) }, store)
        };
        let rows: Vec<&Map<String, Value>> = if ascending {
            in_range().filter_map(keep).take(wanted).collect()
        } else {
            in_range().rev().filter_map(keep).take(wanted).collect()
        };
        return Ok(page(rows, q.offset, limit, &selected, store));
    }
    let mut rows = matching(usize::MAX);

    if aggregates > 0 {
        let mut out = Map::new();
        for (name, t, func) in &selected {
            let Some((func, key)) = func else { continue };
            let kind = kind_of(*t);
            let vals: Vec<Scalar<'_>> =
                rows.iter().map(|r| value_of(*t, kind, r, store)).filter(|s| *s != Scalar::Null).collect();
            let nums = || {
                vals.iter().filter_map(|s: &Scalar<'_>| match *s {
                    Scalar::Num(n) => Some(n),
                    _ => None,
                })
            };
            let v = match func {
                Agg::Count => json!(vals.len()),
                Agg::Sum => json!(nums().sum::<f64>()),
                Agg::Avg if vals.is_empty() => Value::Null,
                Agg::Avg => json!(nums().sum::<f64>() / vals.len() as f64),
                Agg::Min => nums().reduce(f64::min).map_or(Value::Null, |n| json!(n)),
                Agg::Max => nums().reduce(f64::max).map_or(Value::Null, |n| json!(n)),
            };
            let _ = name;
            out.insert(key.to_string(), v);
        }
        // An aggregate always answers one row, even COUNT over nothing (UNCONFIRMED: Zoho may send 204).
        return Ok(Outcome { body: Some(json!({"data": [out], "info": {"count": 1, "more_records": false}})), limit });
    }

    if !order.is_empty() {
        // Keys are extracted once per row, then a stable sort over id order: ties fall back to
        // id ascending (Zoho leaves them unspecified). Rows already come in id order, so
        // `order by id asc` needs no sort at all.
        // The row's place in id order is the last key, so the order is total and an unstable sort is stable.
        let mut keyed: Vec<(Vec<Scalar<'_>>, usize, &Map<String, Value>)> = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let keys = order.iter().map(|(t, kind, _)| value_of(*t, *kind, r, store)).collect();
                (keys, i, r)
            })
            .collect();
        type Keyed<'r> = (Vec<Scalar<'r>>, usize, &'r Map<String, Value>);
        let cmp = |a: &Keyed<'_>, b: &Keyed<'_>| {
            for (i, (_, _, asc)) in order.iter().enumerate() {
                let o = sort_cmp(&a.0[i], &b.0[i]);
                let o = if *asc { o } else { o.reverse() };
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.1.cmp(&b.1)
        };
        // Only the page (and one row more, for more_records) needs its place: the rest is left unsorted, so a
        // one-row probe deep into a large result costs a selection, not a sort.
        if wanted < keyed.len() {
            keyed.select_nth_unstable_by(wanted, cmp);
            keyed.truncate(wanted);
        }
        keyed.sort_unstable_by(cmp);
        rows = keyed.into_iter().map(|(_, _, r)| r).collect();
    }
    Ok(page(rows, q.offset, limit, &selected, store))
}

/// A selected column: its name as written, what it reads, and its aggregate (function, result key) if any.
type Selected<'a> = (&'a str, Target, Option<(Agg, &'a str)>);

/// The `[offset, offset + limit)` slice of `rows` as COQL's answer; `rows` may stop one past the page (the
/// fast path) or hold every match.
fn page(rows: Vec<&Map<String, Value>>, offset: u64, limit: u64, selected: &[Selected<'_>], store: &Store) -> Outcome {
    let total = rows.len() as u64;
    let start = offset.min(total) as usize;
    let end = offset.saturating_add(limit).min(total) as usize;
    if start >= end {
        return Outcome { body: None, limit };
    }
    let data: Vec<Value> = rows[start..end]
        .iter()
        .map(|rec| {
            let mut m = Map::new();
            for (name, t, _) in selected {
                m.insert((*name).to_string(), project(*t, rec, store));
            }
            // COQL always returns the record id.
            m.insert("id".into(), rec.get("id").cloned().unwrap_or(Value::Null));
            Value::Object(m)
        })
        .collect();
    Outcome {
        body: Some(json!({
            "data": data,
            "info": {"count": end - start, "more_records": total > offset.saturating_add(limit)},
        })),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    #[test]
    fn like_wildcards() {
        assert!(like("Acme Corp - Renewal", "%renewal"));
        assert!(like("Acme Corp - Renewal", "acme%"));
        assert!(like("Acme Corp - Renewal", "%corp%"));
        assert!(like("Acme Corp - Renewal", "a%c%l"));
        assert!(!like("Acme", "%x%"));
        assert!(like("acme", "acme"));
        assert!(!like("ab", "a%b%b"));
    }

    #[test]
    fn credits_tiers() {
        assert_eq!((credits_for(200), credits_for(201), credits_for(1000), credits_for(2000)), (1, 2, 2, 3));
    }

    /// Every query shape the job sends (keyset pages of a window part, ties inside one second, one-row probes
    /// both ways, counts, the not-won pass), over random windows of a store that was mutated after it was
    /// generated: the `Modified_Time` index answers exactly what a scan of every deal answers. The same filter
    /// `or` a condition no row passes cannot be bounded, so it takes the full scan.
    #[test]
    fn an_indexed_scan_answers_exactly_what_a_full_scan_answers() {
        use crate::data::MutationRequest;
        use crate::rng::Rng;
        let tz = clock::offset(330).expect("tz");
        let now = clock::now();
        let mut store = Store::generate(3000, None, 17, tz, now);
        let later = now + chrono::Duration::seconds(5);
        let req = MutationRequest {
            win: 40,
            unwin: 30,
            delete: 20,
            edit: 30,
            create_won: 25,
            corrupt: 5,
            ..Default::default()
        };
        let done = store.mutate(&req, later);
        assert_eq!((done.win.len(), done.delete.len(), done.create_won.len()), (40, 20, 25));

        let mut times: Vec<chrono::DateTime<Utc>> = store.deals().values().filter_map(Store::modified_time).collect();
        times.sort_unstable();
        let ids: Vec<u64> = store.deals().keys().copied().collect();
        let fmt = |t: chrono::DateTime<Utc>| t.format("'%Y-%m-%dT%H:%M:%S+00:00'").to_string();
        let data = |q: &str| -> Vec<Value> {
            let out = run(q, &store).unwrap_or_else(|e| panic!("{q}: {e:?}"));
            out.body.map(|b| b["data"].as_array().cloned().unwrap_or_default()).unwrap_or_default()
        };
        let mut rng = Rng::new(5);
        let mut nonempty = 0;
        for round in 0..120 {
            let (a, b) = (rng.index(times.len()), rng.index(times.len()));
            let (start, end) = (fmt(times[a.min(b)]), fmt(times[a.max(b)]));
            let (tie_lo, tie_hi) = (ids[rng.index(ids.len())], ids[rng.index(ids.len())]);
            let stages = if round % 3 == 0 {
                "Stage not in ('Closed Won', 'Closed Won - Renewal')"
            } else {
                "Stage in ('Closed Won', 'Closed Won - Renewal')"
            };
            let lower = if round % 2 == 0 {
                format!("Modified_Time >= {start}")
            } else {
                format!("(Modified_Time > {start} or (Modified_Time = {start} and id >= {tie_lo}))")
            };
            let upper = if round % 4 < 2 {
                format!("Modified_Time < {end}")
            } else {
                format!("(Modified_Time < {end} or (Modified_Time = {end} and id < {tie_hi}))")
            };
            let after = ids[rng.index(ids.len() / 2)];
            let (limit, offset) = (1 + rng.index(300), rng.index(200));
            let dir = if round % 2 == 0 { "asc" } else { "desc" };
            let filters = [
                format!("(({stages} and {lower}) and ({upper} and id > {after}))"),
                format!("(({stages} and {lower}) and {upper})"),
                format!("Modified_Time between {start} and {end}"),
            ];
            let shapes = |f: &str| {
                vec![
                    format!("select id, Stage, Modified_Time from Deals where {f} order by id asc limit {limit}"),
                    format!("select id, Modified_Time from Deals where {f} order by Modified_Time {dir}, id {dir} limit {limit} offset {offset}"),
                    format!("select id from Deals where {f} order by Modified_Time {dir} limit {limit} offset {offset}"),
                    format!("select COUNT(id) from Deals where {f}"),
                ]
            };
            for f in &filters {
                let full = format!("({f} or Deal_Name = 'no deal is named this')");
                for (indexed, scanned) in shapes(f).iter().zip(shapes(&full)) {
                    let got = data(indexed);
                    nonempty += usize::from(!got.is_empty() && !indexed.contains("COUNT"));
                    assert_eq!(got, data(&scanned), "{indexed}");
                }
            }
        }
        assert!(nonempty > 100, "the random windows must select rows ({nonempty} did)");
    }

    #[test]
    fn datetime_literals_in_any_offset_select_the_same_rows() {
        let tz = clock::offset(330).expect("tz");
        let now = clock::now();
        let store = Store::generate(400, None, 9, tz, now);
        let cut = now - chrono::Duration::hours(6);
        let q = |lit: String| {
            run(&format!("select Modified_Time from Deals where Modified_Time >= '{lit}' limit 2000"), &store)
                .expect("runs")
                .body
                .map(|b| b["data"].as_array().map_or(0, Vec::len))
                .unwrap_or(0)
        };
        let utc = q(cut.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let ist = q(clock::fmt_datetime(cut, tz));
        let pdt = q(clock::fmt_datetime(cut, clock::offset(-420).expect("tz")));
        let expected = store.deals().values().filter(|m| Store::modified_time(m).is_some_and(|t| t >= cut)).count();
        assert!(expected > 0);
        assert_eq!((utc, ist, pdt), (expected, expected, expected));
    }
}
