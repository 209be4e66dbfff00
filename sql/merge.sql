-- Step 1 of commit: upsert the run's won changes and flag its un-won ones, in ONE statement (one scan of the
-- target). Idempotent: applying it again changes nothing but synced_at.
--
-- Guards:
-- - s.modified_time >= t.modified_time: an older version never overwrites a newer row; an equal one is
--   applied again (redelivery, rerun after a crash).
-- - for won rows, also s.modified_time > t.deleted_time: a version older than a recorded deletion does not
--   resurrect the deal (a rerun of an earlier window after the deletion run must converge to the same table);
--   a deal restored from Zoho's recycle bin gets a newer Modified_Time and comes back.
-- - an un-won change never creates a row.
-- Placeholders: source is merge_source.sql; update_won, insert_columns and insert_values are generated from
-- DEAL_COLUMNS so that a column added later is merged without editing this file.
-- No partition filter on the target: a deal's closing_date can change, so its stored row may sit in any
-- partition (see sql/README.md, "Costs").
MERGE `{{dataset}}.closed_won_deals` AS t
USING (
{{source}}
) AS s
ON t.deal_id = s.deal_id
WHEN MATCHED AND s.change_kind = 'won' AND s.modified_time >= t.modified_time
    AND (t.deleted_time IS NULL OR s.modified_time > t.deleted_time) THEN
  -- CAST(NULL AS TIMESTAMP), not NULL: the emulator rejects a bare NULL in a MERGE's UPDATE SET.
  UPDATE SET {{update_won}},
    is_closed_won = TRUE, is_deleted = FALSE, deleted_time = CAST(NULL AS TIMESTAMP),
    synced_at = CURRENT_TIMESTAMP(), run_id = @run_id
WHEN MATCHED AND s.change_kind = 'unwon' AND s.modified_time >= t.modified_time THEN
  UPDATE SET stage = s.stage, modified_time = s.modified_time, is_closed_won = FALSE,
    synced_at = CURRENT_TIMESTAMP(), run_id = @run_id
WHEN NOT MATCHED BY TARGET AND s.change_kind = 'won' THEN
  INSERT ({{insert_columns}})
  VALUES ({{insert_values}})
