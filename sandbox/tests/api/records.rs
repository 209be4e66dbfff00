//! Get Records (paging, page tokens, If-Modified-Since), deleted records, and mutations as seen
//! through truth, COQL and the deleted-records API.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use zoho_sandbox::SandboxConfig;

use crate::helpers::{spawn, spawn_deals, won_ids};

fn ids(v: &Value) -> Vec<String> {
    v["data"].as_array().expect("data").iter().map(|r| r["id"].as_str().expect("id").to_string()).collect()
}

#[tokio::test]
async fn get_records_pages_to_2000_then_continues_with_page_tokens() {
    let sb = spawn_deals(2300).await;
    let tok = sb.token().await;
    let base = "/crm/v8/Deals?fields=Deal_Name,Stage,Modified_Time&per_page=200&sort_by=id&sort_order=asc";
    let mut got = Vec::new();
    let mut token = None;
    for page in 1..=10 {
        let (status, v) = sb.get(&tok, &format!("{base}&page={page}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["info"]["count"], 200);
        assert_eq!(v["info"]["page"], page);
        assert_eq!(v["info"]["more_records"], true);
        assert!(v["data"][0]["Stage"].is_string());
        got.extend(ids(&v));
        token = v["info"]["next_page_token"].as_str().map(str::to_string);
    }
    let (status, v) = sb.get(&tok, &format!("{base}&page=11")).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("DISCRETE_PAGINATION_LIMIT_EXCEEDED")));

    let token = token.expect("a next_page_token after page 10");
    let (status, v) = sb.get(&tok, &format!("{base}&page=10&page_token={token}")).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("AMBIGUITY_DURING_PROCESSING")));
    let other = "/crm/v8/Deals?fields=Deal_Name,Stage,Modified_Time&per_page=200&sort_by=id&sort_order=desc";
    let (status, v) = sb.get(&tok, &format!("{other}&page_token={token}")).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("TOKEN_BOUND_DATA_MISMATCH")));

    let mut next = Some(token);
    while let Some(t) = next {
        let (status, v) = sb.get(&tok, &format!("{base}&page_token={t}")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        got.extend(ids(&v));
        next = v["info"]["next_page_token"].as_str().map(str::to_string);
        assert_eq!(next.is_some(), v["info"]["more_records"] == true);
    }
    assert_eq!(got.len(), 2300);
    let unique: BTreeSet<u64> = got.iter().map(|s| s.parse().expect("id")).collect();
    assert_eq!(unique.len(), 2300);
    let sorted: Vec<u64> = got.iter().map(|s| s.parse().expect("id")).collect();
    assert!(sorted.windows(2).all(|w| w[0] < w[1]), "ascending id order");
}

#[tokio::test]
async fn get_records_validates_its_parameters() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.get(&tok, "/crm/v8/Deals").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("REQUIRED_PARAM_MISSING")));
    let many: Vec<String> = (0..51).map(|i| format!("F{i}")).collect();
    let (status, v) = sb.get(&tok, &format!("/crm/v8/Deals?fields={}", many.join(","))).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("LIMIT_EXCEEDED")));
    let (status, _) = sb.get(&tok, "/crm/v8/Deals?fields=Stage&per_page=201").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = sb.get(&tok, "/crm/v8/Deals?fields=Stage&page_token=nope").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_DATA")));
    let (status, v) = sb.get(&tok, "/crm/v8/Deals?fields=Stage").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["info"]["sort_order"], "desc");
    let got: Vec<u64> = ids(&v).iter().map(|s| s.parse().expect("id")).collect();
    assert!(got.windows(2).all(|w| w[0] > w[1]), "default is id descending");
}

#[tokio::test]
async fn if_modified_since_filters_and_answers_304_when_nothing_changed() {
    let sb = spawn_deals(800).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    let now = truth["now"].as_str().expect("now");
    let resp = sb
        .http
        .get(sb.url("/crm/v8/Deals?fields=Modified_Time"))
        .header("Authorization", format!("Zoho-oauthtoken {tok}"))
        .header("If-Modified-Since", now)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(resp.bytes().await.expect("body").is_empty());

    let since = chrono::DateTime::parse_from_rfc3339(now).expect("now") - chrono::Duration::hours(3);
    let expected = truth["deals"]
        .as_array()
        .expect("deals")
        .iter()
        .filter(|d| chrono::DateTime::parse_from_rfc3339(d["Modified_Time"].as_str().expect("mt")).expect("mt") > since)
        .count();
    let resp = sb
        .http
        .get(sb.url("/crm/v8/Deals?fields=Modified_Time&sort_by=Modified_Time&sort_order=asc"))
        .header("Authorization", format!("Zoho-oauthtoken {tok}"))
        .header("If-Modified-Since", since.to_rfc3339())
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["info"]["count"], expected.min(200));
}

