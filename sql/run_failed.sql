-- A run ends badly (or lost the lease race): its ledger row says failed, with the error. A succeeded row is
-- never downgraded.
UPDATE `{{dataset}}.sync_runs`
SET status = 'failed',
  finished_at = CURRENT_TIMESTAMP(),
  error = @error,
  deals_quarantined = @deals_quarantined,
  api_calls = @api_calls,
  api_credits = @api_credits
WHERE run_id = @run_id AND status != 'succeeded'
