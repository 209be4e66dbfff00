-- begin_run, when the take changed nothing: who holds the lease, and until when (for the Busy message).
SELECT holder, UNIX_MICROS(expires_at)
FROM `{{dataset}}.sync_lease`
WHERE id = 1
LIMIT 1
