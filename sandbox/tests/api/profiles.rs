//! Org shapes: `free` (no multi-currency, no pipelines), `pipelines` (won stages only a second pipeline
//! maps, one with an apostrophe) and `exotic` (every custom field type, reserved-word names, hidden fields),
//! and the ground truth staying complete in every one of them.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use zoho_sandbox::{Faults, Profile, SandboxConfig};

use crate::helpers::{spawn, won_ids, TestSandbox};

async fn spawn_profile(profile: Profile, deals: usize) -> TestSandbox {
    spawn(SandboxConfig { deals, profile, ..SandboxConfig::default() }).await
}

fn field_names(v: &Value) -> Vec<String> {
    v["fields"].as_array().expect("fields").iter().filter_map(|f| f["api_name"].as_str().map(str::to_string)).collect()
}

/// A COQL string literal: the quote doubled, as Zoho wants it.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Every won deal id through COQL keyset paging on id, with the won stages in an `in` list.
async fn coql_won_ids(sb: &TestSandbox, tok: &str, won: &[String]) -> Vec<String> {
    let list = won.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    let mut last = "0".to_string();
    for _ in 0..100 {
        let q = format!("select Stage from Deals where (Stage in ({list}) and id > {last}) order by id asc limit 2000");
        let (status, v) = sb.coql(tok, &q).await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(status, StatusCode::OK, "{q}: {v}");
        let rows = v["data"].as_array().expect("data");
        out.extend(rows.iter().map(|r| r["id"].as_str().expect("id").to_string()));
        last = out.last().cloned().expect("a row");
        if v["info"]["more_records"] != true {
            break;
        }
    }
    out.sort();
    out
}

