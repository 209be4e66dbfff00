-- Step 2b of commit: flag deals `reconcile` found gone from Zoho (past Zoho's deletion retention, so the deletion
-- time is unknown): is_deleted with a NULL deleted_time, only on rows not already flagged deleted (a known
-- deletion time is kept). No row is created.
UPDATE `{{dataset}}.closed_won_deals` AS t
SET is_deleted = TRUE, deleted_time = NULL, synced_at = CURRENT_TIMESTAMP(), run_id = @run_id
WHERE NOT t.is_deleted
  AND t.deal_id IN (
    SELECT deal_id FROM `{{dataset}}.{{staging}}` WHERE change_kind = 'vanished'
  )
