-- Step 3 of commit: the ledger row says succeeded, with the run's figures. Idempotent.
UPDATE `{{dataset}}.sync_runs`
SET status = 'succeeded',
  finished_at = CURRENT_TIMESTAMP(),
  heartbeat_at = CURRENT_TIMESTAMP(),
  deals_upserted = @deals_upserted,
  deals_unwon = @deals_unwon,
  deals_deleted = @deals_deleted,
  deals_quarantined = @deals_quarantined,
  api_calls = @api_calls,
  api_credits = @api_credits,
  zoho_won_count = @zoho_won_count,
  warehouse_won_count = @warehouse_won_count,
  error = NULL
WHERE run_id = @run_id
