-- commit (after the ledger) and fail_run: free the lease now rather than after its TTL, if still ours.
UPDATE `{{dataset}}.sync_lease`
SET holder = CAST(NULL AS STRING), expires_at = CAST(NULL AS TIMESTAMP)
WHERE id = 1 AND holder = @run_id
