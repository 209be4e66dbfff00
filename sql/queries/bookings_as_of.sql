-- Runs on: both (portable: only standard SQL the two dialects share; the test writes @as_of in as a literal).
-- Bookings as of a moment: every deal that was won (and not deleted) at @as_of, as its version at that moment
-- said — for "what were Q3 bookings as of Oct 1" and commission statements that must not move afterwards. Time
-- is Zoho's: a version is valid from its Modified_Time (a deletion from its deletion time) until the next version.
-- Add `AND h.won_at >= … AND h.won_at < …` (or closing_date) to keep one quarter; sum amount_home for the total.
--
-- Runs on both warehouses (tests/integration/money_history.rs runs it):
--   BigQuery: bq query --use_legacy_sql=false --parameter='as_of:TIMESTAMP:2026-10-01 00:00:00+00' < this file,
--             with {{dataset}} replaced by project.dataset;
--   SQLite:   remove `{{dataset}}.` and, in the sqlite3 shell, `.parameter set @as_of '2026-10-01T00:00:00Z'`
--             (timestamps are RFC 3339 UTC text there).
SELECT
  h.deal_id,
  h.deal_name,
  h.owner_id,
  h.owner_name,
  h.stage,
  h.currency,
  h.amount,
  h.home_currency,
  h.amount_home,
  h.won_at,
  h.won_at_source,
  h.closing_date,
  h.valid_from
FROM `{{dataset}}.closed_won_deals_history` AS h
WHERE h.valid_from <= @as_of
  AND (h.valid_to IS NULL OR h.valid_to > @as_of)
  AND h.is_closed_won
  AND NOT h.is_deleted
ORDER BY h.deal_id;
