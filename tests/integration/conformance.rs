//! The warehouse conformance suite: one set of behavioural tests, written once against the [`Warehouse`]
//! trait, run against every implementation — SQLite (a temporary file), BigQuery on the local emulator
//! (`BIGQUERY_EMULATOR_HOST`, see `scripts/bq-emulator.sh`), and, when asked, real BigQuery (`#[ignore]`d).
//!
//! Each test gets a fresh warehouse (its own file or dataset), so tests run in parallel and leave nothing
//! behind. What is tested is the contract in `src/warehouse/mod.rs`; implementation details (SQL, staging
//! layout) are not. Tests that only make sense for one implementation sit at the end.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use zoho_deals_sync::deal::{Cell, CellType, CustomValue, Deal, DealChange, ExactDecimal, FieldColumn};
use zoho_deals_sync::warehouse::bigquery::{BigQueryConfig, BigQueryWarehouse};
use zoho_deals_sync::warehouse::sqlite::SqliteWarehouse;
use zoho_deals_sync::warehouse::{
    QuarantinedRecord, RunKind, RunReport, RunStart, StoredDeal, Warehouse, WarehouseError, DEAL_COLUMNS,
};

/// What differs between the places a test runs, apart from the warehouse itself.
struct Env {
    /// A lease short enough to wait out in a test, long enough to outlive the few statements a run makes
    /// before the next run checks it (real BigQuery takes a second or two per statement).
    short_ttl: chrono::Duration,
}

/// What the suite needs beyond the trait: simulating a table left by an older version.
trait Backend: Warehouse {
    /// Creates `closed_won_deals` as an older version of the job would have: every column but `missing`.
    fn create_legacy_deals_table(&self, missing: &str) -> impl Future<Output = ()>;
    /// The column names of `closed_won_deals`.
    fn deal_columns(&self) -> impl Future<Output = Vec<String>>;
    /// Runs `sql` (`{{dataset}}.` before table names) and returns every cell as text.
    fn rows(&self, sql: &str) -> impl Future<Output = Vec<Vec<Option<String>>>>;
}

impl Backend for SqliteWarehouse {
    async fn create_legacy_deals_table(&self, missing: &str) {
        let cols = DEAL_COLUMNS
            .iter()
            .filter(|c| c.name != missing)
            .map(|c| {
                if c.name == "deal_id" {
                    "deal_id TEXT PRIMARY KEY".to_owned()
                } else {
                    format!("{} {}", c.name, c.sqlite_type)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let conn = rusqlite::Connection::open(self.path()).expect("open the SQLite file");
        conn.execute(&format!("CREATE TABLE closed_won_deals ({cols})"), []).expect("create the legacy table");
    }

    async fn deal_columns(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the SQLite file");
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('closed_won_deals')").expect("prepare");
        let names =
            stmt.query_map([], |r| r.get::<_, String>(0)).expect("query").collect::<Result<Vec<_>, _>>().expect("read");
        names
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        crate::helpers::sqlite_rows(self.path(), sql)
    }
}

impl Backend for BigQueryWarehouse {
    async fn create_legacy_deals_table(&self, missing: &str) {
        let cols = DEAL_COLUMNS
            .iter()
            .filter(|c| c.name != missing)
            .map(|c| format!("{} {}", c.name, c.bigquery_type))
            .collect::<Vec<_>>()
            .join(", ");
        // In the configured location: jobs run there, and would not find a dataset created elsewhere.
        let location = &self.config().location;
        self.query_text(&format!("CREATE SCHEMA IF NOT EXISTS `{{{{dataset}}}}` OPTIONS (location = '{location}')"))
            .await
            .expect("create the dataset");
        self.query_text(&format!(
            "CREATE TABLE `{{{{dataset}}}}.closed_won_deals` ({cols}) PARTITION BY DATE_TRUNC(closing_date, MONTH)"
        ))
        .await
        .expect("create the legacy table");
    }

    async fn deal_columns(&self) -> Vec<String> {
        self.table_columns("closed_won_deals").await.expect("read the schema")
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.query_text(sql).await.unwrap_or_else(|e| panic!("{e}\n{sql}"))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures: times, deals, runs.

/// A fixed instant plus `s` seconds: deal versions are whole seconds, as Zoho's are.
fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid date") + chrono::Duration::seconds(s)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

fn big(s: &str) -> ExactDecimal {
    ExactDecimal::parse(s).expect("decimal literal")
}

fn deal(id: &str, modified: i64) -> Deal {
    Deal {
        deal_id: id.to_owned(),
        deal_name: Some(format!("Deal {id}")),
        stage: Some("Closed Won".into()),
        pipeline: Some("Standard".into()),
        amount: Some(dec("12500.1")),
        currency: Some("EUR".into()),
        exchange_rate: Some(dec("1.085")),
        probability: Some(100),
        expected_revenue: Some(dec("12500.1")),
        closing_date: NaiveDate::from_ymd_opt(2026, 10, 30),
        account_id: Some("5725767000000100001".into()),
        account_name: Some("Acme GmbH".into()),
        contact_id: None,
        contact_name: None,
        owner_id: Some("5725767000000200001".into()),
        owner_name: Some("Ada Lovelace".into()),
        owner_email: Some("ada@example.com".into()),
        lead_source: Some("Web".into()),
        deal_type: Some("New Business".into()),
        created_time: Some(t(-30 * 86400)),
        modified_time: t(modified),
        raw: format!(r#"{{"id":"{id}","Stage":"Closed Won","Custom_Region__c":"EMEA","Nested":{{"a":[1,2]}}}}"#),
        home: Default::default(),
        won: Default::default(),
        custom: Vec::new(),
    }
}

fn won(id: &str, modified: i64) -> DealChange {
    DealChange::Won(deal(id, modified))
}

fn unwon(id: &str, modified: i64) -> DealChange {
    DealChange::Unwon { deal_id: id.to_owned(), stage: Some("Negotiation".into()), modified_time: t(modified) }
}

fn deleted(id: &str, at: i64) -> DealChange {
    DealChange::Deleted { deal_id: id.to_owned(), deleted_time: t(at) }
}

/// A run over `[start, end)` (seconds after [`t`]`(0)`). `started_at` is now: lease order follows it.
fn run(id: &str, start: i64, end: i64) -> RunStart {
    RunStart {
        run_id: id.to_owned(),
        kind: RunKind::Scheduled,
        started_at: Utc::now(),
        window_start: t(start),
        window_end: t(end),
        lease_ttl: chrono::Duration::minutes(10),
    }
}

/// Stages `changes` in one run and commits it.
async fn sync<W: Warehouse>(w: &W, r: &RunStart, changes: &[DealChange]) -> zoho_deals_sync::warehouse::MergeCounts {
    w.begin_run(r).await.expect("begin_run");
    w.stage(r, changes).await.expect("stage");
    w.commit(r, &report()).await.expect("commit")
}

fn report() -> RunReport {
    RunReport { api_calls: 3, api_credits: 3, ..RunReport::default() }
}

async fn stored<W: Warehouse>(w: &W) -> HashMap<String, StoredDeal> {
    w.stored_deals().await.expect("stored_deals").into_iter().map(|d| (d.deal.deal_id.clone(), d)).collect()
}

/// `raw` is compared as JSON: a warehouse may store JSON text re-serialized.
fn json(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("raw is not JSON ({e}): {raw}"))
}

fn assert_same_deal(stored: &Deal, expected: &Deal) {
    let strip = |d: &Deal| Deal { raw: String::new(), ..d.clone() };
    assert_eq!(strip(stored), strip(expected));
    assert_eq!(json(&stored.raw), json(&expected.raw), "raw of {}", expected.deal_id);
}

// ---------------------------------------------------------------------------------------------------------
// The behaviours.

async fn upsert_inserts_won_deals<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let r = run("r1", 0, 1000);
    let counts = sync(w, &r, &[won("1", 10), won("2", 20)]).await;
    assert_eq!((counts.upserted, counts.unwon, counts.deleted), (2, 0, 0));
    assert_eq!(counts.won_in_window, 2);

    let rows = stored(w).await;
    assert_eq!(rows.len(), 2);
    for (id, m) in [("1", 10), ("2", 20)] {
        let row = &rows[id];
        assert_same_deal(&row.deal, &deal(id, m));
        assert!(row.is_closed_won && !row.is_deleted);
        assert_eq!(row.deleted_time, None);
        assert_eq!(row.run_id, "r1");
    }
    let ledger = w.ledger().await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, "succeeded");
    assert_eq!(ledger[0].deals_upserted, 2);
}

async fn a_redelivered_batch_writes_no_duplicates<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let batch = [won("1", 10), won("2", 20), won("3", 30)];
    let r1 = run("r1", 0, 1000);
    w.begin_run(&r1).await.expect("begin_run");
    w.stage(&r1, &batch).await.expect("stage");
    // The same batch again (a retry after a lost acknowledgement).
    w.stage(&r1, &batch).await.expect("stage again");
    let counts = w.commit(&r1, &report()).await.expect("commit");
    assert_eq!(counts.upserted, 3);
    let first = stored(w).await;
    assert_eq!(first.len(), 3);

    // The same window again in a new run.
    let r2 = run("r2", 0, 1000);
    sync(w, &r2, &batch).await;
    let second = stored(w).await;
    assert_eq!(second.len(), 3);
    for (id, row) in &second {
        assert_same_deal(&row.deal, &first[id].deal);
    }
    assert_eq!(w.count_won_in_window(t(0), t(1000)).await.expect("count"), 3);
}

async fn an_older_version_never_overwrites_a_newer_one<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let mut newer = deal("1", 100);
    newer.amount = Some(dec("200"));
    sync(w, &run("r1", 0, 1000), &[DealChange::Won(newer.clone())]).await;

    let mut older = deal("1", 50);
    older.amount = Some(dec("50"));
    let counts = sync(w, &run("r2", 0, 1000), &[DealChange::Won(older)]).await;
    assert_eq!(counts.upserted, 0);
    let rows = stored(w).await;
    assert_same_deal(&rows["1"].deal, &newer);
    assert_eq!(rows["1"].run_id, "r1");
}

async fn an_equal_version_is_applied_again<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 1000), &[won("1", 100)]).await;
    let mut same_time = deal("1", 100);
    same_time.deal_name = Some("Renamed".into());
    let counts = sync(w, &run("r2", 0, 1000), &[DealChange::Won(same_time.clone())]).await;
    assert_eq!(counts.upserted, 1);
    let rows = stored(w).await;
    assert_same_deal(&rows["1"].deal, &same_time);
    assert_eq!(rows["1"].run_id, "r2");
}

