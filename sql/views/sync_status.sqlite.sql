-- SQLite's sync_status: the same columns and meaning as BigQuery's `sql/views/sync_status.sql` (timestamps are
-- RFC 3339 text, as everywhere in the SQLite warehouse).
CREATE VIEW sync_status AS
WITH
  last_success AS (
    SELECT run_id, kind, finished_at, window_start, window_end
    FROM sync_runs
    WHERE status = 'succeeded'
    ORDER BY window_end DESC, started_at DESC
    LIMIT 1
  ),
  failures AS (
    SELECT COUNT(*) AS consecutive_failures
    FROM sync_runs
    WHERE status = 'failed'
      AND started_at > COALESCE((SELECT MAX(started_at) FROM sync_runs WHERE status = 'succeeded'), '')
  ),
  last_failure AS (
    SELECT run_id AS last_failed_run_id, finished_at AS last_failed_at, error AS last_error
    FROM sync_runs
    WHERE status = 'failed'
    ORDER BY started_at DESC
    LIMIT 1
  ),
  reconciliation AS (
    SELECT run_id AS reconciled_run_id, zoho_won_count, warehouse_won_count
    FROM sync_runs
    WHERE status = 'succeeded' AND zoho_won_count IS NOT NULL
    ORDER BY started_at DESC
    LIMIT 1
  ),
  quarantine AS (
    SELECT COUNT(*) AS open_quarantines FROM quarantined_deals
  )
SELECT
  s.run_id AS last_success_run_id,
  s.kind AS last_success_kind,
  s.finished_at AS last_success_at,
  s.window_start AS last_success_window_start,
  s.window_end AS last_success_window_end,
  CAST(ROUND((julianday('now') - julianday(s.window_end)) * 86400) AS INTEGER) AS age_seconds,
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
LEFT JOIN last_success s ON 1
LEFT JOIN last_failure lf ON 1
LEFT JOIN reconciliation r ON 1
