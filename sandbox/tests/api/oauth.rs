//! The accounts server: token minting, Zoho's HTTP-200 errors, the throttle, revocation, and what
//! happens on CRM routes to tokens that are missing, garbage, expired, revoked or short of a scope.

use reqwest::StatusCode;
use serde_json::json;
use zoho_sandbox::{Faults, SandboxConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_GRANT_CODE, DEMO_REFRESH_TOKEN};

use crate::helpers::{body, enc, spawn, spawn_deals};

#[tokio::test]
async fn refresh_grant_mints_a_bearer_token_whose_api_domain_is_the_sandbox() {
    let sb = spawn_deals(50).await;
    let (status, v) = sb.refresh().await;
    assert_eq!(status, StatusCode::OK);
    let tok = v["access_token"].as_str().expect("access_token");
    assert!(tok.starts_with("1000.") && tok.split('.').count() == 3, "{tok}");
    assert_eq!(v["api_domain"], sb.base.as_str());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v.get("refresh_token").is_none(), "refresh responses carry no refresh_token");

    // Query-string parameters (how Airbyte and Singer send them) work too.
    let url = format!(
        "{}?grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
        sb.url("/oauth/v2/token"),
        enc(DEMO_CLIENT_ID),
        enc(DEMO_CLIENT_SECRET),
        enc(DEMO_REFRESH_TOKEN)
    );
    let (status, v) = body(sb.http.post(url).send().await.expect("post")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["access_token"].is_string());
    assert_eq!(sb.stats().await["token_mints"], 2);
}

#[tokio::test]
async fn credential_and_grant_errors_come_back_with_http_200() {
    let sb = spawn_deals(10).await;
    let (status, v) = sb
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", "wrong"),
            ("refresh_token", DEMO_REFRESH_TOKEN),
        ])
        .await;
    assert_eq!((status, v), (StatusCode::OK, json!({"error": "invalid_client"})));

    let (status, v) = sb
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", "1000.not-a-token"),
        ])
        .await;
    assert_eq!((status, v), (StatusCode::OK, json!({"error": "invalid_code"})));

    let (status, v) = sb.token_form(&[("client_id", DEMO_CLIENT_ID), ("client_secret", DEMO_CLIENT_SECRET)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"], "invalid_request");
    assert!(v.get("access_token").is_none());
}

#[tokio::test]
async fn a_grant_code_works_once_and_yields_a_working_refresh_token() {
    let sb = spawn_deals(10).await;
    let exchange = |code: String| {
        let sb = &sb;
        async move {
            sb.token_form(&[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("code", &code),
            ])
            .await
        }
    };
    let (status, v) = exchange(DEMO_GRANT_CODE.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let rt = v["refresh_token"].as_str().expect("refresh_token").to_string();
    assert!(v["access_token"].is_string());

    let (status, again) = exchange(DEMO_GRANT_CODE.to_string()).await;
    assert_eq!((status, again), (StatusCode::OK, json!({"error": "invalid_code"})));

    let (_, v) = sb
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", &rt),
        ])
        .await;
    assert!(v["access_token"].is_string(), "{v}");

    let (_, fresh) = sb.post_json("/__sandbox/grant-code", json!({})).await;
    let (status, v) = exchange(fresh["code"].as_str().expect("code").to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["refresh_token"].is_string());
}

#[tokio::test]
async fn the_eleventh_mint_within_ten_minutes_is_throttled_with_400_access_denied() {
    let sb = spawn_deals(10).await;
    for i in 0..10 {
        let (status, v) = sb.refresh().await;
        assert_eq!(status, StatusCode::OK, "mint {i}: {v}");
    }
    let (status, v) = sb.refresh().await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v,
        json!({
            "error_description": "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied",
            "status": "failure"
        })
    );
    let stats = sb.stats().await;
    assert_eq!(stats["token_mints"], 10);
    assert_eq!(stats["token_throttled"], 1);
}

