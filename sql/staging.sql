-- A run's staging table: rows are streamed here (tabledata.insertAll) and merged at commit. One table per run,
-- so a crashed run's leftovers never mix with a rerun's, and it deletes itself after a day if nobody drops it.
-- Placeholders: columns is every DEAL_COLUMNS column with its BigQuery type. change_kind is won | unwon | deleted | vanished.
-- Not partitioned or clustered: it holds one run's changes and is read once, whole.
CREATE TABLE IF NOT EXISTS `{{dataset}}.{{staging}}` (
  {{columns}},
  change_kind STRING
)
OPTIONS (
  expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY),
  description = 'zoho-deals-sync staging for one run; dropped after its commit, expires on its own'
);