async fn the_newest_version_in_a_batch_wins_whatever_the_order<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let mut v2 = deal("1", 200);
    v2.amount = Some(dec("2"));
    let mut v1 = deal("1", 100);
    v1.amount = Some(dec("1"));
    // Won and un-won versions at the same instant: the won one wins.
    let changes = [DealChange::Won(v2.clone()), DealChange::Won(v1), unwon("2", 300), won("2", 300)];
    let counts = sync(w, &run("r1", 0, 1000), &changes).await;
    assert_eq!((counts.upserted, counts.unwon), (2, 0));
    let rows = stored(w).await;
    assert_same_deal(&rows["1"].deal, &v2);
    assert!(rows["2"].is_closed_won);
}

async fn unwon_flags_an_existing_row_and_never_creates_one<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 1000), &[won("1", 100), won("3", 100)]).await;
    // An older un-won version of 3 is ignored; 2 was never stored.
    let counts = sync(w, &run("r2", 0, 1000), &[unwon("1", 200), unwon("2", 200), unwon("3", 50)]).await;
    assert_eq!((counts.upserted, counts.unwon, counts.deleted), (0, 1, 0));

    let rows = stored(w).await;
    assert_eq!(rows.len(), 2, "un-won must not create rows: {:?}", rows.keys());
    let one = &rows["1"];
    assert!(!one.is_closed_won && !one.is_deleted);
    assert_eq!(one.deal.stage.as_deref(), Some("Negotiation"));
    assert_eq!(one.deal.modified_time, t(200));
    assert_eq!(one.deal.amount, Some(dec("12500.1")), "un-won keeps the rest of the row");
    assert!(rows["3"].is_closed_won);
    assert_eq!(w.won_ids_in_window(t(0), t(1000)).await.expect("ids"), vec!["3".to_owned()]);
    assert_eq!(counts.won_in_window, 1);

    // Won again later: back in.
    sync(w, &run("r3", 0, 1000), &[won("1", 300)]).await;
    assert!(stored(w).await["1"].is_closed_won);
}

async fn deleted_flags_is_deleted_and_deleted_time<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 1000), &[won("1", 100), won("2", 100)]).await;
    // 3 was never stored; the deletion of 2 predates its stored version.
    let counts = sync(w, &run("r2", 0, 1000), &[deleted("1", 300), deleted("3", 300), deleted("2", 50)]).await;
    assert_eq!((counts.upserted, counts.unwon, counts.deleted), (0, 0, 1));

    let rows = stored(w).await;
    assert_eq!(rows.len(), 2, "a deletion must not create rows: {:?}", rows.keys());
    assert!(rows["1"].is_deleted);
    assert_eq!(rows["1"].deleted_time, Some(t(300)));
    assert_eq!(rows["1"].run_id, "r2");
    assert!(!rows["2"].is_deleted);
    assert_eq!(rows["2"].deleted_time, None);
    assert_eq!(w.won_ids_in_window(t(0), t(1000)).await.expect("ids"), vec!["2".to_owned()]);
    assert_eq!(w.count_won_in_window(t(0), t(1000)).await.expect("count"), 1);

    // The next run's window overlaps this one and sees the same deletion again: nothing changes, so the
    // ledger counts no deletion for it (and the row keeps the run that flagged it).
    let counts = sync(w, &run("r2b", 0, 1000), &[deleted("1", 300)]).await;
    assert_eq!(counts.deleted, 0, "a deletion already applied is not counted again");
    let rows = stored(w).await;
    assert!(rows["1"].is_deleted);
    assert_eq!(rows["1"].deleted_time, Some(t(300)));
    assert_eq!(rows["1"].run_id, "r2");

    // Restored in Zoho (a newer version): back, and no longer flagged.
    sync(w, &run("r3", 0, 1000), &[won("1", 400)]).await;
    let rows = stored(w).await;
    assert!(!rows["1"].is_deleted && rows["1"].is_closed_won);
    assert_eq!(rows["1"].deleted_time, None);
}

async fn an_older_version_does_not_resurrect_a_deleted_deal<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 1000), &[won("1", 100)]).await;
    sync(w, &run("r2", 0, 1000), &[deleted("1", 200)]).await;
    // A rerun of r1's window after the deletion run (same version, then an older one) must leave the
    // table as it was: the deletion is newer information than either version.
    sync(w, &run("r3", 0, 1000), &[won("1", 100)]).await;
    sync(w, &run("r4", 0, 1000), &[won("1", 150)]).await;
    let rows = stored(w).await;
    assert!(rows["1"].is_deleted, "an older version resurrected a deleted deal");
    assert_eq!(rows["1"].deleted_time, Some(t(200)));
    assert_eq!(w.count_won_in_window(t(0), t(1000)).await.expect("count"), 0);
}

async fn won_and_deleted_in_the_same_run_ends_deleted<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let counts = sync(w, &run("r1", 0, 1000), &[won("1", 100), deleted("1", 200)]).await;
    assert_eq!(counts.deleted, 1);
    let rows = stored(w).await;
    assert!(rows["1"].is_deleted);
    assert_eq!(rows["1"].deleted_time, Some(t(200)));
}

async fn vanished_flags_is_deleted_without_a_time_and_keeps_a_known_one<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 1000), &[won("1", 100), won("2", 100), deleted("3", 200)]).await;
    sync(w, &run("r2", 0, 1000), &[won("3", 150), deleted("3", 200)]).await;
    let gone = |id: &str| DealChange::Vanished { deal_id: id.into() };
    let mut reconcile = run("r3", 0, 1000);
    reconcile.kind = RunKind::Reconcile;
    // 1 is gone from Zoho, 3 was already flagged with a known time, 9 was never stored.
    let counts = sync(w, &reconcile, &[gone("1"), gone("3"), gone("9")]).await;
    assert_eq!(counts.deleted, 1);
    let rows = stored(w).await;
    assert_eq!(rows.len(), 3, "a vanished deal never creates a row");
    assert!(rows["1"].is_deleted && rows["1"].deleted_time.is_none(), "deleted, time unknown");
    assert_eq!(rows["3"].deleted_time, Some(t(200)), "a known deletion time is kept");
    assert!(!rows["2"].is_deleted);
    // A reconcile run's window does not count towards the watermark.
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(1000)));
    let kinds: Vec<RunKind> = w.succeeded_windows().await.expect("windows").iter().map(|c| c.kind).collect();
    assert!(kinds.contains(&RunKind::Reconcile), "the ledger reads the kind back: {kinds:?}");
    let mut later = run("r4", 0, 5000);
    later.kind = RunKind::Reconcile;
    sync(w, &later, &[]).await;
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(1000)), "reconcile never moves it");
    // Restored in Zoho later (a newer won version): back.
    sync(w, &run("r5", 0, 1000), &[won("1", 300)]).await;
    assert!(!stored(w).await["1"].is_deleted);
}

