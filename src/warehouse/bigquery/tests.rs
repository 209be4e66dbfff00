//! Unit tests of the BigQuery warehouse that need no server.

use super::codec::{insert_id, INSERT_ID_MAX};
use super::sql::{
    SQL_DEDUPE, SQL_LEASE_RELEASE, SQL_LEASE_RENEW, SQL_QUARANTINE_UPSERT, SQL_RUN_COUNTS, SQL_STAGED_COUNTS,
    SQL_STAGE_INSERT, SQL_STAGING_TABLE,
};
use super::staging::{is_invalid_value, rows_param, staging_columns, staging_values, INSERT_MAX_BYTES};
use crate::deal::Deal;
use crate::warehouse::DEAL_COLUMNS;
use chrono::NaiveDate;
use gcp_bigquery_client::error::BQError;
use rust_decimal::Decimal;
use std::str::FromStr;

use super::client::check_credentials_file;
use super::*;
use chrono::TimeZone;
use gcp_bigquery_client::error::{NestedResponseError, ResponseError};

fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid") + chrono::Duration::seconds(s)
}

fn deal(id: &str) -> Deal {
    Deal {
        deal_id: id.into(),
        deal_name: Some("Acme".into()),
        stage: Some("Closed Won".into()),
        pipeline: None,
        amount: Some(Decimal::from_str("12500.10").expect("decimal")),
        currency: Some("EUR".into()),
        exchange_rate: Some(Decimal::from_str("1.1234567894").expect("decimal")),
        probability: Some(100),
        expected_revenue: None,
        closing_date: NaiveDate::from_ymd_opt(2026, 10, 31),
        account_id: None,
        account_name: None,
        contact_id: None,
        contact_name: None,
        owner_id: Some("o1".into()),
        owner_name: None,
        owner_email: None,
        lead_source: None,
        deal_type: None,
        created_time: Some(t(-86400)),
        modified_time: t(0),
        raw: r#"{"id":"1"}"#.into(),
        home: Default::default(),
        won: Default::default(),
        custom: Vec::new(),
    }
}

fn response_error(code: i64, reason: &str, message: &str) -> BQError {
    let mut m = HashMap::new();
    m.insert("reason".to_owned(), reason.to_owned());
    BQError::ResponseError {
        error: ResponseError {
            error: NestedResponseError { code, errors: vec![m], message: message.into(), status: String::new() },
        },
    }
}

/// The column names of the CREATE TABLE in `sql/closed_won_deals.sql`, in order.
fn ddl_columns(sql: &str) -> Vec<(String, String)> {
    let body = sql.split_once("closed_won_deals` (").map(|(_, b)| b).unwrap_or("");
    let body = body.split("\n)\n").next().unwrap_or("");
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or("").to_owned();
            let ty = words.next().unwrap_or("").trim_end_matches(',').to_owned();
            (name, ty)
        })
        .collect()
}

#[test]
fn the_table_ddl_has_exactly_the_catalogue_columns_in_order_each_with_a_description() {
    let expected: Vec<(String, String)> =
        DEAL_COLUMNS.iter().map(|c| (c.name.to_owned(), c.bigquery_type.to_owned())).collect();
    let ddl = SQL_DEALS_TABLE.replace("{{columns}}", &deal_columns_ddl());
    assert_eq!(ddl_columns(&ddl), expected);
    assert_eq!(ddl.matches("OPTIONS (description = '").count(), DEAL_COLUMNS.len() + 1, "{ddl}");
}

#[test]
fn string_literals_escape_quotes_and_backslashes() {
    assert_eq!(string_literal(r"Kick-off's \ at"), r"'Kick-off\'s \\ at'");
}

