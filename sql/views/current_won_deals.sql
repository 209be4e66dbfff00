-- Deals that are won now: not deleted in Zoho and still in a won stage. Start here for any revenue question.
CREATE OR REPLACE VIEW `{{dataset}}.current_won_deals`
OPTIONS (description = 'Closed-won deals that are still won and not deleted')
AS
SELECT * EXCEPT (is_closed_won, is_deleted, deleted_time)
FROM `{{dataset}}.closed_won_deals`
WHERE is_closed_won AND NOT is_deleted;
