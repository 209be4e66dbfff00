-- Deals that are won now: not deleted in Zoho and still in a won stage. Start here for any revenue question.
-- One row per deal even if closed_won_deals ever held a deal twice (two overlapping runs inserting the same new
-- deal; the lease prevents it, sql/dedupe_deals.sql repairs it): the newest version decides. The other views
-- read this one, so no analyst figure counts a deal twice.
CREATE OR REPLACE VIEW `{{dataset}}.current_won_deals`
OPTIONS (description = 'Closed-won deals that are still won and not deleted, one row per deal')
AS
SELECT * EXCEPT (is_closed_won, is_deleted, deleted_time)
FROM (
  SELECT *
  FROM `{{dataset}}.closed_won_deals`
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY modified_time DESC, synced_at DESC, run_id DESC) = 1
)
WHERE is_closed_won AND NOT is_deleted;