async fn a_crash_between_stage_and_commit_then_a_rerun_converges<W: Backend>(w: &W, env: &Env) {
    w.prepare().await.expect("prepare");
    let batch = [won("1", 10), won("2", 20), unwon("1", 5), deleted("9", 30)];
    let mut crashed = run("crashed", 0, 1000);
    crashed.lease_ttl = env.short_ttl;
    w.begin_run(&crashed).await.expect("begin_run");
    w.stage(&crashed, &batch).await.expect("stage");
    // The process dies here: no commit, no fail_run. Nothing is visible yet.
    assert!(stored(w).await.is_empty());
    assert_eq!(w.watermark().await.expect("watermark"), None);

    tokio::time::sleep(ttl_elapsed(env)).await;
    let rerun = run("rerun", 0, 1000);
    sync(w, &rerun, &batch).await;
    let rows = stored(w).await;
    assert_eq!(rows.len(), 2);
    assert_same_deal(&rows["1"].deal, &deal("1", 10));
    assert!(rows.values().all(|r| r.run_id == "rerun"));
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(1000)));
    let ledger = w.ledger().await.expect("ledger");
    let status = |id: &str| ledger.iter().find(|l| l.run_id == id).map(|l| l.status.clone());
    assert_eq!(status("rerun").as_deref(), Some("succeeded"));
    assert_ne!(status("crashed").as_deref(), Some("succeeded"));
}

async fn a_repeated_commit_converges<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    // A crash after the merge but before the ledger is seen by the next attempt as a commit whose merge
    // already happened: committing the same run again must leave the same table and a succeeded run.
    let r = run("r1", 0, 1000);
    sync(w, &r, &[won("1", 10), won("2", 20), deleted("2", 40)]).await;
    let before = stored(w).await;
    w.commit(&r, &report()).await.expect("second commit");
    let after = stored(w).await;
    assert_eq!(before.len(), after.len());
    for (id, row) in &after {
        assert_same_deal(&row.deal, &before[id].deal);
        assert_eq!(
            (row.is_closed_won, row.is_deleted, row.deleted_time),
            (before[id].is_closed_won, before[id].is_deleted, before[id].deleted_time)
        );
    }
    let ledger = w.ledger().await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, "succeeded");
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(1000)));
}

async fn the_window_recorded_after_the_lease_is_the_one_the_ledger_and_the_watermark_see<W: Backend>(w: &W, env: &Env) {
    w.prepare().await.expect("prepare");
    // The lease is taken before any Zoho call, so before the window's end (Zoho's clock) is known: begin_run
    // records a provisional window, record_window the real one.
    let mut r = run("r", 50, 50);
    w.begin_run(&r).await.expect("begin_run");
    (r.window_start, r.window_end) = (t(0), t(100));
    w.record_window(&r).await.expect("record_window");
    w.stage(&r, &[won("1", 10)]).await.expect("stage");
    w.commit(&r, &report()).await.expect("commit");
    let ledger = w.ledger().await.expect("ledger");
    let row = ledger.iter().find(|l| l.run_id == "r").expect("r's row");
    assert_eq!((row.window_start, row.window_end), (t(0), t(100)));
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(100)));

    // A run whose lease was taken over records nothing.
    let mut slow = run("slow", 100, 100);
    slow.lease_ttl = env.short_ttl;
    w.begin_run(&slow).await.expect("begin_run");
    tokio::time::sleep(ttl_elapsed(env)).await;
    w.begin_run(&run("next", 100, 200)).await.expect("begin_run after the lease expired");
    slow.window_end = t(300);
    match w.record_window(&slow).await {
        Err(WarehouseError::LeaseLost { run_id }) => assert_eq!(run_id, "slow"),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    let ledger = w.ledger().await.expect("ledger");
    let row = ledger.iter().find(|l| l.run_id == "slow").expect("slow's row");
    assert_eq!(row.window_end, t(100), "the overtaken run's window is left as it was");
}

async fn a_run_that_lost_its_lease_can_neither_heartbeat_nor_commit<W: Backend>(w: &W, env: &Env) {
    w.prepare().await.expect("prepare");
    // A run whose lease expired while it was still working (a stalled process) is overtaken by the next one.
    // Two MERGEs that both insert the same new deal would store it twice on BigQuery, so the overtaken run
    // must notice at its next heartbeat and, at the latest, at its commit: it merges nothing.
    let mut slow = run("slow", 0, 1000);
    slow.lease_ttl = env.short_ttl;
    w.begin_run(&slow).await.expect("begin_run");
    w.stage(&slow, &[won("1", 100), won("2", 300)]).await.expect("stage");
    tokio::time::sleep(ttl_elapsed(env)).await;
    let next = run("next", 0, 1000);
    w.begin_run(&next).await.expect("begin_run after the lease expired");
    w.stage(&next, &[won("1", 200)]).await.expect("stage");

    assert!(
        matches!(w.heartbeat(&slow).await, Err(WarehouseError::LeaseLost { .. })),
        "the overtaken run's heartbeat reports the loss"
    );
    match w.commit(&slow, &report()).await {
        Err(WarehouseError::LeaseLost { run_id }) => assert_eq!(run_id, "slow"),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert!(stored(w).await.is_empty(), "the overtaken run merged nothing");
    w.fail_run(&slow, &report(), "lost the lease").await.expect("fail_run");
    w.heartbeat(&next).await.expect("the lease holder's heartbeat still works");
    w.commit(&next, &report()).await.expect("commit next");

    let rows = stored(w).await;
    assert_eq!(rows.len(), 1);
    assert_same_deal(&rows["1"].deal, &deal("1", 200));
    let ledger = w.ledger().await.expect("ledger");
    let status = |id: &str| ledger.iter().find(|l| l.run_id == id).map(|l| l.status.clone());
    assert_eq!(status("slow").as_deref(), Some("failed"));
    assert_eq!(status("next").as_deref(), Some("succeeded"));
}

async fn two_runs_beginning_at_the_same_instant_get_one_lease<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let (a, b) = (run("a", 0, 100), run("b", 0, 100));
    let (ra, rb) = tokio::join!(w.begin_run(&a), w.begin_run(&b));
    let busy = |r: &Result<(), WarehouseError>| matches!(r, Err(WarehouseError::Busy { .. }));
    assert!((ra.is_ok() && busy(&rb)) || (rb.is_ok() && busy(&ra)), "exactly one run gets the lease: {ra:?} / {rb:?}");
    let winner = if ra.is_ok() { &a } else { &b };
    w.stage(winner, &[won("1", 10)]).await.expect("stage");
    w.commit(winner, &report()).await.expect("commit");
    // The commit released the lease: the next run starts at once.
    sync(w, &run("c", 100, 200), &[won("2", 150)]).await;
    assert_eq!(stored(w).await.len(), 2);
}

async fn the_ledger_records_every_run_newest_first<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let r1 = run("r1", 0, 100);
    sync(w, &r1, &[won("1", 10)]).await;

    let mut r2 = run("r2", 100, 200);
    r2.kind = RunKind::Backfill;
    w.begin_run(&r2).await.expect("begin_run");
    w.stage(&r2, &[won("2", 150)]).await.expect("stage");
    w.fail_run(&r2, &report(), "Zoho said no").await.expect("fail_run");
    assert!(!stored(w).await.contains_key("2"), "a failed run merges nothing");

    let r3 = run("r3", 200, 300);
    w.begin_run(&r3).await.expect("begin_run");

    let ledger = w.ledger().await.expect("ledger");
    let summary: Vec<_> = ledger.iter().map(|l| (l.run_id.as_str(), l.kind.as_str(), l.status.as_str())).collect();
    assert_eq!(
        summary,
        vec![("r3", "scheduled", "running"), ("r2", "backfill", "failed"), ("r1", "scheduled", "succeeded")]
    );
    assert_eq!(ledger[1].error.as_deref(), Some("Zoho said no"));
    assert_eq!((ledger[2].window_start, ledger[2].window_end), (t(0), t(100)));
    assert_eq!(ledger[2].deals_upserted, 1);
    assert_eq!(ledger[2].error, None);
}

