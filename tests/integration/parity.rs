//! The same Zoho data synced into SQLite and into BigQuery (emulator) gives the same rows and the same answers
//! from the analyst views.

use std::collections::BTreeMap;

use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;
use zoho_deals_sync::warehouse::StoredDeal;

use crate::helpers::TestApp;

fn by_id(rows: Vec<StoredDeal>) -> BTreeMap<String, StoredDeal> {
    rows.into_iter().map(|r| (r.deal.deal_id.clone(), r)).collect()
}

fn cents(s: Option<String>) -> Option<i64> {
    s.map(|s| (s.parse::<f64>().expect("a number") * 100.0).round() as i64)
}

#[tokio::test]
async fn sqlite_and_bigquery_hold_the_same_deals_and_the_views_agree() {
    // Both sandboxes generate their deals' times back from the second they start in: they are started
    // together at the beginning of a second, so they hold the same deals to the second. On a loaded machine
    // the second one can start in the next second: then both are started again (a few times at most).
    let mut attempts = 0;
    let (lite, bq) = loop {
        crate::helpers::next_second().await;
        let (lite, bq) = tokio::join!(TestApp::with_deals(3000), TestApp::with_deals(3000));
        attempts += 1;
        if lite.truth().await.deals == bq.truth().await.deals || attempts == 3 {
            break (lite, bq);
        }
    };
    let Some(bq) = bq.on_bigquery("parity") else { return };
    for app in [&lite, &bq] {
        let out = app.run(&["sync", "--since", "150d"]).await;
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let (a, b) = (by_id(lite.stored().await), by_id(bq.stored().await));
    assert!(a.len() > 500);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "the same deal ids");
    for (id, x) in &a {
        let y = &b[id];
        let (mut dx, mut dy) = (x.deal.clone(), y.deal.clone());
        let (rx, ry): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&dx.raw).expect("json"), serde_json::from_str(&dy.raw).expect("json"));
        assert_eq!(rx, ry, "{id} raw");
        dx.raw.clear();
        dy.raw.clear();
        assert_eq!(dx, dy, "{id} columns");
        assert_eq!((x.is_closed_won, x.is_deleted), (y.is_closed_won, y.is_deleted), "{id} flags");
    }

    // The views.
    let cfg = bq.bigquery.clone().expect("bigquery");
    let warehouse = BigQueryWarehouse::connect(cfg).await.expect("emulator");
    let conn = rusqlite::Connection::open(&lite.db).expect("sqlite");
    let mut stmt = conn
        .prepare(
            "SELECT closing_month, owner_id, currency, deals, revenue FROM won_revenue_by_month_owner ORDER BY 1, 2, 3",
        )
        .expect("sqlite view");
    let lite_rows: Vec<(String, String, String, i64, Option<i64>)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                // Exact decimal text (no float on the way), compared in cents like BigQuery's NUMERIC below.
                cents(r.get::<_, Option<String>>(4)?),
            ))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let bq_rows: Vec<(String, String, String, i64, Option<i64>)> = warehouse
        .query_text(
            "SELECT CAST(closing_month AS STRING), owner_id, currency, deals, CAST(revenue AS STRING)
             FROM `{{dataset}}.won_revenue_by_month_owner` ORDER BY 1, 2, 3",
        )
        .await
        .expect("bigquery view")
        .into_iter()
        .map(|r| {
            let c = |i: usize| r[i].clone().unwrap_or_default();
            (c(0), c(1), c(2), c(3).parse().expect("count"), cents(r[4].clone()))
        })
        .collect();
    assert!(!lite_rows.is_empty());
    assert_eq!(lite_rows, bq_rows, "won revenue by month and owner");

    let lite_days: BTreeMap<String, i64> = conn
        .prepare("SELECT deal_id, days_to_close FROM time_to_close")
        .expect("view")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let bq_days: BTreeMap<String, i64> = warehouse
        .query_text("SELECT deal_id, days_to_close FROM `{{dataset}}.time_to_close`")
        .await
        .expect("view")
        .into_iter()
        .map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default().parse().expect("days")))
        .collect();
    assert_eq!(lite_days, bq_days, "time to close");
}
