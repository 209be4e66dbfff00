-- Repair: keep one row per deal_id in closed_won_deals (the newest modified_time, then the latest synced_at,
-- then run_id), deleting the others. The job never needs it (the lease keeps two runs from inserting the same
-- new deal), but a deal stored twice would stay twice for good, so this is the documented way out; the
-- analyst views already read one row per deal. Run it by hand with the dataset placeholder replaced, or see sql/README.md.
-- Idempotent: on a table without duplicates it deletes nothing.
DELETE FROM `{{dataset}}.closed_won_deals` AS t
WHERE EXISTS (
  SELECT 1
  FROM `{{dataset}}.closed_won_deals` AS o
  WHERE o.deal_id = t.deal_id
    AND (o.modified_time > t.modified_time
      OR (o.modified_time = t.modified_time AND o.synced_at > t.synced_at)
      OR (o.modified_time = t.modified_time AND o.synced_at = t.synced_at AND o.run_id > t.run_id))
)