async fn the_watermark_follows_succeeded_runs_only<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    assert_eq!(w.watermark().await.expect("watermark"), None);
    sync(w, &run("r1", 0, 100), &[]).await;
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(100)));

    let failed = run("r2", 90, 200);
    w.begin_run(&failed).await.expect("begin_run");
    w.fail_run(&failed, &report(), "boom").await.expect("fail_run");
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(100)));

    sync(w, &run("r3", 95, 300), &[won("1", 250)]).await;
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(300)));
    let mut windows = w.succeeded_windows().await.expect("windows");
    windows.sort_by_key(|c| c.start);
    let spans: Vec<_> = windows.iter().map(|c| (c.start, c.end, c.kind)).collect();
    assert_eq!(spans, vec![(t(0), t(100), RunKind::Scheduled), (t(95), t(300), RunKind::Scheduled)]);
}

async fn a_second_run_is_busy_while_the_lease_lives_and_free_after_it_expires<W: Backend>(w: &W, env: &Env) {
    w.prepare().await.expect("prepare");
    let mut first = run("first", 0, 100);
    first.lease_ttl = env.short_ttl;
    w.begin_run(&first).await.expect("begin_run");
    // The first lease expires at most a TTL after this; the waits below count from here, not from the end of
    // the statements in between, so slow statements (the emulator under load) do not eat the margins.
    let leased = tokio::time::Instant::now();

    let mut second = run("second", 0, 100);
    second.started_at = first.started_at + chrono::Duration::seconds(1);
    match w.begin_run(&second).await {
        Err(WarehouseError::Busy { run_id, expires_at }) => {
            assert_eq!(run_id, "first");
            assert!(expires_at > Utc::now() - chrono::Duration::seconds(5));
        }
        other => panic!("expected Busy, got {other:?}"),
    }

    // A heartbeat keeps the lease alive past its first expiry: asked at half the TTL, checked just after the
    // first expiry (and half a TTL before the heartbeat's).
    tokio::time::sleep_until(leased + half_ttl(env)).await;
    w.heartbeat(&first).await.expect("heartbeat");
    tokio::time::sleep_until(leased + 2 * half_ttl(env) + Duration::from_millis(300)).await;
    let mut third = run("third", 0, 100);
    third.started_at = Utc::now();
    assert!(
        matches!(w.begin_run(&third).await, Err(WarehouseError::Busy { .. })),
        "the heartbeat should have extended the lease"
    );

    // The first run dies: once its lease expires, a new run may start.
    tokio::time::sleep(ttl_elapsed(env)).await;
    let mut fourth = run("fourth", 0, 100);
    fourth.started_at = Utc::now();
    w.begin_run(&fourth).await.expect("the lease expired, so this run may start");
    w.stage(&fourth, &[won("1", 10)]).await.expect("stage");
    w.commit(&fourth, &report()).await.expect("commit");
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(100)));
}

fn quarantined(id: &str, field: &str, reason: &str) -> QuarantinedRecord {
    let record = format!(r#"{{"id":"{id}","{field}":"not what it should be — “quoted” ✓"}}"#);
    QuarantinedRecord::new(id.into(), field.into(), reason.into(), record)
}

async fn quarantined_records_are_kept_until_a_readable_version_is_merged<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    assert!(w.quarantined().await.expect("quarantined").is_empty());
    let r1 = run("r1", 0, 100);
    w.begin_run(&r1).await.expect("begin_run");
    w.stage(&r1, &[won("1", 10)]).await.expect("stage");
    let report1 = RunReport {
        deals_quarantined: 3,
        quarantined: vec![
            quarantined("7", "Amount", "expected a number"),
            quarantined("8", "Closing_Date", "not a date: 2026-02-30"),
            // The same deal twice in one run (two pages): one row, the last one.
            quarantined("7", "Stage", "expected a string"),
        ],
        ..report()
    };
    w.commit(&r1, &report1).await.expect("commit");
    let q = w.quarantined().await.expect("quarantined");
    let summary: Vec<_> = q.iter().map(|r| (r.deal_id.as_str(), r.field.as_str(), r.run_id.as_str())).collect();
    assert_eq!(summary, vec![("7", "Stage", "r1"), ("8", "Closing_Date", "r1")]);
    assert_eq!(q[1].reason, "not a date: 2026-02-30");
    assert_eq!(q[1].record, quarantined("8", "Closing_Date", "").record, "the record as received, unicode intact");
    assert!(!stored(w).await.contains_key("7"), "a quarantined record is not a deal row");

    // A repeated commit changes nothing; a later run that reads deal 7 properly ends its quarantine, and one
    // that quarantines deal 8 again replaces its row.
    w.commit(&r1, &report1).await.expect("repeated commit");
    assert_eq!(w.quarantined().await.expect("quarantined").len(), 2);
    let r2 = run("r2", 100, 200);
    w.begin_run(&r2).await.expect("begin_run");
    w.stage(&r2, &[won("7", 150)]).await.expect("stage");
    let report2 =
        RunReport { deals_quarantined: 1, quarantined: vec![quarantined("8", "Amount", "negative")], ..report() };
    w.commit(&r2, &report2).await.expect("commit");
    let q = w.quarantined().await.expect("quarantined");
    let summary: Vec<_> = q.iter().map(|r| (r.deal_id.as_str(), r.field.as_str(), r.run_id.as_str())).collect();
    assert_eq!(summary, vec![("8", "Amount", "r2")]);
    assert!(stored(w).await["7"].is_closed_won);
    let ledger = w.ledger().await.expect("ledger");
    assert_eq!((ledger[0].run_id.as_str(), ledger[0].status.as_str()), ("r2", "succeeded"));
}

/// What decides whether a run reads Zoho's deleted deals: a stored row of any state, or a quarantined record.
async fn holds_deals_sees_stored_and_quarantined_deals_but_not_what_a_failed_run_staged<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    assert!(!w.holds_deals().await.expect("holds_deals"), "a fresh warehouse holds no deal");
    // Staged, then failed: nothing was merged.
    let r0 = run("r0", 0, 100);
    w.begin_run(&r0).await.expect("begin_run");
    w.stage(&r0, &[won("1", 10)]).await.expect("stage");
    w.fail_run(&r0, &report(), "drill").await.expect("fail_run");
    assert!(!w.holds_deals().await.expect("holds_deals"), "a failed run's staged rows are not stored deals");
    // Only a quarantined record: a deletion would end its quarantine.
    let r1 = run("r1", 0, 100);
    w.begin_run(&r1).await.expect("begin_run");
    let report1 = RunReport { deals_quarantined: 1, quarantined: vec![quarantined("7", "Amount", "bad")], ..report() };
    w.commit(&r1, &report1).await.expect("commit");
    assert!(stored(w).await.is_empty());
    assert!(w.holds_deals().await.expect("holds_deals"), "a quarantined record counts");
    // A stored deal that is no longer won (deleted) counts too: a later deletion would move its version.
    sync(w, &run("r2", 100, 200), &[won("7", 150)]).await;
    sync(w, &run("r3", 200, 300), &[deleted("7", 250)]).await;
    assert!(w.quarantined().await.expect("quarantined").is_empty());
    assert!(stored(w).await["7"].is_deleted);
    assert!(w.holds_deals().await.expect("holds_deals"), "a deleted row counts");
}

async fn a_quarantined_deals_stored_row_is_flagged_until_a_readable_version_is_staged<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 100), &[won("1", 10), won("2", 10)]).await;
    assert!(stored(w).await.values().all(|r| !r.is_quarantined), "a fresh row is not quarantined");
    // r2 cannot read deal 1's newer version: its old row stays, flagged, in the same commit.
    let r2 = run("r2", 100, 200);
    w.begin_run(&r2).await.expect("begin_run");
    w.stage(&r2, &[won("2", 150)]).await.expect("stage");
    let bad = RunReport { deals_quarantined: 1, quarantined: vec![quarantined("1", "Amount", "lots")], ..report() };
    w.commit(&r2, &bad).await.expect("commit");
    let rows = stored(w).await;
    assert!(rows["1"].is_quarantined && rows["1"].is_closed_won, "the old row stays, flagged");
    assert!(!rows["2"].is_quarantined);
    // r3 stages a readable version of deal 1: the flag goes with the quarantine.
    sync(w, &run("r3", 200, 300), &[won("1", 250)]).await;
    let rows = stored(w).await;
    assert!(!rows["1"].is_quarantined, "cleared once a readable version is merged");
    assert!(w.quarantined().await.expect("quarantined").is_empty());
}

