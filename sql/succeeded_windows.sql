-- The windows of succeeded runs: the watermark is computed from these (covered_until in src/warehouse/mod.rs).
SELECT UNIX_MICROS(window_start), UNIX_MICROS(window_end), kind
FROM `{{dataset}}.sync_runs`
WHERE status = 'succeeded'
