-- Won, not deleted deals modified in [@start, @end): the warehouse side of the reconciliation with Zoho.
SELECT COUNT(*)
FROM `{{dataset}}.closed_won_deals`
WHERE is_closed_won AND NOT is_deleted AND modified_time >= @start AND modified_time < @end
