-- begin_run, right after this run took the lease: any other `running` row belongs to a run that lost or
-- gave up the lease without saying so (killed, crashed, or its lease expired and this run took over).
UPDATE `{{dataset}}.sync_runs`
SET status = 'failed', finished_at = CURRENT_TIMESTAMP(),
  error = 'abandoned: the run stopped renewing its lease (killed or crashed)'
WHERE status = 'running' AND run_id != @run_id
