//! Custom fields as typed columns (issue 11): on the sandbox's `exotic` org (a custom field of every type), every
//! selectable custom field lands in its own typed column equal to the sandbox's value, `deal_fields` records
//! the fields and their columns, and a field added in Zoho between runs becomes a column with no loss. The same
//! tests run on SQLite and, when `BIGQUERY_EMULATOR_HOST` is set, on the BigQuery emulator.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use zoho_deals_sync::deal::{Cell, ExactDecimal};
use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;
use zoho_deals_sync::warehouse::StoredDeal;
use zoho_sandbox::{Profile, SandboxConfig};

use crate::helpers::{modified, next_second, TestApp};

/// One `deal_fields` row: (api_name, label, data_type, column_name, column_type, is_custom).
type FieldRow = (String, String, String, Option<String>, Option<String>, bool);

async fn exotic(deals: usize) -> TestApp {
    TestApp::spawn(SandboxConfig { deals, profile: Profile::Exotic, ..SandboxConfig::default() }).await
}

/// Every `deal_fields` row of whichever warehouse the app writes.
async fn deal_fields(app: &TestApp) -> Vec<FieldRow> {
    let sql = "SELECT api_name, label, data_type, column_name, column_type, is_custom FROM {t} ORDER BY api_name, column_name";
    match &app.bigquery {
        Some(bq) => {
            let w = BigQueryWarehouse::connect(bq.clone()).await.expect("emulator reachable");
            let rows = w.query_text(&sql.replace("{t}", "`{{dataset}}.deal_fields`")).await.expect("read deal_fields");
            rows.into_iter()
                .map(|r| {
                    let text = |i: usize| r.get(i).cloned().flatten();
                    (
                        text(0).unwrap_or_default(),
                        text(1).unwrap_or_default(),
                        text(2).unwrap_or_default(),
                        text(3),
                        text(4),
                        text(5).as_deref() == Some("true"),
                    )
                })
                .collect()
        }
        None => {
            let conn = rusqlite::Connection::open(&app.db).expect("open the SQLite file");
            let mut stmt = conn.prepare(&sql.replace("{t}", "deal_fields")).expect("prepare");
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, i64>(5)? != 0))
                })
                .expect("query")
                .collect::<Result<Vec<FieldRow>, _>>()
                .expect("read deal_fields");
            rows
        }
    }
}

fn column_of<'a>(fields: &'a [FieldRow], api_name: &str) -> Vec<(&'a str, &'a str)> {
    fields
        .iter()
        .filter(|f| f.0 == api_name)
        .filter_map(|f| Some((f.3.as_deref()?, f.4.as_deref().unwrap_or(""))))
        .collect()
}

/// Whether a stored cell equals the sandbox's JSON value for it.
fn same(cell: &Cell, truth: &Value) -> bool {
    match (cell, truth) {
        (Cell::Null, Value::Null) => true,
        (Cell::Text(s), Value::String(t)) => s == t,
        (Cell::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
        (Cell::Int(i), Value::String(t)) => t.parse::<i64>().ok() == Some(*i),
        (Cell::Decimal(d), Value::Number(n)) => Decimal::from_str(&n.to_string()).ok() == Some(*d),
        // Digit for digit: the sandbox's 12-place values are canonical text (no padding zeros).
        (Cell::BigDecimal(d), Value::Number(n)) => d.as_str() == n.to_string(),
        (Cell::Bool(b), Value::Bool(t)) => b == t,
        (Cell::Date(d), Value::String(t)) => NaiveDate::parse_from_str(t, "%Y-%m-%d").ok() == Some(*d),
        (Cell::Timestamp(x), Value::String(t)) => {
            DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc)) == Some(*x)
        }
        (Cell::TextList(v), Value::Array(t)) => {
            t.iter().map(Value::as_str).collect::<Vec<_>>() == v.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>()
        }
        _ => false,
    }
}

