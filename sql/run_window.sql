-- record_window: the run's window once Zoho's clock has fixed it (begin_run, which comes before any Zoho call,
-- recorded a provisional one). The caller has just renewed the lease, so this run still holds it.
UPDATE `{{dataset}}.sync_runs`
SET window_start = @window_start, window_end = @window_end
WHERE run_id = @run_id AND status = 'running'