fn custom_field(api: &str, column: &str, t: CellType) -> FieldColumn {
    FieldColumn {
        api_name: api.into(),
        label: format!("{api} label"),
        data_type: "test".into(),
        column: Some(column.into()),
        cell_type: Some(t),
        custom: true,
    }
}

fn with_custom(id: &str, modified: i64, values: &[(&str, Cell)]) -> DealChange {
    let mut d = deal(id, modified);
    d.custom = values.iter().map(|(c, v)| CustomValue { column: (*c).into(), value: v.clone() }).collect();
    DealChange::Won(d)
}

fn custom_cell(row: &StoredDeal, column: &str) -> Cell {
    row.deal
        .custom
        .iter()
        .find(|c| c.column == column)
        .map(|c| c.value.clone())
        .unwrap_or_else(|| panic!("{column} not read"))
}

async fn custom_columns_of_every_type_round_trip_and_a_later_field_adds_a_column<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let fields = vec![
        custom_field("Region", "region", CellType::Text),
        custom_field("Seats", "seats", CellType::Int),
        custom_field("Price", "price", CellType::Decimal),
        custom_field("Unit_Rate", "unit_rate", CellType::BigDecimal),
        custom_field("Strategic", "strategic", CellType::Bool),
        custom_field("Go_Live", "go_live", CellType::Date),
        custom_field("Kickoff", "kickoff", CellType::Timestamp),
        custom_field("Languages", "languages", CellType::TextList),
    ];
    w.declare_fields(&fields).await.expect("declare_fields");
    let values = [
        ("region", Cell::Text("EMEA — “Nord”".into())),
        ("seats", Cell::Int(9_007_199_254_740_993)),
        ("price", Cell::Decimal(dec("12345678901234567890.123456789"))),
        // 18 places, which NUMERIC (9) would round; 20 integer digits and 18 places is all the emulator's
        // BIGNUMERIC (DuckDB DECIMAL(38,18), docs/bigquery.md) holds, so the same value tests both warehouses.
        ("unit_rate", Cell::BigDecimal(big("-12345678901234567890.123456789012345678"))),
        ("strategic", Cell::Bool(true)),
        ("go_live", Cell::Date(NaiveDate::from_ymd_opt(2027, 1, 31).expect("date"))),
        ("kickoff", Cell::Timestamp(t(42))),
        ("languages", Cell::TextList(vec!["English".into(), "Deutsch, Österreich".into()])),
    ];
    sync(w, &run("r1", 0, 100), &[with_custom("1", 10, &values), with_custom("2", 10, &[])]).await;
    let rows = stored(w).await;
    for (column, value) in &values {
        assert_eq!(&custom_cell(&rows["1"], column), value, "{column}");
        // BigQuery stores a NULL array as [] (it has no NULL arrays).
        let none = custom_cell(&rows["2"], column);
        assert!(none == Cell::Null || none == Cell::TextList(vec![]), "{column} of a deal without it: {none:?}");
    }
    // The history's version holds the BIGNUMERIC value exactly too (its column there is BIGNUMERIC as well).
    let history = w.rows("SELECT unit_rate FROM `{{dataset}}.closed_won_deals_history` WHERE deal_id = '1'").await;
    let kept: Vec<Option<ExactDecimal>> =
        history.iter().map(|r| r[0].as_deref().map(|v| ExactDecimal::parse(v).expect("a decimal"))).collect();
    assert_eq!(kept, vec![Some(big("-12345678901234567890.123456789012345678"))]);
    // The next run's metadata has a new field: a column, NULL in the old rows, filled for new versions; a
    // field whose type changed keeps its column, no longer filled.
    let mut later = fields.clone();
    later.push(custom_field("Band", "band", CellType::Text));
    later[1] = custom_field("Seats", "seats", CellType::Text);
    w.declare_fields(&later).await.expect("declare_fields again");
    assert!(w.deal_columns().await.iter().any(|c| c == "band"));
    sync(
        w,
        &run("r2", 100, 200),
        &[with_custom("3", 150, &[("band", Cell::Text("B".into())), ("seats", Cell::Text("many".into()))])],
    )
    .await;
    let rows = stored(w).await;
    assert_eq!(rows.len(), 3, "no row lost");
    assert_eq!(custom_cell(&rows["1"], "band"), Cell::Null);
    assert_eq!(custom_cell(&rows["1"], "seats"), Cell::Int(9_007_199_254_740_993), "old values stay");
    assert_eq!(custom_cell(&rows["3"], "band"), Cell::Text("B".into()));
    assert_eq!(custom_cell(&rows["3"], "seats"), Cell::Null, "a retyped field's values go to raw only");
}

async fn history_keeps_each_versions_custom_values_including_a_field_added_later<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let region = custom_field("Region", "region", CellType::Text);
    w.declare_fields(std::slice::from_ref(&region)).await.expect("declare_fields");
    sync(w, &run("r1", 0, 100), &[with_custom("1", 10, &[("region", Cell::Text("EMEA".into()))])]).await;
    // Zoho gains a field; the deal is edited, then un-won.
    w.declare_fields(&[region, custom_field("Seats", "seats", CellType::Int)]).await.expect("declare_fields again");
    let edited = [("region", Cell::Text("APAC".into())), ("seats", Cell::Int(12))];
    sync(w, &run("r2", 100, 200), &[with_custom("1", 150, &edited)]).await;
    sync(w, &run("r3", 200, 300), &[unwon("1", 250)]).await;
    let versions = w
        .rows(
            "SELECT change, region, seats FROM `{{dataset}}.closed_won_deals_history` WHERE deal_id = '1' \
             ORDER BY valid_from",
        )
        .await;
    let text = |v: &[&str]| v.iter().map(|s| (!s.is_empty()).then(|| (*s).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        versions,
        vec![text(&["won", "EMEA", ""]), text(&["edited", "APAC", "12"]), text(&["unwon", "APAC", "12"])],
        "each version keeps the custom values the row had then (NULL before the field existed)"
    );
    // As of the first version, the earlier value is what the history says.
    let as_of = w
        .rows(
            "SELECT region FROM `{{dataset}}.closed_won_deals_history` WHERE deal_id = '1' AND NOT is_current \
             AND change = 'won'",
        )
        .await;
    assert_eq!(as_of, vec![text(&["EMEA"])]);
}

