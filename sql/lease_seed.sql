-- prepare: the lease row, when the table has none. Two first-ever prepares racing could both insert it (an
-- INSERT does not conflict); that is harmless: lease_take.sql updates every row in one statement, so the rows
-- always name the same holder, and a take counts as won when it updated any row.
INSERT INTO `{{dataset}}.sync_lease` (id, holder, expires_at)
SELECT 1, CAST(NULL AS STRING), CAST(NULL AS TIMESTAMP)
FROM UNNEST([1])
WHERE NOT EXISTS (SELECT 1 FROM `{{dataset}}.sync_lease`)
