-- Ids of won, not deleted deals modified in [@start, @end): names what a reconciliation finds missing.
SELECT deal_id
FROM `{{dataset}}.closed_won_deals`
WHERE is_closed_won AND NOT is_deleted AND modified_time >= @start AND modified_time < @end
ORDER BY LENGTH(deal_id), deal_id