fn truth_won(truth: &Value) -> Vec<String> {
    truth["won_stages"].as_array().expect("won_stages").iter().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

#[tokio::test]
async fn a_free_org_has_no_currency_exchange_rate_or_pipeline_and_the_free_editions_limits() {
    let sb = spawn_profile(Profile::Free, 200).await;
    let tok = sb.token().await;
    let (_, v) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    let names = field_names(&v);
    for absent in ["Currency", "Exchange_Rate", "Pipeline"] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in metadata");
    }
    let truth = sb.truth().await;
    assert_eq!(truth["profile"], "free");
    for d in truth["deals"].as_array().expect("deals") {
        for absent in ["Currency", "Exchange_Rate", "Pipeline"] {
            assert!(d.get(absent).is_none(), "{absent} in record {}", d["id"]);
        }
    }
    for (q, column) in [
        ("select Deal_Name, Currency from Deals where id > 0", "Currency"),
        ("select Deal_Name from Deals where (id > 0 and Exchange_Rate > 1)", "Exchange_Rate"),
        ("select Deal_Name from Deals where Pipeline = 'Standard (Standard)'", "Pipeline"),
    ] {
        let (status, v) = sb.coql(&tok, q).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY")), "{q}: {v}");
        assert_eq!(v["details"]["column_name"], column, "{v}");
    }
    let (status, v) = sb.get(&tok, "/crm/v8/Deals?fields=Deal_Name,Currency").await;
    assert_eq!((status, v["details"]["api_name"].as_str()), (StatusCode::BAD_REQUEST, Some("Currency")), "{v}");

    let (_, layouts) = sb.get(&tok, "/crm/v8/settings/layouts?module=Deals").await;
    let layout = layouts["layouts"][0]["id"].as_str().expect("layout id").to_string();
    let (status, v) = sb.get(&tok, &format!("/crm/v8/settings/pipeline?layout_id={layout}")).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("FEATURE_NOT_ENABLED")), "{v}");

    let (_, org) = sb.get(&tok, "/crm/v8/org").await;
    assert_eq!(org["org"][0]["license_details"]["paid_type"], "free");
    let knobs = sb.control(json!({})).await;
    assert_eq!((knobs["credits_per_day"].as_u64(), knobs["max_concurrency"].as_u64()), (Some(5000), Some(5)));

    let overridden = spawn(SandboxConfig {
        deals: 10,
        profile: Profile::Free,
        faults: Faults { credits_per_day: 7, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(overridden.control(json!({})).await["credits_per_day"], 7, "an explicit allowance wins");
}

#[tokio::test]
async fn a_second_pipeline_maps_won_stages_the_top_level_stage_list_leaves_uncategorised() {
    let sb = spawn_profile(Profile::Pipelines, 800).await;
    let tok = sb.token().await;
    let (_, layouts) = sb.get(&tok, "/crm/v8/settings/layouts?module=Deals").await;
    let layout = layouts["layouts"][0]["id"].as_str().expect("layout id").to_string();
    let (status, v) = sb.get(&tok, &format!("/crm/v8/settings/pipeline?layout_id={layout}")).await;
    assert_eq!(status, StatusCode::OK);
    let pipelines = v["pipeline"].as_array().expect("pipelines");
    assert!(pipelines.len() >= 2);
    let won_in = |maps: &Value| -> BTreeSet<String> {
        maps.as_array()
            .expect("maps")
            .iter()
            .filter(|m| m["forecast_type"] == "Closed Won")
            .map(|m| m["actual_value"].as_str().expect("actual").to_string())
            .collect()
    };
    let secondary = pipelines.iter().find(|p| p["default"] == false).expect("a secondary pipeline");
    let secondary_won = won_in(&secondary["maps"]);
    assert!(secondary_won.contains("Won – Partner's") && secondary_won.contains("Partner Won"), "{secondary_won:?}");
    let standard_won = won_in(&pipelines.iter().find(|p| p["default"] == true).expect("default")["maps"]);
    assert!(standard_won.is_disjoint(&secondary_won));

    let (_, fields) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    let fields = fields["fields"].as_array().expect("fields");
    let stage = fields.iter().find(|f| f["api_name"] == "Stage").expect("Stage");
    let entry = stage["pick_list_values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|p| p["actual_value"] == "Won – Partner's")
        .expect("the apostrophe stage is in the top-level list");
    assert!(entry["forecast_type"].is_null() && entry["deal_category"].is_null(), "{entry}");
    let pipeline_field = fields.iter().find(|f| f["api_name"] == "Pipeline").expect("Pipeline");
    let from_field: BTreeSet<String> = pipeline_field["pick_list_values"]
        .as_array()
        .expect("values")
        .iter()
        .flat_map(|p| won_in(&p["maps"]))
        .collect();
    assert!(from_field.is_superset(&secondary_won), "Pipeline.pick_list_values[].maps[] lists the same stages");

    let truth = sb.truth().await;
    let won = truth_won(&truth);
    assert!(won.iter().any(|s| s == "Won – Partner's") && won.iter().any(|s| s == "Partner Won"), "{won:?}");
    let deals = truth["deals"].as_array().expect("deals");
    for s in ["Won – Partner's", "Partner Won", "Closed Won"] {
        assert!(deals.iter().any(|d| d["Stage"] == s), "no deal in {s}");
    }
    assert!(deals.iter().all(|d| d["Pipeline"].is_string()));
    let (status, v) = sb.coql(&tok, "select Stage from Deals where Stage = 'Won – Partner''s' limit 2000").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let expected = deals.iter().filter(|d| d["Stage"] == "Won – Partner's").count();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(expected));
    assert_eq!(coql_won_ids(&sb, &tok, &won).await, won_ids(&truth));
}

#[tokio::test]
async fn an_exotic_org_has_every_field_type_and_coql_refuses_what_zoho_refuses() {
    let sb = spawn_profile(Profile::Exotic, 300).await;
    let tok = sb.token().await;
    let (_, v) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    let fields = v["fields"].as_array().expect("fields");
    assert!(fields.len() >= 60, "{} fields", fields.len());
    let types: BTreeSet<&str> = fields.iter().filter_map(|f| f["data_type"].as_str()).collect();
    for t in [
        "text",
        "textarea",
        "email",
        "phone",
        "website",
        "picklist",
        "multiselectpicklist",
        "integer",
        "bigint",
        "currency",
        "double",
        "percent",
        "boolean",
        "date",
        "datetime",
        "lookup",
        "userlookup",
        "formula",
        "autonumber",
        "rollup_summary",
        "multiselectlookup",
        "fileupload",
        "imageupload",
        "subform",
    ] {
        assert!(types.contains(t), "no {t} field");
    }
    assert_eq!(fields.iter().filter(|f| f["data_type"] == "formula").count(), 7);
    let names = field_names(&v);
    assert!(!names.iter().any(|n| n == "Commission_Rate" || n == "Cost_Basis"), "hidden fields are not listed");

    let truth = sb.truth().await;
    assert_eq!(truth["hidden_fields"], json!(["Commission_Rate", "Cost_Basis"]));
    let deals = truth["deals"].as_array().expect("deals");
    let any = |f: &dyn Fn(&Value) -> bool| deals.iter().any(f);
    assert!(any(&|d| d["Languages_Known"].as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))));
    assert!(any(&|d| d["Partner_Account"]["name"].is_string() && d["Partner_Account"]["id"].is_string()));
    assert!(any(&|d| d["List_Price"].is_number()) && any(&|d| d["List_Price"].is_null()));
    assert!(any(&|d| d["Account_Number_Long"].as_str().is_some_and(|s| s.len() >= 16)));
    assert!(any(&|d| d["Line_Items"].as_array().is_some_and(|a| !a.is_empty())));
    assert!(deals.iter().all(|d| d.get("Commission_Rate").is_none() && d["Deal_Number"].is_string()));

    for (q, column) in [
        ("select Deal_Name, Related_Products from Deals where id > 0", "Related_Products"),
        ("select Signed_Contract from Deals where id > 0", "Signed_Contract"),
        ("select Logo from Deals where id > 0", "Logo"),
        ("select Deal_Name from Deals where Line_Items is not null", "Line_Items"),
    ] {
        let (status, v) = sb.coql(&tok, q).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY")), "{q}: {v}");
        assert_eq!(v["details"]["column_name"], column);
        assert!(v["message"].as_str().is_some_and(|m| m.contains("unsupported data type")), "{v}");
    }
    let formulas = ["Net_Amount_F", "Margin_Pct_F", "Days_To_Close_F", "Amount_Band_F", "Is_Large_F", "Renewal_Due_F"];
    let (status, v) = sb.coql(&tok, &format!("select {} from Deals where id > 0", formulas[..5].join(", "))).await;
    assert_eq!(status, StatusCode::OK, "five formula fields: {v}");
    let (status, v) = sb.coql(&tok, &format!("select {} from Deals where id > 0", formulas.join(", "))).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("LIMIT_EXCEEDED")), "six: {v}");

    let (status, v) = sb.coql(&tok, "select External from Deals where id > 0").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("SYNTAX_ERROR")), "{v}");
    let (status, v) = sb
        .coql(&tok, "select 'External', \"Order\", Deal_Name from Deals where 'External' is not null limit 2000")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for row in v["data"].as_array().expect("data") {
        let d = deals.iter().find(|d| d["id"] == row["id"]).expect("row in truth");
        assert_eq!((&row["External"], &row["Order"]), (&d["External"], &d["Order"]));
    }
    let (status, v) = sb.coql(&tok, "select Commission_Rate from Deals where id > 0").await;
    assert_eq!((status, v["details"]["column_name"].as_str()), (StatusCode::BAD_REQUEST, Some("Commission_Rate")));
    let (status, _) = sb.get(&tok, "/crm/v8/Deals?fields=Cost_Basis").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "hidden fields are unknown to Get Records too");

    // Technical_Owner is a user lookup: COQL gives the last name, the record the full name.
    let d = deals.iter().find(|d| d["Technical_Owner"].is_object()).expect("a technical owner");
    let id = d["id"].as_str().expect("id");
    let (_, v) = sb.coql(&tok, &format!("select Technical_Owner, Net_Amount_F from Deals where id = {id}")).await;
    let full = d["Technical_Owner"]["name"].as_str().expect("full name");
    let last = v["data"][0]["Technical_Owner"]["name"].as_str().expect("last name");
    assert!(full.ends_with(last) && full != last, "{full} / {last}");
    assert_eq!(v["data"][0]["Net_Amount_F"], d["Net_Amount_F"]);
}

