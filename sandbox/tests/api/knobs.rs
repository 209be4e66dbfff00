//! Real-world knobs: deleted records the profile may not read, AUTHENTICATION_FAILURE instead of
//! INVALID_TOKEN, the credit-limit 429, the deleted-records retention, the users API and a field added at
//! run time.

use reqwest::StatusCode;
use serde_json::{json, Value};
use zoho_sandbox::{Faults, SandboxConfig};

use crate::helpers::{spawn, spawn_deals};

#[tokio::test]
async fn a_profile_without_the_deleted_records_permission_gets_403_no_permission() {
    let sb = spawn_deals(200).await;
    let tok = sb.token().await;
    assert_eq!(sb.get(&tok, "/crm/v8/Deals/deleted?type=all").await.0, StatusCode::OK);
    sb.control(json!({"deleted_forbidden": true})).await;
    let (status, v) = sb.get(&tok, "/crm/v8/Deals/deleted?type=all").await;
    assert_eq!(
        (status, v["code"].as_str(), v["status"].as_str()),
        (StatusCode::FORBIDDEN, Some("NO_PERMISSION"), Some("error"))
    );
    assert_eq!(
        sb.coql(&tok, "select id from Deals where id > 0 limit 1").await.0,
        StatusCode::OK,
        "only deleted records"
    );
}

