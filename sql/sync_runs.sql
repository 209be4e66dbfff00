-- The run ledger: one row per run. The watermark is derived from succeeded runs; a `running` row with a live
-- lease_expires_at is the lease that keeps two runs from overlapping. Rows are written with DML (never streamed)
-- so that later UPDATEs can touch them at once (rows in the streaming buffer cannot be updated).
CREATE TABLE IF NOT EXISTS `{{dataset}}.sync_runs` (
  run_id STRING,
  kind STRING OPTIONS (description = 'scheduled | backfill'),
  started_at TIMESTAMP,
  finished_at TIMESTAMP,
  heartbeat_at TIMESTAMP,
  lease_expires_at TIMESTAMP,
  window_start TIMESTAMP OPTIONS (description = 'Inclusive lower bound on Modified_Time'),
  window_end TIMESTAMP OPTIONS (description = 'Exclusive upper bound on Modified_Time'),
  status STRING OPTIONS (description = 'running | succeeded | failed'),
  deals_upserted INT64,
  deals_unwon INT64,
  deals_deleted INT64,
  deals_quarantined INT64,
  api_calls INT64,
  api_credits INT64,
  zoho_won_count INT64,
  warehouse_won_count INT64,
  error STRING
)
OPTIONS (description = 'zoho-deals-sync run ledger');