#[tokio::test]
async fn every_profile_keeps_the_ground_truth_complete_through_mutations_and_skipped_nights() {
    for profile in [Profile::Default, Profile::Free, Profile::Pipelines, Profile::Exotic] {
        let sb = spawn_profile(profile, 600).await;
        let tok = sb.token().await;
        let before = sb.truth().await;
        let (status, m) = sb
            .post_json("/__sandbox/mutate", json!({"win": 5, "unwin": 3, "delete": 2, "edit": 3, "create_won": 4}))
            .await;
        assert_eq!(status, StatusCode::OK, "{profile:?}: {m}");
        for kind in ["win", "unwin", "delete", "edit", "create_won"] {
            assert!(!m[kind].as_array().expect("ids").is_empty(), "{profile:?}: nothing to {kind}");
        }
        let (status, _) = sb.post_json("/__sandbox/clock", json!({"advance_secs": 2 * 86_400})).await;
        assert_eq!(status, StatusCode::OK);
        sb.post_json("/__sandbox/mutate", json!({"win": 2, "create_won": 1})).await;

        let truth = sb.truth().await;
        let won = truth_won(&truth);
        assert_eq!(coql_won_ids(&sb, &tok, &won).await, won_ids(&truth), "{profile:?}");
        let deals = truth["deals"].as_array().expect("deals");
        let created = m["create_won"][0].as_str().expect("created id");
        let d = deals.iter().find(|d| d["id"] == created).expect("created deal in truth");
        assert!(won.iter().any(|s| d["Stage"] == s.as_str()), "{profile:?}: {}", d["Stage"]);
        let template = &before["deals"][0];
        let keys = |v: &Value| v.as_object().expect("record").keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(keys(d), keys(template), "{profile:?}: a created deal has every field the others have");
        let deleted: Vec<&str> =
            truth["deleted"].as_array().expect("deleted").iter().filter_map(|x| x["id"].as_str()).collect();
        for id in m["delete"].as_array().expect("ids") {
            assert!(deleted.contains(&id.as_str().expect("id")), "{profile:?}");
        }
    }
}
