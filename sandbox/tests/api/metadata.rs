//! Fields, pipeline, layouts and users metadata.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_deals;

#[tokio::test]
async fn stage_pick_list_has_renamed_won_and_two_lost_stages() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    assert_eq!(status, StatusCode::OK);
    let fields = v["fields"].as_array().expect("fields");
    let stage = fields.iter().find(|f| f["api_name"] == "Stage").expect("Stage");
    assert_eq!(stage["data_type"], "picklist");
    let vals = stage["pick_list_values"].as_array().expect("pick list");
    let won: Vec<&str> = vals
        .iter()
        .filter(|p| p["forecast_type"] == "Closed Won")
        .map(|p| p["actual_value"].as_str().expect("actual"))
        .collect();
    assert_eq!(won, vec!["Closed Won", "Closed Won - Renewal"]);
    let renamed = vals.iter().find(|p| p["actual_value"] == "Closed Won - Renewal").expect("renamed");
    assert_eq!(renamed["display_value"], "Won - Renewal");
    assert_eq!(vals.iter().filter(|p| p["forecast_type"] == "Closed Lost").count(), 2);
    let idm = vals.iter().find(|p| p["actual_value"] == "Id. Decision Makers").expect("idm");
    assert_eq!(idm["display_value"], "Identify Decision Makers");
    for p in vals {
        for k in [
            "display_value",
            "actual_value",
            "sequence_number",
            "probability",
            "id",
            "forecast_category",
            "deal_category",
        ] {
            assert!(!p[k].is_null(), "{k} missing in {p}");
        }
    }
    let custom: Vec<&Value> = fields.iter().filter(|f| f["custom_field"] == true).collect();
    assert!(custom.len() >= 2);
    assert!(custom.iter().all(|f| f["api_name"].as_str().is_some_and(|n| n.ends_with("__c"))));

    let (status, v) = sb.get(&tok, "/crm/v8/settings/fields?module=Accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["fields"].as_array().is_some_and(|f| !f.is_empty()));
    let (status, v) = sb.get(&tok, "/crm/v8/settings/fields?module=Nope").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_MODULE")));
}

#[tokio::test]
async fn pipeline_maps_come_from_the_layout_id() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.get(&tok, "/crm/v8/settings/layouts?module=Deals").await;
    assert_eq!(status, StatusCode::OK);
    let layout = v["layouts"][0]["id"].as_str().expect("layout id").to_string();
    let (status, v) = sb.get(&tok, &format!("/crm/v8/settings/pipeline?layout_id={layout}")).await;
    assert_eq!(status, StatusCode::OK);
    let p = &v["pipeline"][0];
    assert_eq!(p["default"], true);
    let maps = p["maps"].as_array().expect("maps");
    assert_eq!(maps.iter().filter(|m| m["forecast_type"] == "Closed Won").count(), 2);
    let (status, _) = sb.get(&tok, "/crm/v8/settings/pipeline?layout_id=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = sb.get(&tok, "/crm/v8/settings/pipeline").await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("REQUIRED_PARAM_MISSING")));
}

#[tokio::test]
async fn current_user_is_one_user_with_an_email() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);
    let users = v["users"].as_array().expect("users");
    assert_eq!(users.len(), 1);
    assert!(users[0]["email"].as_str().is_some_and(|e| e.contains('@')));
    assert!(users[0]["id"].is_string() && users[0]["full_name"].is_string());
}

#[tokio::test]
async fn org_names_its_zgid_and_edition() {
    // The official SDK reads `org[0].zgid` right after minting a token (fidelity fix, see README).
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.get(&tok, "/crm/v8/org").await;
    assert_eq!(status, StatusCode::OK);
    let org = &v["org"][0];
    assert!(org["zgid"].as_str().is_some_and(|z| !z.is_empty()));
    assert!(org["id"].is_string());
    assert!(org["license_details"]["paid_type"].is_string());
    assert!(org["primary_email"].as_str().is_some_and(|e| e.contains('@')));
}

#[tokio::test]
async fn every_module_a_deals_lookup_points_to_has_fields() {
    // The official SDK fetches field metadata for each lookup's module before parsing Get Records.
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (_, v) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    let modules: Vec<String> = v["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["lookup"]["module"]["api_name"].as_str().map(str::to_string))
        .collect();
    assert!(modules.iter().any(|m| m == "Campaigns"));
    for m in &modules {
        let (status, v) = sb.get(&tok, &format!("/crm/v8/settings/fields?module={m}")).await;
        assert_eq!(status, StatusCode::OK, "fields of {m}");
        assert!(v["fields"].as_array().is_some_and(|f| !f.is_empty()), "fields of {m}");
    }
}

#[tokio::test]
async fn modules_list_deals_and_its_lookup_modules_and_honour_if_modified_since() {
    // The official SDK with auto_refresh_fields=True lists modules, then fetches each one's fields.
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.get(&tok, "/crm/v8/settings/modules").await;
    assert_eq!(status, StatusCode::OK);
    let modules = v["modules"].as_array().expect("modules");
    for m in modules {
        assert_eq!(m["api_supported"], true);
        let name = m["api_name"].as_str().expect("api_name");
        let (status, _) = sb.get(&tok, &format!("/crm/v8/settings/fields?module={name}")).await;
        assert_eq!(status, StatusCode::OK, "fields of listed module {name}");
    }
    assert!(modules.iter().any(|m| m["api_name"] == "Deals"));
    let resp = reqwest::Client::new()
        .get(format!("{}/crm/v8/settings/modules", sb.base))
        .header("Authorization", format!("Zoho-oauthtoken {tok}"))
        .header("If-Modified-Since", "2020-01-01T00:00:00+00:00")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}
