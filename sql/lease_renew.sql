-- heartbeat, and commit before it merges: extend the lease only if this run still holds it. 0 affected rows =
-- another run took it over (ours had expired): the caller must stop without merging.
UPDATE `{{dataset}}.sync_lease`
SET expires_at = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @lease_ttl_ms MILLISECOND)
WHERE id = 1 AND holder = @run_id
