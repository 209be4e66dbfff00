-- Runs on: bigquery. APPROX_QUANTILES has no SQLite counterpart.
-- Example: median and 90th percentile days to close per owner, for deals closed this year.
SELECT
  owner_name,
  COUNT(*) AS deals,
  APPROX_QUANTILES(days_to_close, 100)[OFFSET(50)] AS median_days,
  APPROX_QUANTILES(days_to_close, 100)[OFFSET(90)] AS p90_days
FROM `{{dataset}}.time_to_close`
WHERE closing_date >= DATE_TRUNC(CURRENT_DATE(), YEAR)
GROUP BY owner_name
ORDER BY median_days;
