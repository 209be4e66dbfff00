-- Days from a won deal's creation in Zoho to its closing date (negative when the closing date was back-dated
-- before creation, which happens with imported deals).
CREATE OR REPLACE VIEW `{{dataset}}.time_to_close`
OPTIONS (description = 'Days from creation to closing date for current won deals')
AS
SELECT
  deal_id,
  deal_name,
  owner_id,
  owner_name,
  pipeline,
  DATE(created_time) AS created_date,
  closing_date,
  DATE_DIFF(closing_date, DATE(created_time), DAY) AS days_to_close
FROM `{{dataset}}.current_won_deals`
WHERE created_time IS NOT NULL AND closing_date IS NOT NULL;