fn cell<'a>(row: &'a StoredDeal, column: &str) -> &'a Cell {
    row.deal
        .custom
        .iter()
        .find(|c| c.column == column)
        .map(|c| &c.value)
        .unwrap_or_else(|| panic!("column {column} not read back for {}", row.deal.deal_id))
}

/// Every custom column of every current won row equals the sandbox's value of its field; returns how many
/// non-NULL values were compared.
async fn assert_custom_columns_equal_the_sandbox(app: &TestApp, fields: &[FieldRow]) -> usize {
    let truth = app.truth().await;
    let stored = app.stored().await;
    let mut compared = 0;
    for row in stored.iter().filter(|r| r.is_closed_won && !r.is_deleted) {
        let t = truth.deals.iter().find(|d| d["id"] == json!(row.deal.deal_id)).expect("in the sandbox");
        if modified(t) != row.deal.modified_time {
            continue; // edited after the run
        }
        for f in fields.iter().filter(|f| f.5) {
            let Some(column) = f.3.as_deref() else { continue };
            let value = t.get(&f.0).cloned().unwrap_or(Value::Null);
            let expected = if column.ends_with("_id") && f.2.ends_with("lookup") {
                value.get("id").cloned().unwrap_or(Value::Null)
            } else if column.ends_with("_name") && f.2.ends_with("lookup") {
                value.get("name").cloned().unwrap_or(Value::Null)
            } else {
                value
            };
            let got = cell(row, column);
            assert!(
                same(got, &expected),
                "deal {} field {} column {column}: stored {got:?}, Zoho {expected}",
                row.deal.deal_id,
                f.0
            );
            compared += usize::from(*got != Cell::Null);
        }
    }
    compared
}

async fn every_selectable_custom_field_lands_typed_and_equal_to_the_sandbox(app: TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let fields = deal_fields(&app).await;
    for (api, column, ty) in [
        ("Partner_Code", "partner_code", "STRING"),
        ("Internal_Notes", "internal_notes", "STRING"),
        ("Billing_Email", "billing_email", "STRING"),
        ("Deal_Region", "deal_region", "STRING"),
        ("Languages_Known", "languages_known", "ARRAY<STRING>"),
        ("Seats", "seats", "INT64"),
        ("Account_Number_Long", "account_number_long", "INT64"),
        ("List_Price", "list_price", "NUMERIC"),
        ("Margin_Double", "margin_double", "NUMERIC"),
        ("Win_Probability_Pct", "win_probability_pct", "NUMERIC"),
        ("Is_Strategic", "is_strategic", "BOOL"),
        ("Go_Live_Date", "go_live_date", "DATE"),
        ("Kickoff_At", "kickoff_at", "TIMESTAMP"),
        ("Net_Amount_F", "net_amount_f", "NUMERIC"),
        // decimal_place 12 in the metadata: more than NUMERIC's 9.
        ("Unit_Rate", "unit_rate", "BIGNUMERIC"),
        ("Deal_Number", "deal_number", "STRING"),
        // SQL reserved words get the cf_ prefix.
        ("Order", "cf_order", "INT64"),
        ("External", "cf_external", "STRING"),
    ] {
        assert_eq!(column_of(&fields, api), vec![(column, ty)], "{api}");
    }
    assert_eq!(
        column_of(&fields, "Partner_Account"),
        vec![("partner_account_id", "STRING"), ("partner_account_name", "STRING")]
    );
    assert_eq!(column_of(&fields, "Technical_Owner").len(), 2, "a user lookup has id and name columns");
    // Standard fields are recorded with their standard columns, fields COQL cannot select with none.
    assert_eq!(column_of(&fields, "Amount"), vec![("amount", "")]);
    assert!(fields.iter().any(|f| f.0 == "Line_Items" && f.3.is_none() && f.5), "a subform has no column");
    assert!(fields.iter().any(|f| f.0 == "Kickoff_At" && f.1 == "Kick-off At"), "labels are recorded");
    let compared = assert_custom_columns_equal_the_sandbox(&app, &fields).await;
    assert!(compared > 100, "only {compared} custom values compared");
}

