-- After step 1: how many staged won/un-won changes the merge applied. Counted from the rows that now carry
-- this run's id (not from the DML statistics), so a second commit of the same staging counts the same.
SELECT
  COUNTIF(t.is_closed_won AND s.change_kind = 'won') AS upserted,
  COUNTIF(NOT t.is_closed_won AND s.change_kind = 'unwon') AS unwon
FROM `{{dataset}}.closed_won_deals` AS t
JOIN (
{{source}}
) AS s
ON t.deal_id = s.deal_id
WHERE t.run_id = @run_id