#[test]
fn every_template_renders_without_leftover_placeholders() {
    let (update_won, insert_columns, insert_values) = merge_column_lists(&[]);
    let vars = [
        ("staging", "_staging_x"),
        ("columns", "deal_id STRING"),
        ("staging_columns", "deal_id"),
        ("staging_values", "r.deal_id"),
        ("location", "US"),
        ("source", "SELECT 1"),
        ("update_won", update_won.as_str()),
        ("insert_columns", insert_columns.as_str()),
        ("insert_values", insert_values.as_str()),
    ];
    let all = [
        SQL_CREATE_DATASET,
        SQL_DEALS_TABLE,
        SQL_RUNS_TABLE,
        SQL_QUARANTINE_TABLE,
        SQL_QUARANTINE_RESOLVE,
        SQL_QUARANTINE_UPSERT,
        SQL_STAGING_TABLE,
        SQL_MERGE_SOURCE,
        SQL_MERGE,
        SQL_MERGE_COUNTS,
        SQL_MARK_DELETED,
        SQL_COUNT_WON,
        SQL_WON_IDS,
        SQL_HOLDS_DEALS,
        SQL_RUN_BEGIN,
        SQL_RUN_WINDOW,
        SQL_RUNS_ABANDONED,
        SQL_LEASE_TABLE,
        SQL_LEASE_SEED,
        SQL_LEASE_TAKE,
        SQL_LEASE_RENEW,
        SQL_LEASE_RELEASE,
        SQL_LEASE_HOLDER,
        SQL_STAGE_INSERT,
        SQL_STAGED_COUNTS,
        SQL_DEDUPE,
        SQL_RUN_SUCCEEDED,
        SQL_RUN_FAILED,
        SQL_RUN_COUNTS,
        SQL_SUCCEEDED_WINDOWS,
        SQL_LEDGER,
        SQL_FLAG_QUARANTINED,
        SQL_DEAL_FIELDS_TABLE,
        SQL_DEAL_FIELDS_UPSERT,
    ];
    for sql in all.iter().chain(SQL_VIEWS.iter().map(|(_, s)| s)) {
        // A multi-line value spliced into a comment would turn its later lines into SQL.
        for line in sql.lines().filter(|l| l.trim_start().starts_with("--")) {
            assert!(!line.contains("{{"), "placeholder in a comment: {line}");
        }
        let mut out = sql.replace("{{dataset}}", "p.d");
        for (k, v) in vars {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        assert!(!out.contains("{{"), "leftover placeholder in:\n{out}");
    }
}

#[test]
fn the_merge_updates_every_data_column_and_inserts_every_column() {
    let (update_won, insert_columns, insert_values) = merge_column_lists(&[]);
    assert!(update_won.contains("amount = s.amount") && update_won.contains("raw = s.raw"));
    assert!(!update_won.contains("deal_id =") && !update_won.contains("run_id ="));
    assert_eq!(insert_columns.split(", ").count(), DEAL_COLUMNS.len());
    assert_eq!(insert_values.split(", ").count(), DEAL_COLUMNS.len());
    assert!(insert_values.contains("@run_id") && insert_values.contains("s.modified_time"));
}

#[test]
fn a_won_change_stages_every_column_with_exact_money_and_rfc3339_times() {
    let row = staged_row("run-1", &DealChange::Won(deal("42")), &[]);
    let j = &row.json;
    assert_eq!(j["amount"], "12500.1");
    // NUMERIC keeps 9 places.
    assert_eq!(j["exchange_rate"], "1.123456789");
    assert_eq!(j["modified_time"], "2026-11-01T00:00:00.000000Z");
    assert_eq!(j["closing_date"], "2026-10-31");
    assert_eq!(j["probability"], 100);
    assert_eq!(j["raw"], r#"{"id":"1"}"#);
    assert_eq!(j["is_closed_won"], true);
    assert_eq!(j["is_deleted"], false);
    assert_eq!(j["change_kind"], "won");
    assert_eq!(j["run_id"], "run-1");
    for c in DEAL_COLUMNS.iter().filter(|c| !["deleted_time", "synced_at", "is_quarantined"].contains(&c.name)) {
        assert!(j.get(c.name).is_some(), "column {} not staged", c.name);
    }
    assert_eq!(row.insert_id, format!("won:42:{}", t(0).timestamp_micros()));
}

#[test]
fn unwon_and_deleted_changes_stage_only_what_they_know() {
    let unwon = staged_row(
        "r",
        &DealChange::Unwon { deal_id: "7".into(), stage: Some("Lost".into()), modified_time: t(5) },
        &[],
    );
    assert_eq!(unwon.json["is_closed_won"], false);
    assert_eq!(unwon.json["change_kind"], "unwon");
    assert!(unwon.json.get("amount").is_none());
    let deleted = staged_row("r", &DealChange::Deleted { deal_id: "7".into(), deleted_time: t(9) }, &[]);
    assert_eq!(deleted.json["is_deleted"], true);
    assert_eq!(deleted.json["deleted_time"], "2026-11-01T00:00:09.000000Z");
    assert!(deleted.json.get("modified_time").is_none());
    assert_ne!(unwon.insert_id, deleted.insert_id);
}

#[test]
fn insert_ids_are_stable_and_bounded() {
    assert_eq!(insert_id("won", "1", &t(0)), insert_id("won", "1", &t(0)));
    assert_ne!(insert_id("won", "1", &t(0)), insert_id("won", "1", &t(1)));
    let long = "9".repeat(300);
    let id = insert_id("won", &long, &t(0));
    assert!(id.len() <= INSERT_ID_MAX, "{id}");
    assert_ne!(id, insert_id("won", &"8".repeat(300), &t(0)));
}

#[test]
fn batches_respect_the_row_and_byte_limits() {
    let row = staged_row("r", &DealChange::Won(deal("1")), &[]);
    let rows = vec![row.clone(); 1201];
    let sizes: Vec<usize> = batches(&rows).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, vec![500, 500, 201]);
    let big = StagedRow { size: INSERT_MAX_BYTES / 2 + 1, ..row };
    let sizes: Vec<usize> = batches(&[big.clone(), big.clone(), big]).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, vec![1, 1, 1]);
    assert!(batches(&[]).is_empty());
}