/// A merge begun ahead ([`Warehouse::merge_ahead`]) changes nothing anyone can see until the commit, which then
/// stores what one merge of everything staged would (rows, history, counts), also when a deal was staged both
/// before and after it; a run that fails after it stores nothing.
async fn a_merge_ahead_is_invisible_until_the_commit_and_ends_as_one_merge_would<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r0", 0, 100), &[won("1", 10), won("2", 10), won("3", 10)]).await;
    let table = || {
        w.rows(
            "SELECT deal_id, CAST(is_closed_won AS INT64), CAST(is_deleted AS INT64) \
             FROM `{{dataset}}.closed_won_deals` ORDER BY deal_id",
        )
    };
    let history = || {
        w.rows(
            "SELECT deal_id, change, CAST(is_current AS INT64) FROM `{{dataset}}.closed_won_deals_history` \
             ORDER BY deal_id, valid_from",
        )
    };
    let (table0, history0) = (table().await, history().await);
    let cell = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();

    // r1 merges ahead, then fails: nothing of it is stored.
    let r1 = run("r1", 100, 200);
    w.begin_run(&r1).await.expect("begin_run");
    w.stage(&r1, &[won("4", 150), unwon("2", 150)]).await.expect("stage");
    w.merge_ahead(&r1, usize::MAX).await.expect("merge_ahead");
    w.stage(&r1, &[won("5", 160)]).await.expect("stage after the merge ahead");
    w.heartbeat(&r1).await.expect("heartbeat after the merge ahead");
    w.fail_run(&r1, &report(), "drill").await.expect("fail_run");
    assert_eq!((table().await, history().await), (table0.clone(), history0.clone()), "a failed run stores nothing");
    assert_eq!(w.ledger().await.expect("ledger")[0].status, "failed");

    // r2: no deal on both sides of the merge ahead; a reader sees nothing of it until the commit.
    let r2 = run("r2", 100, 200);
    w.begin_run(&r2).await.expect("begin_run");
    w.stage(&r2, &[won("4", 150), unwon("2", 150)]).await.expect("stage");
    w.merge_ahead(&r2, usize::MAX).await.expect("merge_ahead");
    assert_eq!((table().await, history().await), (table0, history0), "invisible before the commit");
    w.stage(&r2, &[won("5", 160), deleted("3", 170)]).await.expect("stage after the merge ahead");
    w.heartbeat(&r2).await.expect("heartbeat after the merge ahead");
    let counts = w.commit(&r2, &report()).await.expect("commit");
    assert_eq!((counts.upserted, counts.unwon, counts.deleted), (2, 1, 1));
    assert_eq!(
        table().await,
        vec![
            cell(&["1", "1", "0"]),
            cell(&["2", "0", "0"]),
            cell(&["3", "1", "1"]),
            cell(&["4", "1", "0"]),
            cell(&["5", "1", "0"])
        ]
    );
    assert_eq!(
        history().await,
        vec![
            cell(&["1", "won", "1"]),
            cell(&["2", "won", "0"]),
            cell(&["2", "unwon", "1"]),
            cell(&["3", "won", "0"]),
            cell(&["3", "deleted", "1"]),
            cell(&["4", "won", "1"]),
            cell(&["5", "won", "1"]),
        ]
    );
    assert_eq!(w.ledger().await.expect("ledger")[0].deals_upserted, 2);

    // r3: deals staged on both sides. Deal 6 is won before and un-won after at the same time (one merge keeps
    // it won); deal 7's newer version comes after. Each ends as its newest version, with one history version.
    let r3 = run("r3", 200, 300);
    w.begin_run(&r3).await.expect("begin_run");
    w.stage(&r3, &[won("6", 250), won("7", 240)]).await.expect("stage");
    w.merge_ahead(&r3, usize::MAX).await.expect("merge_ahead");
    w.stage(&r3, &[unwon("6", 250), won("7", 260)]).await.expect("stage after the merge ahead");
    let counts = w.commit(&r3, &report()).await.expect("commit");
    assert_eq!((counts.upserted, counts.unwon), (2, 0));
    let rows = stored(w).await;
    assert!(rows["6"].is_closed_won, "a won and an un-won version of one time: won");
    assert_eq!(rows["7"].deal.modified_time, t(260));
    let versions = w
        .rows("SELECT deal_id, change FROM `{{dataset}}.closed_won_deals_history` WHERE deal_id IN ('6', '7') ORDER BY deal_id")
        .await;
    assert_eq!(versions, vec![cell(&["6", "won"]), cell(&["7", "won"])]);

    // r4: deals merged ahead (with their history), then flagged deleted by rows staged after it: deal 8 is new,
    // deal 1 stored since r0. Each ends with the one version one merge writes, the one before it closed at the
    // deletion; before the commit a reader sees none of it.
    let r4 = run("r4", 300, 400);
    w.begin_run(&r4).await.expect("begin_run");
    w.stage(&r4, &[won("8", 310), won("1", 305)]).await.expect("stage");
    w.merge_ahead(&r4, usize::MAX).await.expect("merge_ahead");
    let deals_1_and_8 = || {
        w.rows(
            "SELECT deal_id, change, CAST(is_current AS INT64) FROM `{{dataset}}.closed_won_deals_history` \
             WHERE deal_id IN ('1', '8') ORDER BY deal_id, valid_from",
        )
    };
    assert_eq!(deals_1_and_8().await, vec![cell(&["1", "won", "1"])], "invisible before the commit");
    w.stage(&r4, &[deleted("8", 320), deleted("1", 330)]).await.expect("stage after the merge ahead");
    let counts = w.commit(&r4, &report()).await.expect("commit");
    assert_eq!((counts.upserted, counts.deleted), (2, 2));
    assert_eq!(
        deals_1_and_8().await,
        vec![cell(&["1", "won", "0"]), cell(&["1", "deleted", "1"]), cell(&["8", "deleted", "1"])]
    );
    let closed_at_the_deletion = w
        .rows(
            "SELECT COUNT(*) FROM `{{dataset}}.closed_won_deals_history` AS h \
             JOIN `{{dataset}}.closed_won_deals` AS t ON t.deal_id = h.deal_id \
             WHERE h.deal_id = '1' AND h.change = 'won' AND h.valid_to = t.deleted_time",
        )
        .await;
    assert_eq!(closed_at_the_deletion, vec![cell(&["1"])]);

    // r5: the merge ahead in steps, the first one smaller than what is staged; then deals staged again after a
    // step (deal 10 edited since, deal 9's older version: a page delivered twice) stop the steps, and the commit
    // ends as one merge: every deal once, at its newest version, with one history version; deal 2 (un-won in r2)
    // is won again.
    let r5 = run("r5", 400, 500);
    w.begin_run(&r5).await.expect("begin_run");
    w.stage(&r5, &[won("9", 410), won("10", 410)]).await.expect("stage");
    let took = w.merge_ahead(&r5, 1).await.expect("a step of one row");
    assert!(took <= 1, "a step takes at most what it is given: {took}");
    w.merge_ahead(&r5, usize::MAX).await.expect("a step");
    w.stage(&r5, &[won("11", 420), won("2", 420)]).await.expect("stage");
    w.merge_ahead(&r5, usize::MAX).await.expect("a step");
    w.stage(&r5, &[won("12", 430), won("10", 415), won("9", 405)]).await.expect("stage");
    w.merge_ahead(&r5, usize::MAX).await.expect("a step over a deal staged before");
    w.stage(&r5, &[won("13", 450)]).await.expect("stage");
    w.merge_ahead(&r5, usize::MAX).await.expect("a step after it");
    let ids = ["2", "9", "10", "11", "12", "13"];
    let of_r5 = |table: &'static str| async move {
        w.rows(&format!(
            "SELECT deal_id, CAST(is_closed_won AS INT64) FROM `{{{{dataset}}}}.{table}` \
             WHERE deal_id IN ('2', '9', '10', '11', '12', '13') AND run_id = 'r5' ORDER BY deal_id"
        ))
        .await
    };
    assert_eq!(of_r5("closed_won_deals").await, Vec::<Vec<Option<String>>>::new(), "invisible before the commit");
    let counts = w.commit(&r5, &report()).await.expect("commit");
    assert_eq!((counts.upserted, counts.unwon), (6, 0));
    let rows = stored(w).await;
    for id in ids {
        assert!(rows[id].is_closed_won && !rows[id].is_deleted, "deal {id} won");
    }
    assert_eq!(rows["9"].deal.modified_time, t(410), "the newest version, not the one staged last");
    assert_eq!(rows["10"].deal.modified_time, t(415));
    assert_eq!(rows["13"].deal.modified_time, t(450));
    assert_eq!(
        of_r5("closed_won_deals_history").await,
        ["10", "11", "12", "13", "2", "9"].iter().map(|id| cell(&[id, "1"])).collect::<Vec<_>>(),
        "one history version per deal"
    );
    assert_eq!(
        w.rows(
            "SELECT change, CAST(is_current AS INT64) FROM `{{dataset}}.closed_won_deals_history` \
             WHERE deal_id = '2' ORDER BY valid_from"
        )
        .await,
        vec![cell(&["won", "0"]), cell(&["unwon", "0"]), cell(&["won", "1"])]
    );
}

async fn an_incomplete_commit_merges_what_was_fetched_but_records_the_run_failed<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 100), &[won("1", 10)]).await;
    // The credit budget stopped r2 mid-window: what it fetched is merged, but the window was not all read, so
    // the run is failed and the watermark stays where r1 left it.
    let r2 = run("r2", 90, 200);
    w.begin_run(&r2).await.expect("begin_run");
    w.stage(&r2, &[won("2", 150)]).await.expect("stage");
    let stopped = RunReport { incomplete: Some("credit budget reached: 10 of 10 credits spent".into()), ..report() };
    let counts = w.commit(&r2, &stopped).await.expect("commit");
    assert_eq!(counts.upserted, 1);
    assert!(stored(w).await.contains_key("2"), "what was fetched is merged");
    let ledger = w.ledger().await.expect("ledger");
    assert_eq!((ledger[0].run_id.as_str(), ledger[0].status.as_str()), ("r2", "failed"));
    assert!(ledger[0].error.as_deref().is_some_and(|e| e.contains("credit budget")), "{:?}", ledger[0]);
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(100)), "the watermark did not move");
    // The next run starts a new lease: the failed one holds none.
    sync(w, &run("r3", 90, 300), &[]).await;
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(300)));
}

