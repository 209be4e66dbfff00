-- A succeeded run's recorded figures (a commit repeated after its staging was dropped answers with these).
SELECT status, deals_upserted, deals_unwon, deals_deleted, warehouse_won_count
FROM `{{dataset}}.sync_runs`
WHERE run_id = @run_id
