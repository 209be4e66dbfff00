-- Won revenue per closing month and owner, in each deal currency (amounts in different currencies are never
-- added together; convert with exchange_rate yourself if you need one figure).
CREATE OR REPLACE VIEW `{{dataset}}.won_revenue_by_month_owner`
OPTIONS (description = 'Won revenue per closing month, owner and currency')
AS
SELECT
  DATE_TRUNC(closing_date, MONTH) AS closing_month,
  owner_id,
  ANY_VALUE(owner_name) AS owner_name,
  currency,
  COUNT(*) AS deals,
  SUM(amount) AS revenue
FROM `{{dataset}}.current_won_deals`
GROUP BY closing_month, owner_id, currency;