#[tokio::test]
async fn every_selectable_custom_field_lands_typed_and_equal_to_the_sandbox_on_sqlite() {
    every_selectable_custom_field_lands_typed_and_equal_to_the_sandbox(exotic(300).await).await;
}

#[tokio::test]
async fn every_selectable_custom_field_lands_typed_and_equal_to_the_sandbox_on_bigquery() {
    let Some(app) = exotic(120).await.on_bigquery("custom_typed") else { return };
    every_selectable_custom_field_lands_typed_and_equal_to_the_sandbox(app).await;
}

async fn a_field_added_between_runs_becomes_a_column_and_old_rows_keep_null(app: TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let before = app.stored().await;
    app.control(
        "/__sandbox/add-field",
        json!({"api_name": "Margin_Band", "data_type": "text", "label": "Margin Band"}),
    )
    .await;
    app.control("/__sandbox/add-field", json!({"api_name": "Renewal_Value", "data_type": "currency"})).await;
    app.control("/__sandbox/mutate", json!({"edit": 8, "create_won": 3})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());

    let fields = deal_fields(&app).await;
    assert_eq!(column_of(&fields, "Margin_Band"), vec![("margin_band", "STRING")]);
    assert_eq!(column_of(&fields, "Renewal_Value"), vec![("renewal_value", "NUMERIC")]);
    assert_eq!(fields.iter().filter(|f| f.0 == "Seats").count(), 1, "deal_fields is upserted, not appended");
    let after = app.stored().await;
    assert!(after.len() >= before.len(), "no row lost");
    for old in &before {
        let now = after.iter().find(|r| r.deal.deal_id == old.deal.deal_id).expect("row kept");
        if now.deal.modified_time == old.deal.modified_time {
            assert_eq!(cell(now, "margin_band"), &Cell::Null, "an untouched row keeps NULL");
            assert_eq!(
                now.deal.custom.iter().find(|c| c.column == "seats"),
                old.deal.custom.iter().find(|c| c.column == "seats")
            );
        }
    }
    let filled = after.iter().filter(|r| *cell(r, "margin_band") != Cell::Null).count();
    assert!(filled > 0, "rows modified after the field was added carry its value");
    assert_custom_columns_equal_the_sandbox(&app, &fields).await;
}

#[tokio::test]
async fn a_field_added_between_runs_becomes_a_column_and_old_rows_keep_null_on_sqlite() {
    a_field_added_between_runs_becomes_a_column_and_old_rows_keep_null(exotic(200).await).await;
}

#[tokio::test]
async fn a_field_added_between_runs_becomes_a_column_and_old_rows_keep_null_on_bigquery() {
    let Some(app) = exotic(100).await.on_bigquery("custom_added") else { return };
    a_field_added_between_runs_becomes_a_column_and_old_rows_keep_null(app).await;
}

/// A deal's history versions: (change, the `column` value as text), oldest first.
async fn history_of(app: &TestApp, id: &str, column: &str) -> Vec<(String, Option<String>)> {
    let sql = format!("SELECT change, {column} FROM {{t}} WHERE deal_id = '{id}' ORDER BY valid_from");
    match &app.bigquery {
        Some(bq) => {
            let w = BigQueryWarehouse::connect(bq.clone()).await.expect("emulator reachable");
            let rows = w
                .query_text(&sql.replace("{t}", "`{{dataset}}.closed_won_deals_history`"))
                .await
                .expect("read the history");
            rows.into_iter().map(|r| (r[0].clone().unwrap_or_default(), r[1].clone())).collect()
        }
        None => {
            let conn = rusqlite::Connection::open(&app.db).expect("open the SQLite file");
            let mut stmt = conn.prepare(&sql.replace("{t}", "closed_won_deals_history")).expect("prepare");
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<Result<Vec<(String, Option<String>)>, _>>()
                .expect("read the history");
            rows
        }
    }
}

