-- Runs on: both (portable: on SQLite drop the dataset prefix before the table name).
-- Example: the last 20 sync runs, with their reconciliation figures (zoho_won_count vs warehouse_won_count).
SELECT run_id, kind, status, started_at, finished_at, window_start, window_end,
  deals_upserted, deals_unwon, deals_deleted, deals_quarantined, zoho_won_count, warehouse_won_count, error
FROM `{{dataset}}.sync_runs`
ORDER BY started_at DESC
LIMIT 20;