#[tokio::test]
async fn the_token_error_knob_turns_invalid_token_into_authentication_failure() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    sb.post_json("/__sandbox/revoke-access-tokens", json!({})).await;
    let (status, v) = sb.coql(&tok, "select id from Deals where id > 0").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("INVALID_TOKEN")));
    sb.control(json!({"token_error_code": "AUTHENTICATION_FAILURE"})).await;
    let (status, v) = sb.coql(&tok, "select id from Deals where id > 0").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("AUTHENTICATION_FAILURE")), "{v}");
    let fresh = sb.token().await;
    assert_eq!(sb.coql(&fresh, "select id from Deals where id > 0").await.0, StatusCode::OK);
    let (status, _) = sb.post_json("/__sandbox/control", json!({"token_error_code": "EXPIRED"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only Zoho's two codes");
}

#[tokio::test]
async fn an_action_armed_for_the_nth_coql_call_hits_the_calls_after_it_and_not_the_call_itself() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let q = "select id from Deals where id > 0";
    // Refused before anything is armed: call 0, an unknown key, a knob that does not exist.
    for bad in [json!({"call": 0}), json!({"call": 2, "revoke": true}), json!({"call": 2, "control": {"nope": 1}})] {
        assert_eq!(sb.post_json("/__sandbox/on-coql-call", bad.clone()).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = sb.post_json("/__sandbox/on-coql-call", json!({"call": 2, "revoke_access_tokens": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sb.post_json("/__sandbox/on-coql-call", json!({"call": 4, "control": {"rate_500": 1.0}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sb.coql(&tok, q).await.0, StatusCode::OK, "call 1: nothing armed for it");
    assert_eq!(sb.coql(&tok, q).await.0, StatusCode::OK, "call 2 revokes, and was authenticated before");
    let (status, v) = sb.coql(&tok, q).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("INVALID_TOKEN")), "call 3: revoked");
    let fresh = sb.token().await;
    assert_eq!(sb.coql(&fresh, q).await.0, StatusCode::OK, "call 4 switches the 500s on, for the calls after it");
    let (status, v) = sb.coql(&fresh, q).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("INTERNAL_ERROR")), "call 5");
    assert_eq!(sb.stats().await["faults"]["500"], json!(1), "one 500 injected, to call 5");
    assert_eq!(sb.control(json!({})).await["rate_500"], json!(1.0), "fired once, and it stays on");
}

#[tokio::test]
async fn running_out_of_credits_names_the_24_hour_limit_unlike_the_concurrency_429() {
    let sb = spawn(SandboxConfig {
        deals: 10,
        faults: Faults { credits_per_day: 1, max_concurrency: 1, latency_ms: 1000, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let q = "select id from Deals where id > 0";
    let (a, b) = tokio::join!(sb.coql(&tok, q), sb.coql(&tok, q));
    let concurrency = [a, b].into_iter().find(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).expect("one 429").1;
    assert!(concurrency["message"].as_str().is_some_and(|m| m.contains("concurrency")), "{concurrency}");
    let (status, v) = sb.coql(&tok, q).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("TOO_MANY_REQUESTS")));
    assert!(v["message"].as_str().is_some_and(|m| m.contains("24 hour")), "{v}");
    assert_eq!(v["details"]["limit_type"], "api_credits_24h");
}

/// Every entry `GET /Deals/deleted` lists, page by page.
async fn listed(sb: &crate::helpers::TestSandbox, tok: String) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    for page in 1..=20 {
        let (status, v) = sb.get(&tok, &format!("/crm/v8/Deals/deleted?type=all&per_page=200&page={page}")).await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        all.extend(v["data"].as_array().expect("data").iter().cloned());
        if v["info"]["more_records"] != true {
            break;
        }
    }
    all
}

#[tokio::test]
async fn deleted_records_reach_back_60_and_120_days_while_the_truth_keeps_them_all() {
    let sb = spawn(SandboxConfig { deals: 3000, initially_deleted: Some(300), ..SandboxConfig::default() }).await;
    let tok = sb.token().await;
    assert_eq!(listed(&sb, tok.clone()).await.len(), 300, "without the knob every deletion is listed");
    sb.control(json!({"deleted_retention": true})).await;
    let truth = sb.truth().await;
    let now = chrono::DateTime::parse_from_rfc3339(truth["now"].as_str().expect("now")).expect("now parses");
    let age =
        |d: &Value| now - chrono::DateTime::parse_from_rfc3339(d["deleted_time"].as_str().expect("time")).expect("t");
    let expected = truth["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .filter(|d| age(d) <= chrono::Duration::days(if d["type"] == "permanent" { 120 } else { 60 }))
        .count();
    let visible = listed(&sb, tok.clone()).await;
    assert!(expected < 300 && expected > 0, "{expected}");
    assert_eq!(visible.len(), expected);
    assert!(visible.iter().all(|d| d["type"] == "permanent" || age(d) <= chrono::Duration::days(60)));

    sb.post_json("/__sandbox/clock", json!({"advance_secs": 121 * 86_400})).await;
    assert!(listed(&sb, tok).await.is_empty(), "nothing deleted in the last 120 days");
    assert_eq!(sb.truth().await["deleted"].as_array().map(Vec::len), Some(300));
}

#[tokio::test]
async fn the_users_api_pages_full_names_while_coql_gives_owners_last_names() {
    let sb = spawn_deals(100).await;
    let tok = sb.token().await;
    let mut users: Vec<Value> = Vec::new();
    for page in 1..=10 {
        let (status, v) = sb.get(&tok, &format!("/crm/v8/users?type=AllUsers&per_page=3&page={page}")).await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(v["info"]["per_page"], 3);
        users.extend(v["users"].as_array().expect("users").iter().cloned());
        if v["info"]["more_records"] != true {
            break;
        }
    }
    assert!(users.len() > 3, "several pages");
    let (status, _) = sb.get(&tok, "/crm/v8/users?type=AllUsers&per_page=201").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let truth = sb.truth().await;
    let d = &truth["deals"][0];
    let owner = users.iter().find(|u| u["id"] == d["Owner"]["id"]).expect("the owner is a user");
    assert_eq!(owner["full_name"], d["Owner"]["name"], "the truth carries the full name");
    let (_, v) = sb.coql(&tok, &format!("select Owner from Deals where id = {}", d["id"].as_str().expect("id"))).await;
    assert_eq!(v["data"][0]["Owner"]["name"], owner["last_name"]);
    assert!(owner["first_name"].is_string() && owner["email"].is_string());
    let (status, _) = {
        sb.control(json!({"missing_scope": "ZohoCRM.users.READ"})).await;
        sb.get(&tok, "/crm/v8/users?type=AllUsers").await
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the users API needs ZohoCRM.users.READ");
}

#[tokio::test]
async fn a_field_added_at_run_time_is_listed_selectable_and_filled_on_modified_records() {
    let sb = spawn_deals(300).await;
    let tok = sb.token().await;
    let (status, v) = sb.coql(&tok, "select Margin_Band from Deals where id > 0").await;
    assert_eq!((status, v["details"]["column_name"].as_str()), (StatusCode::BAD_REQUEST, Some("Margin_Band")));

    let (status, v) =
        sb.post_json("/__sandbox/add-field", json!({"api_name": "Margin_Band", "data_type": "integer"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["field"]["data_type"].as_str(), v["field"]["custom_field"].as_bool()), (Some("integer"), Some(true)));
    let (status, _) =
        sb.post_json("/__sandbox/add-field", json!({"api_name": "Margin_Band", "data_type": "text"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "names are unique");
    let (_, fields) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    assert!(fields["fields"].as_array().expect("fields").iter().any(|f| f["api_name"] == "Margin_Band"));

    let (_, m) = sb.post_json("/__sandbox/mutate", json!({"edit": 5, "create_won": 2})).await;
    let truth = sb.truth().await;
    let touched: Vec<&str> = m["edit"]
        .as_array()
        .expect("ids")
        .iter()
        .chain(m["create_won"].as_array().expect("ids"))
        .filter_map(Value::as_str)
        .collect();
    let deals = truth["deals"].as_array().expect("deals");
    for d in deals {
        let id = d["id"].as_str().expect("id");
        if touched.contains(&id) {
            assert!(d.get("Margin_Band").is_some(), "modified record {id} has the new field");
        } else {
            assert!(d.get("Margin_Band").is_none(), "untouched record {id} is as it was");
        }
    }
    let (status, v) = sb.coql(&tok, "select Margin_Band from Deals where Margin_Band is not null limit 2000").await;
    let with_value = deals.iter().filter(|d| d["Margin_Band"].is_number()).count();
    if with_value == 0 {
        assert_eq!(status, StatusCode::NO_CONTENT);
    } else {
        assert_eq!(v["data"].as_array().map(Vec::len), Some(with_value));
    }
}
