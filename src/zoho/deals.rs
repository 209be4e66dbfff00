//! Reading Deals: won-stage discovery from the Stage metadata, COQL keyset paging inside a fixed window,
//! the count used for reconciliation, and deleted records.
//!
//! Paging is keyset on `id` (`… and id > {last} order by id asc limit 2000`), never OFFSET: OFFSET stops at
//! 100,000 rows and skips or repeats rows when deals change under it. The window's upper bound is fixed for
//! the whole run, so a deal modified during the run leaves this window and lands in the next one.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::ZohoClient;
use super::model::{self, STANDARD_FIELDS};
use super::Error;

/// COQL's maximum LIMIT.
pub const PAGE_SIZE: u32 = 2000;
/// COQL's maximum number of selected columns.
const MAX_COLUMNS: usize = 50;
/// Get Records / deleted records: at most 200 per page.
const DELETED_PAGE_SIZE: u32 = 200;

/// What the Deals metadata tells us.
#[derive(Debug, Clone, PartialEq)]
pub struct DealsMetadata {
    /// Stage values whose forecast type / deal category is "Closed Won" (actual and display values).
    pub won_stages: Vec<String>,
    /// API names of custom fields, selected too so that `raw` keeps them.
    pub custom_fields: Vec<String>,
}

/// How to page `expected` rows with at most `concurrency` concurrent streams, spending the fewest credits:
/// COQL charges by LIMIT (1–200: 1 credit, 201–1000: 2, 1001–2000: 3), so a small nightly delta is read with
/// a small LIMIT, and a window is cut into time slices only when each slice still fills a few pages.
/// Returns `(slices, page_size)`. The count is only an estimate: paging goes on until a page is not full.
pub fn plan_pages(expected: u64, concurrency: usize) -> (usize, u32) {
    const ROWS_PER_SLICE: u64 = 2 * PAGE_SIZE as u64;
    let slices = expected.div_ceil(ROWS_PER_SLICE).clamp(1, concurrency.max(1) as u64) as usize;
    let per_slice = expected.div_ceil(slices as u64);
    let page_size = match per_slice {
        0..=200 => 200,
        201..=1000 => 1000,
        _ => PAGE_SIZE,
    };
    (slices, page_size)
}

/// A `Modified_Time` window: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// Splits the window into at most `n` consecutive slices of equal length (whole seconds).
    pub fn slices(&self, n: usize) -> Vec<Window> {
        let total = (self.end - self.start).num_seconds().max(0);
        let n = (n.max(1) as i64).min(total.max(1));
        let step = total / n;
        (0..n)
            .map(|i| Window {
                start: self.start + chrono::Duration::seconds(i * step),
                end: if i == n - 1 { self.end } else { self.start + chrono::Duration::seconds((i + 1) * step) },
            })
            .collect()
    }
}

/// Which deals a query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageFilter {
    /// Deals in a won stage.
    Won,
    /// Deals not in a won stage (to flag rows that left "won").
    NotWon,
}

/// Loads the Deals field metadata: won stages and custom fields.
pub async fn metadata(client: &ZohoClient) -> Result<DealsMetadata, Error> {
    let body = client
        .get("settings/fields", &[("module", "Deals".to_owned())], &[])
        .await?
        .ok_or_else(|| malformed("settings/fields", "no content"))?;
    parse_metadata(&body)
}

/// Parses `GET /settings/fields?module=Deals`.
pub fn parse_metadata(body: &Value) -> Result<DealsMetadata, Error> {
    let fields = body
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("settings/fields", "no `fields` array"))?;
    let mut won_stages = Vec::new();
    let mut custom_fields = Vec::new();
    for field in fields {
        let api_name = field.get("api_name").and_then(Value::as_str).unwrap_or_default();
        if field.get("custom_field").and_then(Value::as_bool) == Some(true) && !api_name.is_empty() {
            custom_fields.push(api_name.to_owned());
        }
        if api_name != "Stage" {
            continue;
        }
        for v in field.get("pick_list_values").and_then(Value::as_array).into_iter().flatten() {
            let is_won = ["forecast_type", "deal_category"]
                .iter()
                .any(|k| v.get(*k).and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("Closed Won")));
            if !is_won {
                continue;
            }
            // Which of the two values records carry is unconfirmed: match on both.
            for key in ["actual_value", "display_value"] {
                if let Some(s) = v.get(key).and_then(Value::as_str) {
                    if !won_stages.iter().any(|w| w == s) {
                        won_stages.push(s.to_owned());
                    }
                }
            }
        }
    }
    if won_stages.is_empty() {
        return Err(malformed(
            "settings/fields",
            "no Stage pick-list value has forecast type \"Closed Won\"; set ZOHO_WON_STAGES to the won stage names",
        ));
    }
    Ok(DealsMetadata { won_stages, custom_fields })
}

