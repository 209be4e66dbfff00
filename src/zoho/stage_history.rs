//! When a deal entered its won stage, from Zoho's stage history (issue #11).
//!
//! Zoho tracks the Deals `Stage` field by default (Kaizen #107): a related list, `Stage_History`, with a row per
//! stage change — the stage, how long the deal stayed, when the change happened (`Modified_Time`), who made it,
//! and the stage it moved to (`Moved_To__s`). Read with Get Related Records,
//! `GET /crm/v8/Deals/{id}/Stage_History?fields=…&page=…&per_page=200`: one credit per call, 200 rows per page,
//! `info.more_records` for more, 204 when there is no row (docs/zoho-api.md §5.6).
//!
//! UNCONFIRMED (§5.6): the exact field API names in v8 and whether a row's `Stage` is the stage *entered* at
//! its time or the stage *left* (with `Moved_To__s` the one entered). [`won_since`] is right either way: the
//! stage a row leaves the deal in is `Moved_To__s` when present, else `Stage`; rows are ordered by time and the
//! answer is the last time the deal went from a not-won stage (or from nothing) into a won stage. A history whose
//! last row does not leave the deal won (a lagging or unreadable history) gives no answer, and the job falls back
//! (`observed`).
//!
//! Not here: which deals to ask about and how many (`sync::won_at`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::ZohoClient;
use super::model::parse_datetime;
use super::Error;

/// Rows per page (Get Related Records' maximum).
const PER_PAGE: u32 = 200;
/// A deal with more than 2,000 stage changes is not a real deal: stop there.
const MAX_PAGES: u32 = 10;
/// The fields asked for. Related-list calls in v8 take an explicit field list.
const FIELDS: &str = "Stage,Moved_To__s,Modified_Time";

/// One stage change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageChange {
    /// The stage the deal was in after this change.
    pub stage_after: String,
    pub at: DateTime<Utc>,
}

/// Reads a deal's stage history (one credit per page; usually one page).
pub async fn read(client: &ZohoClient, deal_id: &str) -> Result<Vec<StageChange>, Error> {
    let path = format!("Deals/{deal_id}/Stage_History");
    let mut out = Vec::new();
    for page in 1..=MAX_PAGES {
        let query = [("fields", FIELDS.to_owned()), ("page", page.to_string()), ("per_page", PER_PAGE.to_string())];
        let Some(body) = client.get(&path, &query, &[]).await? else { break };
        let (rows, more) = parse_page(&body).ok_or_else(|| {
            Error::malformed(
                "Deals/{id}/Stage_History",
                format!("no `data` array in the stage history of deal {deal_id}"),
            )
        })?;
        out.extend(rows);
        if !more {
            break;
        }
    }
    Ok(out)
}

/// One page: its rows (rows without a readable stage or time are skipped) and whether there are more.
pub fn parse_page(body: &Value) -> Option<(Vec<StageChange>, bool)> {
    let data = body.get("data")?.as_array()?;
    let text = |row: &Value, k: &str| match row.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Object(o)) => o.get("name").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let rows = data
        .iter()
        .filter_map(|row| {
            let stage_after = text(row, "Moved_To__s").or_else(|| text(row, "Stage"))?;
            let at = row.get("Modified_Time").and_then(Value::as_str).and_then(parse_datetime)?;
            Some(StageChange { stage_after, at })
        })
        .collect();
    let more = body.pointer("/info/more_records").and_then(Value::as_bool).unwrap_or(false) && !data.is_empty();
    Some((rows, more))
}

/// When the deal last entered a won stage from a stage that is not won, if its history says it is won now.
/// `is_won` decides whether a stage is a won stage (the run's won stages).
pub fn won_since(mut history: Vec<StageChange>, is_won: impl Fn(&str) -> bool) -> Option<DateTime<Utc>> {
    history.sort_by_key(|c| c.at);
    let mut won_since = None;
    let mut was_won = false;
    for change in &history {
        let won = is_won(&change.stage_after);
        if won && !was_won {
            won_since = Some(change.at);
        }
        was_won = won;
    }
    if was_won {
        won_since
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        parse_datetime(s).expect("a datetime")
    }

    fn won(s: &str) -> bool {
        s == "Closed Won" || s == "Won (Partner)"
    }

    #[test]
    fn the_won_date_is_when_the_deal_last_entered_a_won_stage() {
        let page = json!({"data": [
            {"Stage": "Qualification", "Modified_Time": "2026-01-01T09:00:00+05:30"},
            {"Stage": "Closed Won", "Modified_Time": "2026-03-01T10:00:00+05:30"},
            {"Stage": "Negotiation/Review", "Modified_Time": "2026-04-01T10:00:00+05:30"},
            {"Stage": "Closed Won", "Modified_Time": "2026-05-01T10:00:00Z"},
            {"Stage": "Won (Partner)", "Modified_Time": "2026-05-02T10:00:00Z"}
        ], "info": {"more_records": false}});
        let (rows, more) = parse_page(&page).expect("a page");
        assert!(!more);
        // Re-won on May 1st; moving between two won stages afterwards does not move it.
        assert_eq!(won_since(rows, won), Some(at("2026-05-01T10:00:00Z")));
    }

    #[test]
    fn rows_naming_the_stage_moved_to_are_read_by_that_stage_and_order_does_not_matter() {
        let page = json!({"data": [
            {"Stage": "Negotiation/Review", "Moved_To__s": "Closed Won", "Modified_Time": "2026-03-01T10:00:00Z"},
            {"Stage": "Qualification", "Moved_To__s": "Negotiation/Review", "Modified_Time": "2026-02-01T10:00:00Z"}
        ], "info": {"more_records": true}});
        let (rows, more) = parse_page(&page).expect("a page");
        assert!(more);
        assert_eq!(won_since(rows, won), Some(at("2026-03-01T10:00:00Z")));
    }

    #[test]
    fn a_history_that_does_not_end_won_gives_no_date() {
        let rows = vec![
            StageChange { stage_after: "Closed Won".into(), at: at("2026-03-01T10:00:00Z") },
            StageChange { stage_after: "Closed Lost".into(), at: at("2026-03-02T10:00:00Z") },
        ];
        assert_eq!(won_since(rows, won), None);
        assert_eq!(won_since(vec![], won), None);
    }

    #[test]
    fn unreadable_rows_are_skipped_and_a_body_without_data_is_not_a_page() {
        let page = json!({"data": [{"Stage": 5, "Modified_Time": "x"}, {"Stage": "Closed Won"}]});
        assert_eq!(parse_page(&page).expect("a page").0, vec![]);
        assert!(parse_page(&json!({"stage_history": []})).is_none());
    }
}
