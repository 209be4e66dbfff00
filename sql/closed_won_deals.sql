-- The table analysts query: one row per Zoho deal that was ever closed-won, upserted by deal_id.
-- Placeholder: columns is generated from DEAL_COLUMNS (src/warehouse/columns.rs), with each column's
-- description; columns added to DEAL_COLUMNS later, and custom fields discovered in Zoho, are added to existing
-- tables with ALTER TABLE ... ADD COLUMN.
--
-- Partitioned by month of closing_date: revenue queries filter on it, and the MERGE rewrites only the
-- partitions holding matched rows (DML on a partitioned table is billed per touched partition).
-- Monthly, not daily: a CRM has a few thousand deals a month, far below what makes a daily partition
-- worthwhile, and BigQuery caps a table at 10,000 partitions.
-- Clustered by owner_id, stage: what analysts filter and group by. deal_id is deliberately not a clustering
-- column: the MERGE finds rows through a join on deal_id, which BigQuery cannot turn into block pruning, so it
-- would buy nothing and would dilute the clustering analysts benefit from.
CREATE TABLE IF NOT EXISTS `{{dataset}}.closed_won_deals` (
  {{columns}}
)
PARTITION BY DATE_TRUNC(closing_date, MONTH)
CLUSTER BY owner_id, stage
OPTIONS (description = 'Zoho CRM deals that were closed-won; see sql/README.md');
