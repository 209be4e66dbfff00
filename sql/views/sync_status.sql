-- Is the table fresh? One row answering what `zoho-deals-sync status` prints, for analysts and BI tools:
-- the newest succeeded run (by window end) and how old its window end is, the failed runs since the newest
-- succeeded one and the last error, the open quarantines, and the last reconciliation (Zoho's count of won deals
-- in a run's window against the warehouse's). The watermark (the end of the contiguous covered interval) is
-- not here: `status` computes it.
CREATE OR REPLACE VIEW `{{dataset}}.sync_status`
OPTIONS (description = 'zoho-deals-sync freshness: last success, its age, failures since, open quarantines')
AS
WITH
  last_success AS (
    SELECT run_id, kind, finished_at, window_start, window_end
    FROM `{{dataset}}.sync_runs`
    WHERE status = 'succeeded'
    ORDER BY window_end DESC, started_at DESC
    LIMIT 1
  ),
  newest_success_start AS (
    SELECT MAX(started_at) AS started_at FROM `{{dataset}}.sync_runs` WHERE status = 'succeeded'
  ),
  failures AS (
    SELECT COUNT(*) AS consecutive_failures
    FROM `{{dataset}}.sync_runs`, newest_success_start n
    WHERE status = 'failed' AND (n.started_at IS NULL OR sync_runs.started_at > n.started_at)
  ),
  last_failure AS (
    SELECT run_id AS last_failed_run_id, finished_at AS last_failed_at, error AS last_error
    FROM `{{dataset}}.sync_runs`
    WHERE status = 'failed'
    ORDER BY started_at DESC
    LIMIT 1
  ),
  reconciliation AS (
    SELECT run_id AS reconciled_run_id, zoho_won_count, warehouse_won_count
    FROM `{{dataset}}.sync_runs`
    WHERE status = 'succeeded' AND zoho_won_count IS NOT NULL
    ORDER BY started_at DESC
    LIMIT 1
  ),
  quarantine AS (
    SELECT COUNT(*) AS open_quarantines FROM `{{dataset}}.quarantined_deals`
  )
SELECT
  s.run_id AS last_success_run_id,
  s.kind AS last_success_kind,
  s.finished_at AS last_success_at,
  s.window_start AS last_success_window_start,
  s.window_end AS last_success_window_end,
  TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), s.window_end, SECOND) AS age_seconds,
  f.consecutive_failures,
  lf.last_failed_run_id,
  lf.last_failed_at,
  lf.last_error,
  q.open_quarantines,
  r.reconciled_run_id,
  r.zoho_won_count,
  r.warehouse_won_count,
  r.zoho_won_count - r.warehouse_won_count AS reconciliation_gap
FROM failures f
CROSS JOIN quarantine q
LEFT JOIN last_success s ON TRUE
LEFT JOIN last_failure lf ON TRUE
LEFT JOIN reconciliation r ON TRUE;
