-- Commit step 2c (2 of 2): the stored state of every deal this run's merge wrote becomes its current history
-- version, unless a current version with that state exists (so a rerun after a crash anywhere in the commit, or
-- an overlapping window, writes no version twice). change: deleted / unwon from the row's flags; won when the
-- deal had no version yet or its previous one was not won (a re-win); edited otherwise.
-- Placeholders: columns and t_columns are the copied closed_won_deals columns (DEAL_COLUMNS but deal_id and raw,
-- then the custom columns declare_fields chose: see history_column_names in src/warehouse/mod.rs).
INSERT INTO `{{dataset}}.closed_won_deals_history` (deal_id, valid_from, valid_to, is_current, change, {{columns}})
SELECT
  t.deal_id,
  IF(t.is_deleted, IFNULL(t.deleted_time, t.synced_at), t.modified_time),
  CAST(NULL AS TIMESTAMP),
  TRUE,
  CASE
    WHEN t.is_deleted THEN 'deleted'
    WHEN NOT t.is_closed_won THEN 'unwon'
    WHEN p.deal_id IS NULL OR NOT p.is_closed_won OR p.is_deleted THEN 'won'
    ELSE 'edited'
  END,
  {{t_columns}}
FROM (
  SELECT * FROM `{{dataset}}.closed_won_deals` WHERE run_id = @run_id
  QUALIFY ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY modified_time DESC, synced_at DESC) = 1
) AS t
LEFT JOIN (
  SELECT deal_id, is_closed_won, is_deleted
  FROM `{{dataset}}.closed_won_deals_history`
  WHERE deal_id IN (SELECT deal_id FROM `{{dataset}}.closed_won_deals` WHERE run_id = @run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY valid_from DESC, is_current DESC) = 1
) AS p
ON p.deal_id = t.deal_id
WHERE NOT EXISTS (
  SELECT 1 FROM `{{dataset}}.closed_won_deals_history` AS h
  WHERE h.deal_id = t.deal_id AND h.is_current
    AND h.modified_time = t.modified_time AND h.is_closed_won = t.is_closed_won AND h.is_deleted = t.is_deleted
    AND IFNULL(h.deleted_time, TIMESTAMP '1970-01-01 00:00:00+00') = IFNULL(t.deleted_time, TIMESTAMP '1970-01-01 00:00:00+00')
)