async fn prepare_adds_a_column_missing_from_an_older_table<W: Backend>(w: &W, _: &Env) {
    w.create_legacy_deals_table("owner_email").await;
    assert!(!w.deal_columns().await.iter().any(|c| c == "owner_email"));
    w.prepare().await.expect("prepare");
    let columns = w.deal_columns().await;
    for c in DEAL_COLUMNS {
        assert!(columns.iter().any(|x| x == c.name), "{} missing after prepare: {columns:?}", c.name);
    }
    // Idempotent, and the new column is written and read like any other.
    w.prepare().await.expect("prepare again");
    sync(w, &run("r1", 0, 1000), &[won("1", 10)]).await;
    assert_eq!(stored(w).await["1"].deal.owner_email.as_deref(), Some("ada@example.com"));
}

async fn exact_decimals_survive<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let mut d = deal("1", 10);
    d.amount = Some(dec("12500.1"));
    d.exchange_rate = Some(dec("0.000000001"));
    d.expected_revenue = Some(dec("99999999999999999999.99"));
    let mut e = deal("2", 10);
    e.amount = Some(dec("0.3"));
    e.exchange_rate = None;
    e.expected_revenue = Some(dec("-7.25"));
    sync(w, &run("r1", 0, 1000), &[DealChange::Won(d), DealChange::Won(e)]).await;
    let rows = stored(w).await;
    let text = |v: Option<Decimal>| v.map(|v| v.normalize().to_string());
    assert_eq!(text(rows["1"].deal.amount).as_deref(), Some("12500.1"));
    assert_eq!(text(rows["1"].deal.exchange_rate).as_deref(), Some("0.000000001"));
    assert_eq!(text(rows["1"].deal.expected_revenue).as_deref(), Some("99999999999999999999.99"));
    assert_eq!(text(rows["2"].deal.amount).as_deref(), Some("0.3"));
    assert_eq!(text(rows["2"].deal.exchange_rate), None);
    assert_eq!(text(rows["2"].deal.expected_revenue).as_deref(), Some("-7.25"));
}

async fn window_queries_include_the_start_and_exclude_the_end<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    sync(w, &run("r1", 0, 1000), &[won("1", 99), won("2", 100), won("3", 199), won("4", 200)]).await;
    assert_eq!(w.count_won_in_window(t(100), t(200)).await.expect("count"), 2);
    assert_eq!(w.won_ids_in_window(t(100), t(200)).await.expect("ids"), vec!["2".to_owned(), "3".to_owned()]);
    assert_eq!(w.count_won_in_window(t(500), t(600)).await.expect("count"), 0);
}

async fn an_empty_run_succeeds_and_moves_the_watermark<W: Backend>(w: &W, _: &Env) {
    w.prepare().await.expect("prepare");
    let counts = sync(w, &run("r1", 0, 100), &[]).await;
    assert_eq!(counts, Default::default());
    assert!(stored(w).await.is_empty());
    assert_eq!(w.watermark().await.expect("watermark"), Some(t(100)));
}

/// Half the short lease.
fn half_ttl(env: &Env) -> Duration {
    env.short_ttl.to_std().expect("positive ttl") / 2
}

/// Long enough for a short lease taken just now to have expired.
fn ttl_elapsed(env: &Env) -> Duration {
    env.short_ttl.to_std().expect("positive ttl") + Duration::from_millis(500)
}

// ---------------------------------------------------------------------------------------------------------
// Instantiation: every behaviour against every warehouse.

/// BigQuery tests need the emulator; without one they are skipped loudly, except in CI where that is a failure.
fn emulator_host() -> Option<String> {
    match std::env::var("BIGQUERY_EMULATOR_HOST") {
        Ok(h) if !h.trim().is_empty() => Some(h),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CI=true but BIGQUERY_EMULATOR_HOST is not set: .ci/run must start the emulator \
             (`scripts/bq-emulator.sh start`) and export what it prints"
        ),
        _ => {
            // Written to the real stderr (libtest captures eprintln! of passing tests), once per process.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: BigQuery emulator not running (run scripts/bq-emulator.sh start) ***\n"
                );
            });
            None
        }
    }
}

/// A dataset name unique to this test and process.
fn dataset_for(test: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("conformance_{test}_{}", &suffix[..12])
}

async fn emulator_warehouse(test: &str) -> Option<BigQueryWarehouse> {
    let host = emulator_host()?;
    let config =
        BigQueryConfig { emulator_host: Some(host), dataset: dataset_for(test), ..BigQueryConfig::new("test-project") };
    Some(BigQueryWarehouse::connect(config).await.expect("connect to the emulator"))
}

/// Real BigQuery: `BQ_PROJECT` (and optionally `BQ_LOCATION`) with Application Default Credentials.
async fn live_warehouse(test: &str) -> BigQueryWarehouse {
    let project = std::env::var("BQ_PROJECT").expect("set BQ_PROJECT (and ADC credentials) to run live tests");
    let mut config = BigQueryConfig::new(project);
    config.dataset = dataset_for(test);
    if let Ok(location) = std::env::var("BQ_LOCATION") {
        config.location = location;
    }
    BigQueryWarehouse::connect(config).await.expect("connect to BigQuery")
}

/// `conformance!(a, b, #[sqlite: ignore = "why"] c)`: every behaviour for every warehouse; an attribute
/// after `sqlite:` applies to the SQLite instance only (for a gap SQLite has not closed yet).
macro_rules! conformance {
    ($($(#[sqlite: $sqlite_attr:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                $(#[$sqlite_attr])*
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let w = super::SqliteWarehouse::open(&dir.path().join("warehouse.sqlite3"))
                        .expect("open SQLite");
                    // SQLite stores whole seconds, so a lease can end up to a second early.
                    let env = super::Env { short_ttl: chrono::Duration::seconds(4) };
                    super::$name(&w, &env).await;
                }
            )*
        }

        mod bigquery_emulator {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(w) = super::emulator_warehouse(stringify!($name)).await else { return };
                    // The emulator slows down when every test hits it at once (a statement can take a second or two on
                    // a loaded machine), and begin_run makes four: leave room for a few slow statements.
                    let env = super::Env { short_ttl: chrono::Duration::seconds(12) };
                    super::$name(&w, &env).await;
                    w.drop_dataset().await.expect("drop the test dataset");
                }
            )*
        }

        mod bigquery_live {
            $(
                #[tokio::test]
                #[ignore = "needs real BigQuery: BQ_PROJECT plus Application Default Credentials (see README)"]
                async fn $name() {
                    let w = super::live_warehouse(stringify!($name)).await;
                    // Each statement takes a second or two on real BigQuery.
                    let env = super::Env { short_ttl: chrono::Duration::seconds(40) };
                    super::$name(&w, &env).await;
                    w.drop_dataset().await.expect("drop the test dataset");
                }
            )*
        }
    };
}

conformance!(
    upsert_inserts_won_deals,
    a_quarantined_deals_stored_row_is_flagged_until_a_readable_version_is_staged,
    custom_columns_of_every_type_round_trip_and_a_later_field_adds_a_column,
    history_keeps_each_versions_custom_values_including_a_field_added_later,
    a_redelivered_batch_writes_no_duplicates,
    an_older_version_never_overwrites_a_newer_one,
    an_equal_version_is_applied_again,
    the_newest_version_in_a_batch_wins_whatever_the_order,
    unwon_flags_an_existing_row_and_never_creates_one,
    deleted_flags_is_deleted_and_deleted_time,
    won_and_deleted_in_the_same_run_ends_deleted,
    an_older_version_does_not_resurrect_a_deleted_deal,
    vanished_flags_is_deleted_without_a_time_and_keeps_a_known_one,
    a_crash_between_stage_and_commit_then_a_rerun_converges,
    a_repeated_commit_converges,
    a_run_that_lost_its_lease_can_neither_heartbeat_nor_commit,
    the_window_recorded_after_the_lease_is_the_one_the_ledger_and_the_watermark_see,
    two_runs_beginning_at_the_same_instant_get_one_lease,
    the_ledger_records_every_run_newest_first,
    the_watermark_follows_succeeded_runs_only,
    a_second_run_is_busy_while_the_lease_lives_and_free_after_it_expires,
    prepare_adds_a_column_missing_from_an_older_table,
    exact_decimals_survive,
    window_queries_include_the_start_and_exclude_the_end,
    an_empty_run_succeeds_and_moves_the_watermark,
    quarantined_records_are_kept_until_a_readable_version_is_merged,
    holds_deals_sees_stored_and_quarantined_deals_but_not_what_a_failed_run_staged,
    an_incomplete_commit_merges_what_was_fetched_but_records_the_run_failed,
    a_merge_ahead_is_invisible_until_the_commit_and_ends_as_one_merge_would,
);