/// The columns a won-deal query selects: the standard ones plus as many custom fields as fit.
pub fn select_columns(meta: &DealsMetadata) -> Vec<String> {
    let mut cols: Vec<String> = STANDARD_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    for c in &meta.custom_fields {
        if cols.len() >= MAX_COLUMNS {
            tracing::warn!(field = %c, "COQL selects at most 50 columns; this custom field is not kept in raw");
            continue;
        }
        if !cols.contains(c) {
            cols.push(c.clone());
        }
    }
    cols
}

/// A COQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A COQL datetime literal (UTC, no fraction).
fn instant(t: DateTime<Utc>) -> String {
    quote(&t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
}

fn stage_clause(filter: StageFilter, stages: &[String]) -> String {
    let list = stages.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
    match filter {
        StageFilter::Won => format!("Stage in ({list})"),
        StageFilter::NotWon => format!("Stage not in ({list})"),
    }
}

/// What a paged query selects.
#[derive(Debug, Clone, Copy)]
pub struct DealQuery<'a> {
    pub columns: &'a [String],
    pub filter: StageFilter,
    pub stages: &'a [String],
    pub window: Window,
    /// Rows per page: [`PAGE_SIZE`] in production (fewest credits per row); smaller in tests.
    pub page_size: u32,
}

/// The keyset page query. Zoho wants more than two criteria parenthesised in pairs: `((A and B) and (C and D))`.
pub fn page_query(q: &DealQuery<'_>, after_id: &str) -> String {
    format!(
        "select {} from Deals where (({} and Modified_Time >= {}) and (Modified_Time < {} and id > {})) order by id asc limit {}",
        q.columns.join(", "),
        stage_clause(q.filter, q.stages),
        instant(q.window.start),
        instant(q.window.end),
        after_id,
        q.page_size
    )
}

/// One page of records and whether Zoho says there are more.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Value>,
    pub more: bool,
}

/// Parses a COQL or Get Records body (`None` = 204).
pub fn parse_page(endpoint: &str, body: Option<Value>) -> Result<Page, Error> {
    let Some(mut body) = body else {
        return Ok(Page { records: Vec::new(), more: false });
    };
    let more = body.pointer("/info/more_records").and_then(Value::as_bool).unwrap_or(false);
    match body.get_mut("data").map(Value::take) {
        Some(Value::Array(records)) => Ok(Page { records, more }),
        Some(other) => Err(malformed(endpoint, &format!("`data` is not an array but {other:.40}"))),
        None => Err(malformed(endpoint, "no `data` in the response")),
    }
}

/// Pages through the deals `q` selects, calling `on_page` for each page in id order. Stops early (returning
/// `Ok`) when `on_page` returns `false`.
pub async fn page_deals<F, Fut>(client: &ZohoClient, q: &DealQuery<'_>, mut on_page: F) -> Result<(), Error>
where
    F: FnMut(Vec<Value>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let fetch = |after: String| async move {
        let page = parse_page("coql", client.coql(&page_query(q, &after), q.page_size).await?)?;
        tracing::debug!(records = page.records.len(), more = page.more, after = %after, "COQL page");
        Ok::<_, Error>(page)
    };
    let mut after = "0".to_owned();
    let mut page = fetch(after.clone()).await?;
    loop {
        let n = page.records.len();
        // The next key is the largest id of this page; a page whose ids we cannot read cannot be paged past.
        let last = page.records.iter().filter_map(model::record_id).max_by(|a, b| cmp_ids(a, b));
        let next = match last {
            Some(id) if page.more || n as u32 >= q.page_size => {
                if cmp_ids(&id, &after) != std::cmp::Ordering::Greater {
                    return Err(malformed("coql", "keyset paging did not advance (ids not ascending)"));
                }
                Some(id)
            }
            None if n > 0 && page.more => {
                return Err(malformed("coql", "a page had no readable ids, so paging cannot continue"));
            }
            _ => None,
        };
        let Some(next) = next else {
            on_page(page.records).await;
            return Ok(());
        };
        // The next page is requested as soon as its key is known, while this one is handed over: Zoho's time
        // to answer overlaps with mapping and loading.
        let (keep_going, fetched) = tokio::join!(on_page(page.records), fetch(next.clone()));
        if !keep_going {
            return Ok(());
        }
        page = fetched?;
        after = next;
    }
}

/// Numeric order of record ids (ids are digit strings of varying length).
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Zoho's count of won deals modified in the window (for reconciliation and `--dry-run`).
pub async fn count_deals(client: &ZohoClient, stages: &[String], window: Window) -> Result<u64, Error> {
    count_matching(client, StageFilter::Won, stages, window).await
}

/// Zoho's count of the deals `filter` selects in the window (one credit).
pub async fn count_matching(
    client: &ZohoClient,
    filter: StageFilter,
    stages: &[String],
    window: Window,
) -> Result<u64, Error> {
    let query = format!(
        "select COUNT(id) from Deals where ({} and (Modified_Time >= {} and Modified_Time < {}))",
        stage_clause(filter, stages),
        instant(window.start),
        instant(window.end)
    );
    let body = client.coql(&query, 1).await?;
    let page = parse_page("coql", body)?;
    let Some(first) = page.records.first() else { return Ok(0) };
    first
        .as_object()
        .and_then(|o| o.values().find_map(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))))
        .ok_or_else(|| malformed("coql", "the COUNT(id) answer has no number"))
}

