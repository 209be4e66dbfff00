-- Commit step 2c (1 of 2): close the current history version of every deal this run's merge wrote whose stored
-- state (modified_time, is_closed_won, is_deleted, deleted_time) is no longer that version's. valid_to is the
-- new version's time: modified_time, or deleted_time for a deletion (synced_at when Zoho no longer says).
-- Idempotent: once closed, a version is not current and is not touched again; an equal version re-applied by a
-- rerun or an overlapping window changes no state and closes nothing.
UPDATE `{{dataset}}.closed_won_deals_history` AS h
SET valid_to = IF(t.is_deleted, IFNULL(t.deleted_time, t.synced_at), t.modified_time), is_current = FALSE
FROM (
  SELECT * FROM `{{dataset}}.closed_won_deals` WHERE run_id = @run_id
  QUALIFY ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY modified_time DESC, synced_at DESC) = 1
) AS t
WHERE t.deal_id = h.deal_id AND h.is_current
  AND NOT (h.modified_time = t.modified_time AND h.is_closed_won = t.is_closed_won AND h.is_deleted = t.is_deleted
    AND IFNULL(h.deleted_time, TIMESTAMP '1970-01-01 00:00:00+00') = IFNULL(t.deleted_time, TIMESTAMP '1970-01-01 00:00:00+00'))
