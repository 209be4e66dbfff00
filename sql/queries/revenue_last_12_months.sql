-- Runs on: bigquery. DATE_SUB/DATE_TRUNC on DATE values are BigQuery's (SQLite's closing_month is text).
-- Example: won revenue per month and owner over the last 12 closing months (replace the dataset
-- placeholder with your `project.dataset`). The closing_date filter prunes partitions: only 12 months are scanned.
SELECT closing_month, owner_name, currency, deals, revenue
FROM `{{dataset}}.won_revenue_by_month_owner`
WHERE closing_month >= DATE_TRUNC(DATE_SUB(CURRENT_DATE(), INTERVAL 11 MONTH), MONTH)
ORDER BY closing_month DESC, revenue DESC;