// ---------------------------------------------------------------------------------------------------------
// BigQuery only: what SQLite has no counterpart for (streaming limits, per-row rejections, analyst views).

mod bigquery_only {
    use super::*;

    #[tokio::test]
    async fn a_row_bigquery_refuses_is_quarantined_with_its_reason_and_the_rest_merge() {
        let Some(w) = emulator_warehouse("refused_row").await else { return };
        w.prepare().await.expect("prepare");
        let r = run("r1", 0, 1000);
        w.begin_run(&r).await.expect("begin_run");
        let mut bad = deal("666", 10);
        bad.raw = "{not json".into();
        let batch = [won("1", 10), won("2", 10), DealChange::Won(bad), won("3", 10), won("4", 10)];
        w.stage(&r, &batch).await.expect("a refused row does not fail the stage");
        let counts = w.commit(&r, &report()).await.expect("commit");
        assert_eq!((counts.upserted, counts.refused), (4, 1));
        let ids: Vec<String> = stored(&w).await.into_keys().collect();
        assert_eq!(ids.len(), 4);
        assert!(!ids.contains(&"666".to_owned()));
        let q = w.quarantined().await.expect("quarantined");
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].deal_id.as_str(), q[0].record.as_str()), ("666", "{not json"));
        assert!(q[0].reason.to_ascii_lowercase().contains("json"), "BigQuery's reason is kept: {}", q[0].reason);
        w.drop_dataset().await.expect("drop the test dataset");
    }

    #[tokio::test]
    async fn a_missing_staging_table_fails_the_commit_and_the_watermark_stays() {
        let Some(w) = emulator_warehouse("missing_staging").await else { return };
        w.prepare().await.expect("prepare");
        let r = run("r1", 0, 1000);
        w.begin_run(&r).await.expect("begin_run");
        w.stage(&r, &[won("1", 10)]).await.expect("stage");
        w.query_text("DROP TABLE `{{dataset}}._staging_r1`").await.expect("drop the staging table");
        let err = w.commit(&r, &report()).await.expect_err("a commit without its staging must fail");
        assert!(err.to_string().contains("missing"), "{err}");
        assert_eq!(w.watermark().await.expect("watermark"), None, "the watermark stays");
        assert!(stored(&w).await.is_empty());
        w.drop_dataset().await.expect("drop the test dataset");
    }

    #[tokio::test]
    async fn a_deal_stored_twice_is_counted_once_by_the_views_and_the_dedupe_removes_the_copy() {
        let Some(w) = emulator_warehouse("dedupe").await else { return };
        w.prepare().await.expect("prepare");
        sync(&w, &run("r1", 0, 1000), &[won("1", 10), won("2", 10)]).await;
        // What two overlapping INSERT-only MERGEs would leave behind on BigQuery: the same deal twice.
        w.query_text(
            "INSERT INTO `{{dataset}}.closed_won_deals` SELECT * REPLACE ('older' AS run_id, \
             TIMESTAMP_SUB(modified_time, INTERVAL 1 SECOND) AS modified_time) \
             FROM `{{dataset}}.closed_won_deals` WHERE deal_id = '1'",
        )
        .await
        .expect("insert a duplicate");
        let count = |sql: &'static str| {
            let w = &w;
            async move { w.query_text(sql).await.expect("count")[0][0].clone() }
        };
        assert_eq!(count("SELECT COUNT(*) FROM `{{dataset}}.closed_won_deals`").await.as_deref(), Some("3"));
        assert_eq!(count("SELECT COUNT(*) FROM `{{dataset}}.current_won_deals`").await.as_deref(), Some("2"));
        assert_eq!(
            count("SELECT SUM(deals) FROM `{{dataset}}.won_revenue_by_month_owner`").await.as_deref(),
            Some("2")
        );
        assert_eq!(w.dedupe_deals().await.expect("dedupe"), 1);
        assert_eq!(w.dedupe_deals().await.expect("dedupe again"), 0, "idempotent");
        let rows = stored(&w).await;
        assert_eq!(rows.len(), 2);
        assert_ne!(rows["1"].run_id, "older", "the newest version is the one kept");
        w.drop_dataset().await.expect("drop the test dataset");
    }

    #[tokio::test]
    async fn a_dataset_in_another_location_is_a_configuration_error() {
        let Some(w) = emulator_warehouse("location").await else { return };
        w.prepare().await.expect("prepare");
        let config = BigQueryConfig { location: "EU".into(), ..w.config().clone() };
        let eu = BigQueryWarehouse::connect(config).await.expect("connect");
        match eu.prepare().await {
            Err(WarehouseError::Config(m)) => assert!(m.contains("BQ_LOCATION=US"), "{m}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
        w.drop_dataset().await.expect("drop the test dataset");
    }

    #[tokio::test]
    async fn more_rows_than_one_insert_request_takes_are_all_staged_and_merged() {
        let Some(w) = emulator_warehouse("many_rows").await else { return };
        w.prepare().await.expect("prepare");
        let changes: Vec<DealChange> = (0..1201).map(|i| won(&format!("{}", 10_000 + i), 10)).collect();
        let counts = sync(&w, &run("r1", 0, 1000), &changes).await;
        assert_eq!(counts.upserted, 1201);
        assert_eq!(w.count_won_in_window(t(0), t(1000)).await.expect("count"), 1201);
        w.drop_dataset().await.expect("drop the test dataset");
    }

    #[tokio::test]
    async fn the_analyst_views_answer_from_current_won_deals_only() {
        let Some(w) = emulator_warehouse("views").await else { return };
        w.prepare().await.expect("prepare");
        let mut a = deal("1", 10);
        a.amount = Some(dec("1000.10"));
        a.created_time = Some(t(-10 * 86400));
        a.closing_date = NaiveDate::from_ymd_opt(2026, 10, 30);
        let mut b = deal("2", 10);
        b.amount = Some(dec("0.2"));
        let mut c = deal("3", 10);
        c.amount = Some(dec("5"));
        sync(&w, &run("r1", 0, 1000), &[DealChange::Won(a), DealChange::Won(b), DealChange::Won(c), won("4", 10)])
            .await;
        sync(&w, &run("r2", 0, 1000), &[unwon("3", 20), deleted("4", 30)]).await;

        let current = w
            .query_text("SELECT deal_id FROM `{{dataset}}.current_won_deals` ORDER BY deal_id")
            .await
            .expect("current_won_deals");
        assert_eq!(current, vec![vec![Some("1".to_owned())], vec![Some("2".to_owned())]]);

        let revenue = w
            .query_text(
                "SELECT CAST(closing_month AS STRING), owner_id, currency, deals, revenue \
                 FROM `{{dataset}}.won_revenue_by_month_owner`",
            )
            .await
            .expect("won_revenue_by_month_owner");
        assert_eq!(revenue.len(), 1, "{revenue:?}");
        let row = &revenue[0];
        assert_eq!(row[0].as_deref(), Some("2026-10-01"));
        assert_eq!(row[2].as_deref(), Some("EUR"));
        assert_eq!(row[3].as_deref(), Some("2"));
        let total = Decimal::from_str(row[4].as_deref().expect("revenue")).expect("decimal");
        assert_eq!(total, dec("1000.3"), "money is summed exactly");

        let days = w
            .query_text("SELECT deal_id, days_to_close FROM `{{dataset}}.time_to_close` WHERE deal_id = '1'")
            .await
            .expect("time_to_close");
        // Created 2026-10-22 (ten days before t(0) = 2026-11-01), closed 2026-10-30.
        assert_eq!(days, vec![vec![Some("1".to_owned()), Some("8".to_owned())]]);
        w.drop_dataset().await.expect("drop the test dataset");
    }
}