async fn a_reconcile_after_a_field_was_added_declares_it_and_keeps_the_custom_values(app: TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    // Zoho gains a field, and a won deal with a region is un-won; reconcile runs before any sync.
    app.control("/__sandbox/add-field", json!({"api_name": "Margin_Band", "data_type": "text"})).await;
    let stored = app.stored().await;
    let x = stored
        .iter()
        .find(|r| r.is_closed_won && !r.is_deleted && matches!(cell(r, "deal_region"), Cell::Text(_)))
        .expect("a won deal with a region");
    let (id, region) = (x.deal.deal_id.clone(), cell(x, "deal_region").clone());
    app.control("/__sandbox/mutate", json!({"unwin": 1, "only": [id]})).await;
    next_second().await;
    let out = app.run(&["reconcile"]).await;
    assert_eq!(out.code, 0, "the reconcile succeeds: {}", out.all());

    let fields = deal_fields(&app).await;
    assert_eq!(column_of(&fields, "Margin_Band"), vec![("margin_band", "STRING")], "the new field is declared");
    let row = app.stored().await.into_iter().find(|r| r.deal.deal_id == id).expect("the row stays");
    assert!(!row.is_closed_won, "the reconcile un-won it");
    assert_eq!(cell(&row, "deal_region"), &region, "the row keeps its custom value");
    let Cell::Text(region) = region else { unreachable!("matched above") };
    assert_eq!(
        history_of(&app, &id, "deal_region").await,
        vec![("won".to_owned(), Some(region.clone())), ("unwon".to_owned(), Some(region))],
        "the un-won version copies the custom values"
    );
}

#[tokio::test]
async fn a_reconcile_after_a_field_was_added_declares_it_and_keeps_the_custom_values_on_sqlite() {
    a_reconcile_after_a_field_was_added_declares_it_and_keeps_the_custom_values(exotic(120).await).await;
}

#[tokio::test]
async fn a_reconcile_after_a_field_was_added_declares_it_and_keeps_the_custom_values_on_bigquery() {
    let Some(app) = exotic(80).await.on_bigquery("custom_reconcile") else { return };
    a_reconcile_after_a_field_was_added_declares_it_and_keeps_the_custom_values(app).await;
}

/// Every row of `quarantined_deals` of whichever warehouse the app writes.
async fn quarantined(app: &TestApp) -> Vec<zoho_deals_sync::warehouse::QuarantinedRow> {
    use zoho_deals_sync::warehouse::Warehouse;
    match &app.bigquery {
        Some(bq) => BigQueryWarehouse::connect(bq.clone())
            .await
            .expect("emulator reachable")
            .quarantined()
            .await
            .expect("read quarantined_deals"),
        None => app.warehouse().quarantined().await.expect("read quarantined_deals"),
    }
}

async fn a_custom_value_that_does_not_fit_its_column_quarantines_the_deal_until_a_readable_version(app: TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    // One stored won deal gets an Account_Number_Long (bigint → INT64) beyond 64 bits; three others are edited.
    let won: Vec<String> =
        app.stored().await.into_iter().filter(|r| r.is_closed_won && !r.is_deleted).map(|r| r.deal.deal_id).collect();
    let m = app.control("/__sandbox/mutate", json!({"misfit": 1, "edit": 3, "only": won})).await;
    let bad = m["misfit"][0].as_str().expect("a deal given a misfit value").to_owned();
    let edited: Vec<&str> = m["edit"].as_array().expect("ids").iter().filter_map(Value::as_str).collect();
    assert_eq!(edited.len(), 3);
    let at = DateTime::parse_from_rfc3339(m["modified_time"].as_str().expect("time")).expect("rfc3339");
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 8, "exit 8: a record was quarantined: {}", out.all());

    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&bad) && l.contains("quarantined"))
        .unwrap_or_else(|| panic!("no quarantine line for {bad}: {}", out.stderr));
    let log: Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(log["field"].as_str(), Some("Account_Number_Long"), "the log names the field: {log}");
    let kept = quarantined(&app).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!((kept[0].deal_id.as_str(), kept[0].field.as_str()), (bad.as_str(), "Account_Number_Long"));
    assert!(kept[0].reason.contains("18446744073709551617"), "the reason shows the value: {}", kept[0].reason);

    // The other deals of the run landed; the misfit deal keeps its older version, flagged.
    let stored = app.stored().await;
    for id in &edited {
        let row = stored.iter().find(|r| r.deal.deal_id == *id).expect("stored");
        assert_eq!(row.deal.modified_time, at, "the edit of {id} landed");
    }
    let row = stored.iter().find(|r| r.deal.deal_id == bad).expect("the misfit deal's row stays");
    assert!(row.is_quarantined && row.deal.modified_time < at, "an older version, flagged: {row:?}");

    // Zoho's next version of the deal is readable: the quarantine is over.
    let m = app.control("/__sandbox/mutate", json!({"refit": 1, "only": [bad]})).await;
    assert_eq!(m["refit"], json!([bad]));
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(quarantined(&app).await.is_empty(), "the quarantine is cleared");
    let stored = app.stored().await;
    let row = stored.iter().find(|r| r.deal.deal_id == bad).expect("stored");
    assert!(!row.is_quarantined);
    assert_eq!(cell(row, "account_number_long"), &Cell::Int(9_007_199_254_740_993));
}