#[test]
fn a_staged_row_becomes_one_struct_of_strings_cast_back_to_the_column_types() {
    let rows = vec![staged_row("r", &DealChange::Won(deal("42")), &[])];
    let p = rows_param(&rows, &[]);
    let value = p.parameter_value.expect("value").array_values.expect("array");
    let fields = value[0].struct_values.as_ref().expect("struct");
    assert_eq!(fields["amount"].value.as_deref(), Some("12500.1"));
    assert_eq!(fields["probability"].value.as_deref(), Some("100"));
    assert_eq!(fields["is_closed_won"].value.as_deref(), Some("true"));
    assert_eq!(fields["change_kind"].value.as_deref(), Some("won"));
    assert_eq!(fields["deleted_time"].value, None, "NULL stays NULL");
    let values = staging_values(&[]);
    assert!(values.contains("CAST(r.amount AS NUMERIC)") && values.contains("PARSE_JSON(r.raw)"), "{values}");
    assert!(values.contains("CAST(r.modified_time AS TIMESTAMP)") && values.ends_with("r.change_kind"));
    assert_eq!(staging_columns(&[]).split(", ").count(), DEAL_COLUMNS.len() + 1);
}

#[test]
fn a_bignumeric_column_is_staged_as_text_cast_to_bignumeric_and_read_back_digit_for_digit() {
    use crate::deal::{Cell, CellType, CustomValue, ExactDecimal};
    use crate::warehouse::columns::CustomColumn;
    let rate = ExactDecimal::parse("-1234.567890123456").expect("decimal");
    let custom = [CustomColumn { name: "unit_rate".into(), cell_type: CellType::BigDecimal }];
    let mut d = deal("42");
    d.custom = vec![CustomValue { column: "unit_rate".into(), value: Cell::BigDecimal(rate.clone()) }];
    let row = staged_row("r", &DealChange::Won(d), &custom);
    assert_eq!(row.json["unit_rate"], "-1234.567890123456", "a JSON string, never a number");
    let p = rows_param(&[row], &custom);
    let fields = p.parameter_value.and_then(|v| v.array_values).expect("array");
    let fields = fields[0].struct_values.as_ref().expect("struct");
    assert_eq!(fields["unit_rate"].value.as_deref(), Some("-1234.567890123456"));
    assert!(staging_values(&custom).contains("CAST(r.unit_rate AS BIGNUMERIC)"));
    // Canonical text, or the emulator's DECIMAL(38,18) text cast to STRING, padded to 18 places.
    for answer in ["-1234.567890123456", "-1234.567890123456000000"] {
        assert_eq!(codec::decode("unit_rate", CellType::BigDecimal, Some(answer)), Ok(Cell::BigDecimal(rate.clone())));
    }
    assert!(codec::decode("unit_rate", CellType::BigDecimal, Some("1.2.3")).is_err());
    assert_eq!(codec::select_expr("unit_rate", CellType::BigDecimal), "unit_rate");
}

