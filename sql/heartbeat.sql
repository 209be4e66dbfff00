-- heartbeat: extends this run's lease to now + TTL (BigQuery's clock).
UPDATE `{{dataset}}.sync_runs`
SET heartbeat_at = CURRENT_TIMESTAMP(),
  lease_expires_at = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @lease_ttl_ms MILLISECOND)
WHERE run_id = @run_id AND status = 'running'
