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

use crate::deal::Deal;

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
    /// Zoho's `data_type`: `text`, `picklist`, `formula`, `multiselectlookup`, `fileupload`, `subform`, …
    pub data_type: String,
    /// A custom field (`custom_field: true`).
    pub custom: bool,
    /// `visible: false` marks a field the org has switched off; it is not selected.
    pub visible: bool,
    /// Pick-list values (Stage's carry their deal category; Pipeline's carry their stage `maps`).
    pub pick_list_values: Vec<PickListValue>,
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
                })
            })
            .collect(),
    )
}

/// The id of a record, if it has a readable one.
pub fn record_id(record: &Value) -> Option<String> {
    match record.get("id")? {
        Value::String(s) if is_id(s) => Some(s.clone()),
        Value::Number(n) if is_id(&n.to_string()) => Some(n.to_string()),
        _ => None,
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Maps one record (an element of a COQL or Get Records `data` array) to a [`Deal`].
pub fn to_deal(record: &Value) -> Result<Deal, Quarantined> {
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
        raw: serde_json::to_string(record).unwrap_or_default(),
        // Filled by `currencies::OrgCurrencies::apply` and the won-date step of the sync.
        home: Default::default(),
        won: Default::default(),
        deal_id,
    })
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
