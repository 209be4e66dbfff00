-- Step 5 of commit: the ledger row gets the run's figures and says `succeeded`, or `failed` with @error when the
-- run stopped early and merged only what it fetched (the credit budget): then the watermark does not move past
-- data that was never read. Only while the run still holds the lease (0 affected rows = it lost it: another
-- run took over, and this one must not claim its window).
UPDATE `{{dataset}}.sync_runs`
SET status = @status,
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
  error = @error
WHERE run_id = @run_id AND status = 'running'
  AND EXISTS (SELECT 1 FROM `{{dataset}}.sync_lease` WHERE id = 1 AND holder = @run_id)