#[tokio::test]
async fn a_custom_value_that_does_not_fit_its_column_quarantines_the_deal_until_a_readable_version_on_sqlite() {
    a_custom_value_that_does_not_fit_its_column_quarantines_the_deal_until_a_readable_version(exotic(120).await).await;
}

#[tokio::test]
async fn a_custom_value_that_does_not_fit_its_column_quarantines_the_deal_until_a_readable_version_on_bigquery() {
    let Some(app) = exotic(80).await.on_bigquery("custom_misfit") else { return };
    a_custom_value_that_does_not_fit_its_column_quarantines_the_deal_until_a_readable_version(app).await;
}

/// Every stored `unit_rate` as the warehouse holds it, by deal id: SQLite's text as stored (with its SQLite
/// type), BigQuery's as `CAST(… AS STRING)` answers it.
async fn stored_unit_rates(app: &TestApp) -> Vec<(String, String)> {
    match &app.bigquery {
        Some(bq) => {
            let w = BigQueryWarehouse::connect(bq.clone()).await.expect("emulator reachable");
            let sql = "SELECT deal_id, CAST(unit_rate AS STRING) FROM `{{dataset}}.closed_won_deals` \
                       WHERE unit_rate IS NOT NULL";
            let rows = w.query_text(sql).await.expect("read unit_rate");
            rows.into_iter().map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default())).collect()
        }
        None => {
            let conn = rusqlite::Connection::open(&app.db).expect("open the SQLite file");
            let mut stmt = conn
                .prepare(
                    "SELECT deal_id, unit_rate, typeof(unit_rate) FROM closed_won_deals WHERE unit_rate IS NOT NULL",
                )
                .expect("prepare");
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))
                .expect("query")
                .collect::<Result<Vec<(String, String, String)>, _>>()
                .expect("read unit_rate");
            rows.into_iter()
                .map(|(id, text, ty)| {
                    assert_eq!(ty, "text", "deal {id}: SQLite keeps the decimal as text, never a float");
                    (id, text)
                })
                .collect()
        }
    }
}

