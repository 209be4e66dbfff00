-- begin_run: take the lease if it is free, expired, or already ours (a retried begin_run renews it).
-- Compare-and-set: the affected-row count says whether this run got it (0 = another run holds it).
UPDATE `{{dataset}}.sync_lease`
SET holder = @run_id,
  expires_at = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @lease_ttl_ms MILLISECOND)
WHERE id = 1 AND (holder IS NULL OR holder = @run_id OR expires_at < CURRENT_TIMESTAMP())
