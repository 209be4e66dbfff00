-- One row per version of a deal the job stored (issue #11): bookings as of any date are one query (see
-- sql/queries/bookings_as_of.sql). Written by commit right after the merge, by history_close.sql then
-- history_insert.sql. Placeholder: columns is deal_id, valid_from, valid_to, is_current, change, then every
-- closed_won_deals column but raw (generated from DEAL_COLUMNS; prepare adds columns added later). Custom columns
-- are added by declare_fields (ADD COLUMN), as they are to closed_won_deals.
-- Clustered by deal_id: both history statements look deals up by id.
CREATE TABLE IF NOT EXISTS `{{dataset}}.closed_won_deals_history` (
  {{columns}}
)
CLUSTER BY deal_id
OPTIONS (description = 'Every version of each closed-won deal the sync stored: valid_from/valid_to, is_current, change (won | edited | unwon | deleted)');
