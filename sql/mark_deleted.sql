-- Step 2 of commit: flag deals the run saw deleted. Only rows not modified after the deletion, and never moving
-- an existing deleted_time backwards. A deletion already applied (flagged with the same time) is left alone, so
-- overlapping windows that see it again change nothing and count nothing in the ledger; a known time replaces
-- the NULL of a deal `reconcile` flagged. Deletions of deals that were never stored are ignored (no row is
-- created).
UPDATE `{{dataset}}.closed_won_deals` AS t
SET is_deleted = TRUE, deleted_time = d.deleted_time, synced_at = CURRENT_TIMESTAMP(), run_id = @run_id
FROM (
  SELECT deal_id, MAX(deleted_time) AS deleted_time
  FROM `{{dataset}}.{{staging}}`
  WHERE change_kind = 'deleted'
  GROUP BY deal_id
) AS d
WHERE t.deal_id = d.deal_id
  AND t.modified_time <= d.deleted_time
  AND (NOT t.is_deleted OR t.deleted_time IS NULL OR t.deleted_time < d.deleted_time)
  AND (t.deleted_time IS NULL OR t.deleted_time <= d.deleted_time)
