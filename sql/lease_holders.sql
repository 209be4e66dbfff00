-- begin_run, after inserting its own row: every run holding a live lease. The earliest (started_at, run_id)
-- wins; the others mark themselves failed and report Busy.
SELECT run_id, UNIX_MICROS(started_at) AS started_at, UNIX_MICROS(lease_expires_at) AS lease_expires_at
FROM `{{dataset}}.sync_runs`
WHERE status = 'running' AND lease_expires_at > CURRENT_TIMESTAMP()
ORDER BY started_at, run_id
