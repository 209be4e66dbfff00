-- begin_run: the run's `running` row, whose lease_expires_at is the lease. Inserted with DML (not streamed) so
-- that it is visible to every later statement at once; NOT EXISTS makes a retried begin_run harmless.
-- Lease times come from BigQuery's clock (CURRENT_TIMESTAMP), the one clock all runs share.
INSERT INTO `{{dataset}}.sync_runs` (
  run_id, kind, started_at, heartbeat_at, lease_expires_at, window_start, window_end, status,
  deals_upserted, deals_unwon, deals_deleted, deals_quarantined, api_calls, api_credits)
SELECT @run_id, @kind, @started_at, CURRENT_TIMESTAMP(),
  TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @lease_ttl_ms MILLISECOND),
  @window_start, @window_end, 'running', 0, 0, 0, 0, 0, 0
FROM UNNEST([1])
WHERE NOT EXISTS (SELECT 1 FROM `{{dataset}}.sync_runs` WHERE run_id = @run_id)
