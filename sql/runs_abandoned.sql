-- begin_run, first: a `running` row whose lease expired belongs to a run that died without saying so.
UPDATE `{{dataset}}.sync_runs`
SET status = 'failed', finished_at = CURRENT_TIMESTAMP(),
  error = 'abandoned: the run stopped renewing its lease (killed or crashed)'
WHERE status = 'running' AND lease_expires_at <= CURRENT_TIMESTAMP()
