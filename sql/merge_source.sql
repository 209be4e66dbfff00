-- The staged won/un-won changes of one run, one per deal: the newest modified_time wins, and at an equal
-- modified_time a won version beats an un-won one. Redelivered batches (same rows again) collapse here.
SELECT *
FROM `{{dataset}}.{{staging}}`
WHERE change_kind IN ('won', 'unwon')
QUALIFY ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY modified_time DESC, change_kind = 'won' DESC) = 1
