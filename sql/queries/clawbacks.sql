-- Runs on: both (portable, as bookings_as_of.sql).
-- Clawbacks: deals un-won or deleted after being won, since @since — the won version they left (its home
-- amount is what a commission paid on) and when they left it. A deal won again later appears once per clawback.
--
-- Runs on both warehouses (tests/integration/money_history.rs runs it): see bookings_as_of.sql for the
-- parameters (@since here) and the {{dataset}} placeholder.
SELECT
  c.deal_id,
  w.deal_name,
  w.owner_id,
  w.amount_home AS amount_home_when_won,
  w.home_currency,
  w.won_at,
  c.change AS clawback,
  c.valid_from AS clawed_back_at
FROM `{{dataset}}.closed_won_deals_history` AS c
JOIN `{{dataset}}.closed_won_deals_history` AS w
  ON w.deal_id = c.deal_id AND w.valid_to = c.valid_from AND w.is_closed_won AND NOT w.is_deleted
WHERE c.change IN ('unwon', 'deleted')
  AND c.valid_from >= @since
ORDER BY c.valid_from, c.deal_id;
