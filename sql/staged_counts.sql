-- commit, before the merge: the distinct changes (kind, deal id, version) the staging table holds, per kind.
-- The job compares them with what it staged; any shortfall fails the run (the watermark stays).
SELECT change_kind,
  -- A `vanished` change has no time at all: CONCAT with a NULL is NULL, which COUNT(DISTINCT) would skip.
  COUNT(DISTINCT CONCAT(deal_id, ':', COALESCE(CAST(UNIX_MICROS(COALESCE(modified_time, deleted_time)) AS STRING), '-')))
FROM `{{dataset}}.{{staging}}`
GROUP BY change_kind