/// A deal deleted in Zoho.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedDeal {
    pub id: String,
    pub deleted_time: DateTime<Utc>,
}

/// Deals deleted since `since` (recycle bin and permanent), via `GET /Deals/deleted` with `If-Modified-Since`.
pub async fn deleted_since(client: &ZohoClient, since: DateTime<Utc>) -> Result<Vec<DeletedDeal>, Error> {
    let mut out = Vec::new();
    let header = since.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    for page in 1.. {
        let body = client
            .get(
                "Deals/deleted",
                &[("type", "all".into()), ("page", page.to_string()), ("per_page", DELETED_PAGE_SIZE.to_string())],
                &[("If-Modified-Since", header.clone())],
            )
            .await?;
        let page = parse_page("Deals/deleted", body)?;
        for r in &page.records {
            let id = model::record_id(r);
            let at = r.get("deleted_time").and_then(Value::as_str).and_then(model::parse_datetime);
            match (id, at) {
                (Some(id), Some(deleted_time)) if deleted_time >= since => out.push(DeletedDeal { id, deleted_time }),
                (Some(_), Some(_)) => {}
                _ => tracing::warn!(record = %format!("{r:.200}"), "skipping an unreadable deleted-record entry"),
            }
        }
        if !page.more || page.records.is_empty() {
            break;
        }
    }
    Ok(out)
}

fn malformed(endpoint: &str, detail: &str) -> Error {
    Error::Malformed { endpoint: endpoint.to_owned(), detail: detail.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn both_won_stages_are_discovered_by_forecast_type() {
        let body = json!({"fields":[
            {"api_name":"Stage","pick_list_values":[
                {"display_value":"Qualification","actual_value":"Qualification","forecast_type":"Open"},
                {"display_value":"Closed Won","actual_value":"Closed Won","forecast_type":"Closed Won"},
                {"display_value":"Won - Renewal","actual_value":"Closed Won - Renewal","forecast_type":"Closed Won"},
                {"display_value":"Closed Lost","actual_value":"Closed Lost","forecast_type":"Closed Lost"}]},
            {"api_name":"Region__c","custom_field":true}]});
        let meta = parse_metadata(&body).expect("parses");
        assert_eq!(meta.won_stages, vec!["Closed Won", "Closed Won - Renewal", "Won - Renewal"]);
        assert_eq!(meta.custom_fields, vec!["Region__c"]);
    }

    #[test]
    fn the_page_query_pairs_its_criteria_and_escapes_quotes() {
        let w = Window {
            start: Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).single().expect("valid"),
            end: Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).single().expect("valid"),
        };
        let (cols, stages) = (vec!["id".to_owned()], vec!["O'Won".to_owned()]);
        let q = DealQuery { columns: &cols, filter: StageFilter::Won, stages: &stages, window: w, page_size: 2000 };
        let q = page_query(&q, "42");
        assert_eq!(
            q,
            "select id from Deals where ((Stage in ('O\\'Won') and Modified_Time >= '2026-11-27T00:00:00+00:00') \
             and (Modified_Time < '2026-11-28T00:00:00+00:00' and id > 42)) order by id asc limit 2000"
        );
    }

    #[test]
    fn slices_cover_the_window_exactly() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).single().expect("valid");
        let w = Window { start, end: start + chrono::Duration::seconds(10_001) };
        let s = w.slices(4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].start, w.start);
        assert_eq!(s[3].end, w.end);
        assert!(s.windows(2).all(|p| p[0].end == p[1].start));
        assert_eq!(Window { start, end: start }.slices(4).len(), 1);
    }

    #[test]
    fn small_deltas_use_cheap_pages_and_big_windows_are_sliced() {
        assert_eq!(plan_pages(0, 4), (1, 200));
        assert_eq!(plan_pages(150, 4), (1, 200));
        assert_eq!(plan_pages(763, 4), (1, 1000));
        assert_eq!(plan_pages(3000, 4), (1, 2000));
        assert_eq!(plan_pages(9000, 4), (3, 2000));
        assert_eq!(plan_pages(1_000_000, 4), (4, 2000));
        assert_eq!(plan_pages(1_000_000, 1), (1, 2000));
    }

    #[test]
    fn ids_compare_numerically() {
        assert_eq!(cmp_ids("99", "100"), std::cmp::Ordering::Less);
        assert_eq!(cmp_ids("5725767000000000002", "5725767000000000010"), std::cmp::Ordering::Less);
    }

    #[test]
    fn a_204_is_an_empty_last_page() {
        let p = parse_page("coql", None).expect("ok");
        assert!(p.records.is_empty() && !p.more);
        assert!(parse_page("coql", Some(json!({"data": 3}))).is_err());
    }
}
