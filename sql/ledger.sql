-- The ledger, newest first.
SELECT run_id, kind, status, UNIX_MICROS(window_start), UNIX_MICROS(window_end), deals_upserted, error,
  deals_unwon, deals_deleted, warehouse_won_count,
  UNIX_MICROS(started_at), UNIX_MICROS(finished_at), zoho_won_count
FROM `{{dataset}}.sync_runs`
ORDER BY started_at DESC, run_id DESC