/// `Unit_Rate` has `decimal_place` 12 in Zoho's metadata, so it lands in a BIGNUMERIC column (exact text on
/// SQLite), and every value lands with all 12 places, equal to the sandbox's value digit for digit. NUMERIC
/// would have rounded each of them to 9 places (or, as before, quarantined the deal).
///
/// The sandbox's values have at most 3 integer digits and 12 places: within the emulator's BIGNUMERIC, which is
/// DuckDB's DECIMAL(38,18) (20 integer digits, 18 places; docs/bigquery.md), so the same test runs on both
/// warehouses. The emulator pads its text to 18 places, hence the comparison through `ExactDecimal` there;
/// SQLite's stored text is compared as it is.
async fn a_twelve_place_decimal_lands_digit_for_digit_where_numeric_would_round(app: TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let fields = deal_fields(&app).await;
    assert_eq!(column_of(&fields, "Unit_Rate"), vec![("unit_rate", "BIGNUMERIC")]);
    let truth = app.truth().await;
    let stored = stored_unit_rates(&app).await;
    assert!(stored.len() > 10, "only {} values stored", stored.len());
    for (id, text) in &stored {
        let t = truth.deals.iter().find(|d| d["id"] == json!(id)).expect("in the sandbox");
        let zoho = t["Unit_Rate"].to_string();
        let (_, places) = zoho.split_once('.').expect("a decimal");
        assert_eq!(places.len(), 12, "deal {id}: the sandbox sent 12 places ({zoho}), which NUMERIC would round");
        let kept = if app.bigquery.is_some() {
            ExactDecimal::parse(text).unwrap_or_else(|e| panic!("deal {id}: {text}: {e}")).as_str().to_owned()
        } else {
            text.clone()
        };
        assert_eq!(kept, zoho, "deal {id}: stored {text}, Zoho sent {zoho}");
    }
    // The job reads it back the same way.
    let rows = app.stored().await;
    let read: Vec<&Cell> = rows.iter().map(|r| cell(r, "unit_rate")).filter(|c| **c != Cell::Null).collect();
    assert_eq!(read.len(), stored.len());
    assert!(read.iter().all(|c| matches!(c, Cell::BigDecimal(d) if d.fraction_digits() == 12)), "{read:?}");
}

#[tokio::test]
async fn a_twelve_place_decimal_lands_digit_for_digit_where_numeric_would_round_on_sqlite() {
    a_twelve_place_decimal_lands_digit_for_digit_where_numeric_would_round(exotic(150).await).await;
}

#[tokio::test]
async fn a_twelve_place_decimal_lands_digit_for_digit_where_numeric_would_round_on_bigquery() {
    let Some(app) = exotic(100).await.on_bigquery("custom_bignumeric") else { return };
    a_twelve_place_decimal_lands_digit_for_digit_where_numeric_would_round(app).await;
}

async fn a_decimal_beyond_bignumeric_quarantines_the_deal_naming_the_field(app: TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let won: Vec<String> =
        app.stored().await.into_iter().filter(|r| r.is_closed_won && !r.is_deleted).map(|r| r.deal.deal_id).collect();
    let m = app.control("/__sandbox/mutate", json!({"misfit_decimal": 1, "edit": 2, "only": won})).await;
    let bad = m["misfit_decimal"][0].as_str().expect("a deal given 1e40").to_owned();
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 8, "exit 8: a record was quarantined: {}", out.all());
    let kept = quarantined(&app).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!((kept[0].deal_id.as_str(), kept[0].field.as_str()), (bad.as_str(), "Unit_Rate"));
    assert!(
        kept[0].reason.contains("BIGNUMERIC") && kept[0].reason.contains("41 digits before the point"),
        "the reason says what does not fit: {}",
        kept[0].reason
    );
    let stored = app.stored().await;
    let row = stored.iter().find(|r| r.deal.deal_id == bad).expect("the deal's older row stays");
    assert!(row.is_quarantined, "flagged while Zoho's newest version cannot be stored");
    for id in m["edit"].as_array().expect("ids").iter().filter_map(Value::as_str) {
        let edited = stored.iter().find(|r| r.deal.deal_id == id).expect("stored");
        assert!(!edited.is_quarantined, "the other deals of the run landed");
    }
}

#[tokio::test]
async fn a_decimal_beyond_bignumeric_quarantines_the_deal_naming_the_field_on_sqlite() {
    a_decimal_beyond_bignumeric_quarantines_the_deal_naming_the_field(exotic(100).await).await;
}

#[tokio::test]
async fn a_decimal_beyond_bignumeric_quarantines_the_deal_naming_the_field_on_bigquery() {
    let Some(app) = exotic(60).await.on_bigquery("custom_beyond_bignumeric") else { return };
    a_decimal_beyond_bignumeric_quarantines_the_deal_naming_the_field(app).await;
}