#[test]
fn only_a_bad_value_splits_a_batch_not_a_broken_statement_or_a_missing_table() {
    assert!(is_invalid_value("Malformed JSON at byte 1 of input (HTTP 400, invalidQuery)"));
    assert!(is_invalid_value("Invalid NUMERIC value: 1e40 (HTTP 400, invalid)"));
    assert!(!is_invalid_value("Syntax error: Unexpected keyword (HTTP 400, invalidQuery)"));
    assert!(!is_invalid_value("Not found: Table p:d._staging_x (HTTP 404, notFound)"));
}

#[test]
fn a_transport_failure_keeps_the_request_id_and_a_failed_job_gets_a_new_one() {
    let t = Failure::transport("timed out");
    assert!(t.retryable && !t.new_request_id);
    for reason in ["backendError", "internalError", "rateLimitExceeded", "jobBackendError", "jobInternalError"] {
        let f = classify(response_error(400, reason, "The job encountered an error"), "merging");
        assert!(f.retryable, "{reason} is retried");
        assert!(f.new_request_id, "{reason} is retried with a new requestId");
    }
    let f = classify(
        response_error(400, "invalidQuery", "Could not serialize access to table p:d.t due to concurrent update"),
        "merging",
    );
    assert!(f.retryable && f.new_request_id);
    let f = classify(response_error(503, "", "Service unavailable"), "merging");
    assert!(f.retryable && f.new_request_id);
    for reason in ["invalidQuery", "accessDenied", "quotaExceeded", "notFound"] {
        let f = classify(response_error(400, reason, "no"), "merging");
        assert!(!f.retryable, "{reason} is not retried");
    }
}