#[tokio::test]
async fn revoking_a_refresh_token_kills_it_and_its_access_tokens() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, _) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);

    let url = format!("{}?token={}", sb.url("/oauth/v2/token/revoke"), enc(DEMO_REFRESH_TOKEN));
    let (status, v) = body(sb.http.post(&url).send().await.expect("revoke")).await;
    assert_eq!((status, v), (StatusCode::OK, json!({"status": "success"})));

    let (status, v) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "INVALID_TOKEN");
    let (status, v) = sb.refresh().await;
    assert_eq!((status, v), (StatusCode::OK, json!({"error": "invalid_code"})));

    let (status, _) = body(sb.http.post(&url).send().await.expect("revoke again")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_sixteenth_access_token_invalidates_the_oldest() {
    let sb = spawn(SandboxConfig {
        deals: 10,
        faults: Faults { mint_limit: 100, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let mut toks = Vec::new();
    for _ in 0..16 {
        toks.push(sb.token().await);
    }
    let (status, _) = sb.get(&toks[0], "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = sb.get(&toks[1], "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn crm_calls_need_a_live_zoho_oauthtoken() {
    let sb = spawn_deals(10).await;
    let invalid = json!({"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token","status":"error"});

    let resp = sb
        .http
        .post(sb.url("/crm/v8/coql"))
        .json(&json!({"select_query": "select id from Deals where id > 0"}))
        .send()
        .await
        .expect("post");
    assert_eq!(body(resp).await, (StatusCode::UNAUTHORIZED, invalid.clone()));

    assert_eq!(
        sb.coql("1000.garbage.garbage", "select id from Deals where id > 0").await,
        (StatusCode::UNAUTHORIZED, invalid.clone())
    );

    let tok = sb.token().await;
    let resp = sb
        .http
        .get(sb.url("/crm/v8/settings/fields?module=Deals"))
        .header("Authorization", format!("Bearer {tok}"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "only the Zoho-oauthtoken scheme is accepted");

    let (status, _) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(sb.stats().await["unauthorized"].as_u64() >= Some(3));
}

#[tokio::test]
async fn a_token_stops_working_when_its_ttl_runs_out() {
    let sb = spawn(SandboxConfig {
        deals: 10,
        faults: Faults { token_ttl_secs: 1, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let (_, v) = sb.refresh().await;
    assert_eq!(v["expires_in"], 1);
    let tok = v["access_token"].as_str().expect("token").to_string();
    let (status, _) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (status, v) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "INVALID_TOKEN");
}

#[tokio::test]
async fn revoke_access_tokens_makes_the_next_call_401_and_a_fresh_mint_works() {
    let sb = spawn_deals(10).await;
    let tok = sb.token().await;
    let (status, v) = sb.post_json("/__sandbox/revoke-access-tokens", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["revoked"], 1);
    let (status, v) = sb.coql(&tok, "select id from Deals where id > 0").await;
    assert_eq!((status, &v["code"]), (StatusCode::UNAUTHORIZED, &json!("INVALID_TOKEN")));
    let tok = sb.token().await;
    let (status, _) = sb.coql(&tok, "select id from Deals where id > 0").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_scope_fails_only_the_routes_that_need_it() {
    let sb = spawn(SandboxConfig {
        deals: 10,
        faults: Faults { missing_scope: Some("ZohoCRM.coql.READ".into()), ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let (status, v) = sb.coql(&tok, "select id from Deals where id > 0").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "OAUTH_SCOPE_MISMATCH");
    assert_eq!(v["message"], "Unauthorized");
    assert_eq!(v["details"]["required_scope"], "ZohoCRM.coql.READ");
    let (status, _) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    assert_eq!(status, StatusCode::OK);

    sb.control(json!({"missing_scope": null})).await;
    let (status, _) = sb.coql(&tok, "select id from Deals where id > 0").await;
    assert_eq!(status, StatusCode::OK);
}
