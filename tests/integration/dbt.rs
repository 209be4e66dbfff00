//! `dbt/models/sources.yml` against the job's own table definitions: it parses, it names every table and view
//! the job creates, each with exactly the columns the job writes (read back from a real SQLite warehouse after
//! `prepare`, from `DEAL_COLUMNS`, and from the BigQuery DDL in `sql/`), every column has a description, and
//! the keys carry `unique`/`not_null` tests. No dbt run is needed.

use std::collections::BTreeSet;

use yaml_rust2::{Yaml, YamlLoader};
use zoho_deals_sync::warehouse::sqlite::SqliteWarehouse;
use zoho_deals_sync::warehouse::{Warehouse, DEAL_COLUMNS};

const SOURCES: &str = include_str!("../../dbt/models/sources.yml");

fn source() -> Yaml {
    let docs = YamlLoader::load_from_str(SOURCES).expect("dbt/models/sources.yml is YAML");
    let doc = docs.into_iter().next().expect("one document");
    assert_eq!(doc["version"].as_i64(), Some(2), "dbt's properties format version 2");
    let sources = doc["sources"].as_vec().expect("a sources list");
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["name"].as_str(), Some("zoho_deals_sync"));
    sources[0].clone()
}

fn table<'a>(src: &'a Yaml, name: &str) -> &'a Yaml {
    src["tables"]
        .as_vec()
        .expect("tables")
        .iter()
        .find(|t| t["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("sources.yml has no table {name}"))
}

fn column_names(t: &Yaml) -> BTreeSet<String> {
    t["columns"]
        .as_vec()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("a column name").to_owned())
        .collect()
}

/// Column names of a `CREATE TABLE` in BigQuery DDL: the first word of each line between the parentheses.
fn ddl_columns(ddl: &str) -> BTreeSet<String> {
    let body = &ddl[ddl.find("(\n").expect("a column list")..];
    let body = &body[..body.find("\n)").expect("its end")];
    body.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_dbt_sources_name_every_table_and_view_with_exactly_the_columns_the_job_writes() {
    let src = source();
    let dir = tempfile::tempdir().expect("dir");
    let w = SqliteWarehouse::open(&dir.path().join("w.sqlite3")).expect("open");
    w.prepare().await.expect("prepare");
    drop(w);
    let conn = rusqlite::Connection::open(dir.path().join("w.sqlite3")).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .expect("prepare");
    let objects: Vec<String> = stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect();
    assert!(objects.len() >= 7, "{objects:?}");

    let named: BTreeSet<String> =
        src["tables"].as_vec().expect("tables").iter().map(|t| t["name"].as_str().expect("name").to_owned()).collect();
    assert_eq!(
        named,
        objects.iter().cloned().collect::<BTreeSet<_>>(),
        "every table and view the job creates, no other"
    );

    for name in &objects {
        let mut info = conn.prepare(&format!("PRAGMA table_info({name})")).expect("pragma");
        let actual: BTreeSet<String> =
            info.query_map([], |r| r.get(1)).expect("query").map(|r| r.expect("row")).collect();
        assert_eq!(column_names(table(&src, name)), actual, "columns of {name}");
    }

    let deal_columns: BTreeSet<String> = DEAL_COLUMNS.iter().map(|c| c.name.to_owned()).collect();
    assert_eq!(column_names(table(&src, "closed_won_deals")), deal_columns, "closed_won_deals = DEAL_COLUMNS");
    assert_eq!(
        column_names(table(&src, "sync_runs")),
        ddl_columns(include_str!("../../sql/sync_runs.sql")),
        "sync_runs = BigQuery's DDL"
    );
    assert_eq!(
        column_names(table(&src, "quarantined_deals")),
        ddl_columns(include_str!("../../sql/quarantined_deals.sql")),
        "quarantined_deals = BigQuery's DDL"
    );
}

#[test]
fn every_column_is_described_and_the_keys_are_tested_unique_and_not_null() {
    let src = source();
    for t in src["tables"].as_vec().expect("tables") {
        let name = t["name"].as_str().expect("name");
        assert!(t["description"].as_str().is_some_and(|d| !d.trim().is_empty()), "{name} has a description");
        for c in t["columns"].as_vec().expect("columns") {
            let keys: Vec<&str> = c.as_hash().expect("a mapping").keys().filter_map(Yaml::as_str).collect();
            assert!(keys.iter().all(|k| ["name", "description", "tests"].contains(k)), "{name}: {keys:?}");
            assert!(
                c["description"].as_str().is_some_and(|d| !d.trim().is_empty()),
                "{name}.{:?} has a description",
                c["name"]
            );
        }
    }
    for (t, key) in [
        ("closed_won_deals", "deal_id"),
        ("current_won_deals", "deal_id"),
        ("quarantined_deals", "deal_id"),
        ("time_to_close", "deal_id"),
        ("sync_runs", "run_id"),
    ] {
        let col = table(&src, t)["columns"]
            .as_vec()
            .expect("columns")
            .iter()
            .find(|c| c["name"].as_str() == Some(key))
            .cloned()
            .unwrap_or_else(|| panic!("{t}.{key}"));
        let tests: Vec<&str> =
            col["tests"].as_vec().map(|v| v.iter().filter_map(Yaml::as_str).collect()).unwrap_or_default();
        assert!(tests.contains(&"unique") && tests.contains(&"not_null"), "{t}.{key} tests: {tests:?}");
    }
}

#[test]
fn freshness_is_on_the_ledgers_succeeded_window_end_and_on_synced_at() {
    let src = source();
    let runs = table(&src, "sync_runs");
    assert_eq!(runs["loaded_at_field"].as_str(), Some("window_end"));
    assert_eq!(runs["freshness"]["filter"].as_str(), Some("status = 'succeeded'"));
    assert!(runs["freshness"]["error_after"]["count"].as_i64().is_some());
    assert_eq!(table(&src, "closed_won_deals")["loaded_at_field"].as_str(), Some("synced_at"));
}