#[test]
fn a_statement_stopped_by_the_cost_guard_is_a_configuration_error_naming_the_variable() {
    let f =
        classify(response_error(400, "bytesBilledLimitExceeded", "Query exceeded limit for bytes billed"), "merging");
    assert!(!f.retryable);
    match f.error {
        WarehouseError::Config(m) => assert!(m.contains("BQ_MAX_BYTES_BILLED"), "{m}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn job_labels_are_valid_label_values() {
    assert_eq!(label_value("3F2A-9c.x"), "3f2a-9c_x");
    assert_eq!(label_value(&"a".repeat(100)).len(), 63);
}

#[test]
fn errors_are_classified_once() {
    let f = classify(response_error(403, "accessDenied", "Access Denied: Table x"), "merging");
    assert!(matches!(f.error, WarehouseError::PermissionDenied { .. }) && !f.retryable);
    let f = classify(response_error(403, "rateLimitExceeded", "Exceeded rate limits"), "merging");
    assert!(matches!(f.error, WarehouseError::Unavailable { .. }) && f.retryable);
    let f = classify(response_error(503, "backendError", "Backend error"), "merging");
    assert!(matches!(f.error, WarehouseError::Unavailable { .. }) && f.retryable);
    let f = classify(
        response_error(400, "invalidQuery", "Could not serialize access to table t due to concurrent update"),
        "merging",
    );
    assert!(f.retryable);
    let f = classify(response_error(404, "notFound", "Not found: Table p:d.t"), "reading");
    assert!(f.not_found && !f.retryable);
    assert!(matches!(&f.error, WarehouseError::Other { .. }));
    let f = classify(response_error(400, "invalidQuery", "Syntax error"), "merging");
    assert!(matches!(f.error, WarehouseError::Other { .. }) && !f.retryable);
    let f = classify(BQError::NoToken, "connecting");
    assert!(matches!(f.error, WarehouseError::PermissionDenied { .. }));
}

#[test]
fn staging_table_names_are_identifiers() {
    let run = RunStart {
        run_id: "3f2a-9c.x".into(),
        kind: RunKind::Scheduled,
        started_at: t(0),
        window_start: t(0),
        window_end: t(1),
        lease_ttl: chrono::Duration::minutes(10),
    };
    let name = BigQueryWarehouse::staging_table(&run);
    assert_eq!(name, "_staging_3f2a_9c_x");
    assert!(is_identifier(&name));
}

#[test]
fn unusable_credential_files_are_configuration_errors_naming_the_variable() {
    let dir = tempfile_dir();
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        p
    };
    let wif = write("wif.json", r#"{"type":"external_account","audience":"//iam.googleapis.com/x"}"#);
    let imp = write("imp.json", r#"{"type":"impersonated_service_account"}"#);
    let sa = write("sa.json", r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----"}"#);
    let junk = write("junk.json", "not json");
    for (p, want) in [(&wif, "external_account"), (&imp, "impersonated_service_account"), (&junk, "no \"type\"")] {
        match check_credentials_file(Some(p.as_os_str())) {
            Err(WarehouseError::Config(m)) => {
                assert!(m.contains("GOOGLE_APPLICATION_CREDENTIALS") && m.contains(want), "{m}");
                assert!(!m.contains("PRIVATE KEY"));
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    assert!(check_credentials_file(Some(sa.as_os_str())).is_ok());
    assert!(check_credentials_file(None).is_ok());
    let missing = dir.join("absent.json");
    assert!(matches!(check_credentials_file(Some(missing.as_os_str())), Err(WarehouseError::Config(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scratch directory for one test (the lib has no tempfile dependency).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zds-bq-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create the scratch dir");
    dir
}

#[tokio::test]
async fn a_classified_failure_says_what_failed_then_each_cause_once_and_never_a_url() {
    use crate::error_chain::testing::{chain_without, refused_request};
    let e = refused_request("bigquery/v2/projects/p/queries?access_token=s3cr3t").await;
    let f = classify(BQError::RequestError(e), "merging");
    let shown = chain_without(&f.error, "s3cr3t");
    assert!(shown.starts_with("warehouse unavailable: merging: could not connect: "), "{shown}");
    assert!(!shown.contains("127.0.0.1"), "{shown}");
    let f = classify(response_error(403, "accessDenied", "Access Denied: Table x"), "merging");
    assert_eq!(
        chain_without(&f.error, "s3cr3t"),
        "warehouse permission denied: merging (grant BigQuery Data Editor on the dataset and BigQuery Job User on \
         the project): Access Denied: Table x (HTTP 403, accessDenied)"
    );
}

#[test]
fn a_timestamp_parameter_beyond_bigquerys_range_is_clamped_to_it() {
    use super::jobs::timestamp_text;
    assert_eq!(timestamp_text(&DateTime::<Utc>::MAX_UTC), "9999-12-31T23:59:59.999999Z");
    assert_eq!(timestamp_text(&DateTime::<Utc>::MIN_UTC), "0001-01-01T00:00:00.000000Z");
    let t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid");
    assert_eq!(timestamp_text(&t), "2026-11-01T00:00:00.000000Z");
}
