//! COQL over HTTP: error envelopes, 204 on empty, instants across offsets, lookups, and keyset paging
//! that must return every won deal exactly once despite thousands of same-second ties.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_deals, won_ids};

const WON: &str = "('Closed Won', 'Closed Won - Renewal')";

fn ids(v: &Value) -> Vec<String> {
    v["data"].as_array().expect("data").iter().map(|r| r["id"].as_str().expect("id").to_string()).collect()
}

#[tokio::test]
async fn query_errors_use_zoho_error_envelopes() {
    let sb = spawn_deals(100).await;
    let tok = sb.token().await;
    let cases = [
        ("select id from Deals limit 10", "SYNTAX_ERROR"),
        ("select id from Deals where Amount ~ 5", "SYNTAX_ERROR"),
        ("select id from Deals where Amount == 5", "SYNTAX_ERROR"),
        ("select id from Deals where a = 1 and b = 2 and c = 3", "SYNTAX_ERROR"),
        ("select Bogus_Field from Deals where id > 0", "INVALID_QUERY"),
        ("select id from Deals where Bogus_Field = 'x'", "INVALID_QUERY"),
        ("select id from Leads where id > 0", "INVALID_QUERY"),
        ("select id from Deals where Modified_Time > '2026-11-27'", "INVALID_QUERY"),
        ("select id from Deals where Stage > 'Closed Won'", "INVALID_QUERY"),
        ("select id from Deals where id > 0 limit 2001", "LIMIT_EXCEEDED"),
        ("select id from Deals where id > 0 limit 2000 offset 98001", "LIMIT_EXCEEDED"),
        ("select id from Deals where id > 0 limit 99000, 1001", "LIMIT_EXCEEDED"),
    ];
    for (q, code) in cases {
        let (status, v) = sb.coql(&tok, q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["code"], code, "{q}: {v}");
        assert_eq!(v["status"], "error");
        assert!(v["message"].is_string() && v["details"].is_object(), "{v}");
    }
    let (_, v) = sb.coql(&tok, "select Bogus_Field from Deals where id > 0").await;
    assert!(v["message"].as_str().is_some_and(|m| m.contains("Bogus_Field")), "{v}");
    // offset + limit exactly 100000 is still allowed
    let (status, _) = sb.coql(&tok, "select id from Deals where id > 0 limit 2000 offset 98000").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn no_match_is_204_with_an_empty_body() {
    let sb = spawn_deals(100).await;
    let tok = sb.token().await;
    let resp = sb.coql_raw(&tok, "select id from Deals where Deal_Name = 'no such deal'").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn datetime_literals_compare_as_instants_in_any_offset() {
    let sb = spawn_deals(1500).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    let now = DateTime::parse_from_rfc3339(truth["now"].as_str().expect("now")).expect("now parses");
    let cut: DateTime<Utc> = (now - Duration::hours(7)).with_timezone(&Utc);
    let expected: BTreeSet<String> = truth["deals"]
        .as_array()
        .expect("deals")
        .iter()
        .filter(|d| DateTime::parse_from_rfc3339(d["Modified_Time"].as_str().expect("mt")).expect("mt parses") >= cut)
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect();
    assert!(!expected.is_empty());
    let offsets = [0, 330, -420, 345];
    let mut literals = vec![cut.format("%Y-%m-%dT%H:%M:%SZ").to_string()];
    for o in offsets {
        let tz = FixedOffset::east_opt(o * 60).expect("offset");
        literals.push(cut.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%:z").to_string());
    }
    for lit in literals {
        let (status, v) =
            sb.coql(&tok, &format!("select Modified_Time from Deals where Modified_Time >= '{lit}' limit 2000")).await;
        assert_eq!(status, StatusCode::OK, "{lit}: {v}");
        let got: BTreeSet<String> = ids(&v).into_iter().collect();
        assert_eq!(got, expected, "literal {lit}");
    }
}

#[tokio::test]
async fn keyset_paging_on_id_returns_every_won_deal_exactly_once() {
    let sb = spawn_deals(6000).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    let expected = won_ids(&truth);
    assert!(expected.len() > 2000, "needs more than one page");

    let mut got = Vec::new();
    let mut last = "0".to_string();
    for _ in 0..10 {
        let (status, v) = sb
            .coql(
                &tok,
                &format!("select Deal_Name, Stage, Modified_Time from Deals where (Stage in {WON} and id > {last}) order by id asc limit 2000"),
            )
            .await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(status, StatusCode::OK, "{v}");
        let page = ids(&v);
        assert_eq!(v["info"]["count"], page.len());
        last = page.last().expect("non-empty page").clone();
        got.extend(page);
        if v["info"]["more_records"] == false {
            break;
        }
    }
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates");
    got.sort();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn keyset_paging_on_modified_time_with_id_tie_break_survives_same_second_ties() {
    let sb = spawn_deals(4000).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    let expected = won_ids(&truth);
    // There are seconds shared by many won deals (mass updates).
    let mut per_second = std::collections::HashMap::<String, usize>::new();
    for d in truth["deals"].as_array().expect("deals") {
        if expected.binary_search(&d["id"].as_str().expect("id").to_string()).is_ok() {
            *per_second.entry(d["Modified_Time"].to_string()).or_default() += 1;
        }
    }
    assert!(per_second.values().any(|&n| n >= 20), "no heavy same-second tie");

    let mut got = Vec::new();
    let (mut t, mut id) = ("2000-01-01T00:00:00+00:00".to_string(), "0".to_string());
    for _ in 0..100 {
        let q = format!(
            "select Modified_Time from Deals where (Stage in {WON} and (Modified_Time > '{t}' or (Modified_Time = '{t}' and id > {id}))) order by Modified_Time asc, id asc limit 300"
        );
        let (status, v) = sb.coql(&tok, &q).await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(status, StatusCode::OK, "{v}");
        let rows = v["data"].as_array().expect("data");
        let lastrow = rows.last().expect("row");
        t = lastrow["Modified_Time"].as_str().expect("mt").to_string();
        id = lastrow["id"].as_str().expect("id").to_string();
        got.extend(ids(&v));
    }
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates");
    got.sort();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn count_lookups_and_literals_behave_like_zoho() {
    let sb = spawn_deals(3000).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    let deals = truth["deals"].as_array().expect("deals");
    let won = won_ids(&truth).len();

    let (status, v) = sb.coql(&tok, &format!("select COUNT(id) from Deals where Stage in {WON}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["data"][0]["COUNT(id)"], won);
    assert_eq!(v["info"]["count"], 1);

    // Lookups: Owner as {name: last name, id}; dotted keys as written.
    let d = deals.iter().find(|d| d["Account_Name"].is_object()).expect("a deal with an account");
    let id = d["id"].as_str().expect("id");
    let (_, v) = sb
        .coql(
            &tok,
            &format!("select Owner, Owner.email, Account_Name, Account_Name.Account_Name from Deals where id = '{id}'"),
        )
        .await;
    let row = &v["data"][0];
    assert_eq!(row["Owner"]["id"], d["Owner"]["id"]);
    let full = d["Owner"]["name"].as_str().expect("owner name");
    assert!(full.ends_with(row["Owner"]["name"].as_str().expect("last name")));
    assert_ne!(row["Owner"]["name"].as_str(), Some(full));
    assert_eq!(row["Owner.email"], d["Owner"]["email"]);
    assert_eq!(row["Account_Name.Account_Name"], d["Account_Name"]["name"]);
    assert_eq!(row["Account_Name"], d["Account_Name"]);

    // id compares numerically, quoted or bare.
    let (_, a) = sb.coql(&tok, &format!("select id from Deals where id >= {id} limit 2000")).await;
    let (_, b) = sb.coql(&tok, &format!("select id from Deals where id >= '{id}' limit 2000")).await;
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&a)[0], id);

    // Quotes inside literals are doubled; a backslash escapes nothing (its own test below).
    if let Some(d) = deals.iter().find(|d| d["Deal_Name"].as_str().is_some_and(|n| n.contains('\''))) {
        let name = d["Deal_Name"].as_str().expect("name");
        let lit = name.replace('\'', "''");
        let (status, v) =
            sb.coql(&tok, &format!("select Deal_Name from Deals where Deal_Name = '{lit}' limit 2000")).await;
        assert_eq!(status, StatusCode::OK, "{lit}: {v}");
        assert!(v["data"].as_array().expect("data").iter().all(|r| r["Deal_Name"] == name));
    }

    // Numbers, null tests, between, like.
    let big = deals.iter().filter(|d| d["Amount"].as_f64().is_some_and(|a| (1000.0..=5000.0).contains(&a))).count();
    let (_, v) = sb.coql(&tok, "select COUNT(id) from Deals where Amount between 1000 and 5000").await;
    assert_eq!(v["data"][0]["COUNT(id)"], big);
    let nulls = deals.iter().filter(|d| d["Amount"].is_null()).count();
    let (_, v) = sb.coql(&tok, "select COUNT(id) from Deals where Amount is null").await;
    assert_eq!(v["data"][0]["COUNT(id)"], nulls);
    let renewals =
        deals.iter().filter(|d| d["Deal_Name"].as_str().is_some_and(|n| n.to_lowercase().contains("renewal"))).count();
    let (_, v) = sb.coql(&tok, "select COUNT(id) from Deals where Deal_Name like '%RENEWAL%'").await;
    assert_eq!(v["data"][0]["COUNT(id)"], renewals);
}

#[tokio::test]
async fn default_limit_is_200_and_default_order_is_id_ascending() {
    let sb = spawn_deals(500).await;
    let tok = sb.token().await;
    let (_, v) = sb.coql(&tok, "select Stage from Deals where id > 0").await;
    let page = ids(&v);
    assert_eq!(page.len(), 200);
    assert_eq!(v["info"]["more_records"], true);
    let nums: Vec<u64> = page.iter().map(|s| s.parse().expect("numeric id")).collect();
    assert!(nums.windows(2).all(|w| w[0] < w[1]));
    let (_, v) = sb.coql(&tok, "select Stage from Deals where id > 0 limit 200 offset 400").await;
    assert_eq!(v["info"]["count"], 100);
    assert_eq!(v["info"]["more_records"], false);
}

#[tokio::test]
async fn quotes_are_doubled_and_a_backslash_escape_is_a_syntax_error() {
    let sb = spawn_deals(3000).await;
    let tok = sb.token().await;
    let truth = sb.truth().await;
    let deals = truth["deals"].as_array().expect("deals");
    let name = deals
        .iter()
        .filter_map(|d| d["Deal_Name"].as_str())
        .find(|n| n.contains('\'') && !n.contains('\\'))
        .expect("a deal name with an apostrophe");
    let expected = deals.iter().filter(|d| d["Deal_Name"] == name).count();

    let doubled = format!("select Deal_Name from Deals where Deal_Name = '{}'", name.replace('\'', "''"));
    let (status, v) = sb.coql(&tok, &doubled).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(expected));

    let backslashed = format!("select Deal_Name from Deals where Deal_Name = '{}'", name.replace('\'', "\\'"));
    let (status, v) = sb.coql(&tok, &backslashed).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("SYNTAX_ERROR")), "{v}");

    let (status, v) = sb.coql(&tok, "select id from Deals where Deal_Name = 'Partner\\'s deal'").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("SYNTAX_ERROR")), "{v}");
}

