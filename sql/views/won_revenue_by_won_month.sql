-- Won revenue per month the deals were won (won_at, UTC) and home currency: one figure per month, exact
-- (NUMERIC sums). Deals whose won date is unknown (won_at_source = 'unknown': first seen in a backfill) are the
-- row with a NULL won_month. The SQLite view has the same columns (won_month as 'YYYY-MM-01' text, sums as exact
-- decimal text).
CREATE OR REPLACE VIEW `{{dataset}}.won_revenue_by_won_month`
OPTIONS (description = 'Won revenue per month of won_at and home currency, exact')
AS
SELECT
  DATE_TRUNC(DATE(won_at), MONTH) AS won_month,
  home_currency,
  COUNT(*) AS deals,
  SUM(amount_home) AS revenue_home,
  SUM(expected_revenue_home) AS expected_revenue_home
FROM `{{dataset}}.current_won_deals`
GROUP BY won_month, home_currency;