#[tokio::test]
async fn mutations_show_up_in_truth_coql_and_deleted_records() {
    let sb = spawn(SandboxConfig { deals: 600, initially_deleted: Some(0), ..SandboxConfig::default() }).await;
    let tok = sb.token().await;
    let (status, _) = sb.get(&tok, "/crm/v8/Deals/deleted?type=all").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before = sb.truth().await;
    let won_before = won_ids(&before);

    let (status, m) =
        sb.post_json("/__sandbox/mutate", json!({"win": 5, "unwin": 3, "delete": 2, "edit": 4, "create_won": 3})).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    let list = |k: &str| -> Vec<String> {
        m[k].as_array().expect("ids").iter().map(|s| s.as_str().expect("id").to_string()).collect()
    };
    let (win, unwin, delete, edit, create) =
        (list("win"), list("unwin"), list("delete"), list("edit"), list("create_won"));
    assert_eq!((win.len(), unwin.len(), delete.len(), edit.len(), create.len()), (5, 3, 2, 4, 3));
    let stamp = m["modified_time"].as_str().expect("modified_time");

    let after = sb.truth().await;
    let won_after = won_ids(&after);
    let by_id = |id: &str| after["deals"].as_array().expect("deals").iter().find(|d| d["id"] == id).cloned();
    for id in win.iter().chain(&create).chain(&edit) {
        assert!(won_after.contains(id), "{id} should be won");
        assert_eq!(by_id(id).expect("live")["Modified_Time"], stamp);
    }
    for id in &unwin {
        assert!(!won_after.contains(id));
        assert_eq!(by_id(id).expect("live")["Modified_Time"], stamp);
    }
    for id in &delete {
        assert!(by_id(id).is_none());
        assert!(won_before.contains(id));
        assert!(after["deleted"]
            .as_array()
            .expect("deleted")
            .iter()
            .any(|d| d["id"] == id.as_str() && d["deleted_time"] == stamp));
    }
    for id in &edit {
        let old = before["deals"].as_array().expect("deals").iter().find(|d| d["id"] == id.as_str()).expect("old");
        assert_ne!(old["Amount"], by_id(id).expect("live")["Amount"]);
    }
    assert_eq!(won_after.len(), won_before.len() + 5 - 3 - 2 + 3);

    // COQL sees the same world.
    let (_, v) = sb
        .coql(&tok, &format!("select id from Deals where (Stage in ('Closed Won', 'Closed Won - Renewal') and Modified_Time >= '{stamp}') limit 2000"))
        .await;
    let got: BTreeSet<String> = ids(&v).into_iter().collect();
    let want: BTreeSet<String> = win.iter().chain(&create).chain(&edit).cloned().collect();
    assert_eq!(got, want);

    // The deleted-records API lists the deletions, and If-Modified-Since keeps only newer ones.
    let (status, v) = sb.get(&tok, "/crm/v8/Deals/deleted?type=all&per_page=200").await;
    assert_eq!(status, StatusCode::OK);
    let del: BTreeSet<String> = ids(&v).into_iter().collect();
    assert_eq!(del, delete.iter().cloned().collect());
    assert_eq!(v["data"][0]["type"], "recycle");
    assert!(v["data"][0]["deleted_by"]["name"].is_string());
    let resp = sb
        .http
        .get(sb.url("/crm/v8/Deals/deleted?type=all"))
        .header("Authorization", format!("Zoho-oauthtoken {tok}"))
        .header("If-Modified-Since", stamp)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _) = sb.get(&tok, "/crm/v8/Deals/deleted?type=permanent").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn truth_holds_full_records_as_get_records_sends_them() {
    let sb = spawn_deals(300).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    assert_eq!(truth["won_stages"], json!(["Closed Won", "Closed Won - Renewal"]));
    let deals = truth["deals"].as_array().expect("deals");
    assert_eq!(deals.len(), 300);
    let d = &deals[0];
    for k in [
        "id",
        "Deal_Name",
        "Amount",
        "Stage",
        "Closing_Date",
        "Owner",
        "Modified_Time",
        "Region__c",
        "$currency_symbol",
        "Tag",
    ] {
        assert!(d.get(k).is_some(), "{k} missing");
    }
    assert!(d["Modified_Time"].as_str().expect("mt").ends_with("+05:30"));
    let fields = "Deal_Name,Amount,Stage,Owner,Modified_Time,Region__c,Account_Name";
    let (_, v) = sb.get(&tok, &format!("/crm/v8/Deals?fields={fields}&sort_by=id&sort_order=asc&per_page=1")).await;
    let rec = &v["data"][0];
    for k in fields.split(',') {
        assert_eq!(rec[k], d[k], "{k}");
    }
    assert_eq!(rec["id"], d["id"]);
}
