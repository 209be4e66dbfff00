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

/// A client that shows redirects instead of following them (the user agent's view of the consent step).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client builds")
}

/// The query parameters of a redirect's `Location`, and the part before `?`.
fn location(resp: &reqwest::Response) -> (String, std::collections::HashMap<String, String>) {
    let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).expect("a Location header").to_string();
    let (target, query) = loc.split_once('?').expect("the redirect carries a query");
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    (target.to_string(), pairs.into_iter().collect())
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

fn authorize_url(sb: &crate::helpers::TestSandbox, client_id: &str, redirect: &str, extra: &str) -> String {
    format!(
        "{}?response_type=code&client_id={}&scope={}&redirect_uri={}&access_type=offline&state={}{extra}",
        sb.url("/oauth/v2/auth"),
        enc(client_id),
        enc("ZohoCRM.modules.deals.READ,ZohoCRM.coql.READ"),
        enc(redirect),
        enc("st4te/with spaces&more"),
    )
}

async fn exchange(sb: &crate::helpers::TestSandbox, code: &str, redirect: &str) -> (StatusCode, serde_json::Value) {
    sb.token_form(&[
        ("grant_type", "authorization_code"),
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", DEMO_CLIENT_SECRET),
        ("redirect_uri", redirect),
        ("code", code),
    ])
    .await
}

#[tokio::test]
async fn consent_redirects_with_a_single_use_code_the_state_and_zohos_multi_dc_parameters() {
    let sb = spawn_deals(10).await;
    let redirect = "http://127.0.0.1:45678/callback";
    let resp = no_redirects()
        .get(authorize_url(&sb, DEMO_CLIENT_ID, redirect, "&prompt=consent"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let (target, q) = location(&resp);
    assert_eq!(target, redirect);
    assert_eq!(q["state"], "st4te/with spaces&more");
    assert_eq!(q["location"], "us");
    assert_eq!(q["accounts-server"], sb.base);
    let code = q["code"].clone();
    assert!(code.starts_with("1000."), "{code}");

    let (status, v) = exchange(&sb, &code, redirect).await;
    assert_eq!(status, StatusCode::OK);
    let rt = v["refresh_token"].as_str().expect("offline access yields a refresh token").to_string();
    let tok = v["access_token"].as_str().expect("access token").to_string();
    assert_eq!(sb.get(&tok, "/crm/v8/users?type=CurrentUser").await.0, StatusCode::OK);

    let (status, again) = exchange(&sb, &code, redirect).await;
    assert_eq!((status, again), (StatusCode::OK, json!({"error": "invalid_code"})), "a code works once");

    let refresh = [
        ("grant_type", "refresh_token"),
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", DEMO_CLIENT_SECRET),
        ("refresh_token", rt.as_str()),
    ];
    let (_, v) = sb.token_form(&refresh).await;
    assert!(v["access_token"].is_string(), "the new refresh token mints: {v}");

    let url = format!("{}?token={}", sb.url("/oauth/v2/token/revoke"), enc(&rt));
    let (status, v) = body(sb.http.post(&url).send().await.expect("revoke")).await;
    assert_eq!((status, v), (StatusCode::OK, json!({"status": "success"})));
    assert_eq!(sb.token_form(&refresh).await.1, json!({"error": "invalid_code"}), "revoked");
    assert_eq!(sb.get(&tok, "/crm/v8/users?type=CurrentUser").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_code_exchanged_with_another_redirect_uri_is_refused_and_online_access_gets_no_refresh_token() {
    let sb = spawn_deals(10).await;
    let redirect = "http://localhost:8123/cb?keep=1";
    let resp = no_redirects().get(authorize_url(&sb, DEMO_CLIENT_ID, redirect, "")).send().await.expect("authorize");
    let (target, q) = location(&resp);
    assert_eq!(target, "http://localhost:8123/cb", "the redirect URI's own query is kept");
    assert_eq!(q["keep"], "1");
    let code = q["code"].clone();
    let (status, v) = exchange(&sb, &code, "http://localhost:8124/cb?keep=1").await;
    assert_eq!((status, v), (StatusCode::OK, json!({"error": "invalid_code"})));
    let (_, v) = exchange(&sb, &code, redirect).await;
    assert!(v["refresh_token"].is_string(), "a refused exchange does not burn the code: {v}");

    let online = authorize_url(&sb, DEMO_CLIENT_ID, redirect, "").replace("access_type=offline", "access_type=online");
    let resp = no_redirects().get(online).send().await.expect("authorize");
    let (_, q) = location(&resp);
    let (_, v) = exchange(&sb, &q["code"], redirect).await;
    assert!(v["access_token"].is_string(), "{v}");
    assert!(v.get("refresh_token").is_none(), "online access: {v}");
}

#[tokio::test]
async fn an_unknown_client_or_foreign_redirect_gets_an_error_page_and_no_redirect() {
    let sb = spawn_deals(10).await;
    let resp = no_redirects()
        .get(authorize_url(&sb, "1000.NOSUCHCLIENT", "http://127.0.0.1:9/cb", ""))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.expect("page").contains("invalid_client"));

    let resp = no_redirects()
        .get(authorize_url(&sb, DEMO_CLIENT_ID, "http://evil.example/cb", ""))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.expect("page").contains("invalid_redirect_uri"));
}

#[tokio::test]
async fn a_user_who_denies_consent_is_sent_back_with_access_denied_and_the_state() {
    let sb = spawn_deals(10).await;
    sb.control(json!({"oauth_deny": true})).await;
    let resp = no_redirects()
        .get(authorize_url(&sb, DEMO_CLIENT_ID, "http://127.0.0.1:7/cb", ""))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let (_, q) = location(&resp);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st4te/with spaces&more");
    assert!(!q.contains_key("code"));

    sb.control(json!({"oauth_deny": false})).await;
    let bad_type = authorize_url(&sb, DEMO_CLIENT_ID, "http://127.0.0.1:7/cb", "")
        .replace("response_type=code", "response_type=token");
    let (_, q) = location(&no_redirects().get(bad_type).send().await.expect("authorize"));
    assert_eq!(q["error"], "unsupported_response_type");
}