#[tokio::test]
async fn up_to_500_columns_and_100_in_values_are_accepted_and_one_more_is_limit_exceeded() {
    let sb = spawn_deals(50).await;
    let tok = sb.token().await;
    let cols = |n: usize| vec!["Deal_Name"; n].join(", ");
    let (status, v) = sb.coql(&tok, &format!("select {} from Deals where id > 0 limit 1", cols(500))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = sb.coql(&tok, &format!("select {} from Deals where id > 0 limit 1", cols(501))).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("LIMIT_EXCEEDED")), "{v}");

    let vals = |n: usize| (0..n).map(|i| format!("'Stage {i}'")).collect::<Vec<_>>().join(", ");
    for op in ["in", "not in"] {
        let (status, v) = sb.coql(&tok, &format!("select id from Deals where Stage {op} ({})", vals(100))).await;
        assert!(status == StatusCode::OK || status == StatusCode::NO_CONTENT, "{op} 100: {v}");
        let (status, v) = sb.coql(&tok, &format!("select id from Deals where Stage {op} ({})", vals(101))).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("LIMIT_EXCEEDED")), "{op} 101");
    }
}

#[tokio::test]
async fn a_column_this_org_lacks_is_invalid_query_naming_it_in_select_and_where() {
    let sb = spawn_deals(50).await;
    let tok = sb.token().await;
    for q in [
        "select Deal_Name, Margin__c from Deals where id > 0",
        "select Deal_Name from Deals where (id > 0 and Margin__c = 'x')",
        "select Deal_Name from Deals where id > 0 order by Margin__c",
    ] {
        let (status, v) = sb.coql(&tok, q).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY")), "{q}: {v}");
        assert_eq!(v["details"]["column_name"], "Margin__c", "{q}: {v}");
    }
}

#[tokio::test]
async fn count_of_id_works_until_the_knob_refuses_it_like_an_unsupported_column() {
    let sb = spawn_deals(50).await;
    let tok = sb.token().await;
    let (status, v) = sb.coql(&tok, "select COUNT(id) from Deals where id > 0").await;
    assert_eq!((status, &v["data"][0]["COUNT(id)"]), (StatusCode::OK, &serde_json::json!(50)));
    sb.control(serde_json::json!({"refuse_count_id": true})).await;
    let (status, v) = sb.coql(&tok, "select COUNT(id) from Deals where id > 0").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY")), "{v}");
    assert_eq!(v["details"]["column_name"], "id");
    let (status, v) = sb.coql(&tok, "select COUNT(Stage) from Deals where id > 0").await;
    assert_eq!(status, StatusCode::OK, "COUNT of a pick list still works: {v}");
}
