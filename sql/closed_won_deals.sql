-- The table analysts query: one row per Zoho deal that was ever closed-won, upserted by deal_id.
-- The column list must match DEAL_COLUMNS in src/warehouse/mod.rs (a unit test checks it); columns added to
-- DEAL_COLUMNS later are added to existing tables by prepare() with ALTER TABLE ... ADD COLUMN.
--
-- Partitioned by month of closing_date: revenue queries filter on it, and the MERGE rewrites only the
-- partitions holding matched rows (DML on a partitioned table is billed per touched partition).
-- Monthly, not daily: a CRM has a few thousand deals a month, far below what makes a daily partition
-- worthwhile, and BigQuery caps a table at 10,000 partitions.
-- Clustered by owner_id, stage: what analysts filter and group by. deal_id is deliberately not a clustering
-- column: the MERGE finds rows through a join on deal_id, which BigQuery cannot turn into block pruning, so it
-- would buy nothing and would dilute the clustering analysts benefit from.
CREATE TABLE IF NOT EXISTS `{{dataset}}.closed_won_deals` (
  deal_id STRING OPTIONS (description = 'Zoho record id (19 digits, as text); the key'),
  deal_name STRING,
  stage STRING OPTIONS (description = 'Stage as it appears in the record'),
  pipeline STRING,
  amount NUMERIC OPTIONS (description = 'Deal amount in the deal currency, exact'),
  currency STRING,
  exchange_rate NUMERIC,
  probability INT64,
  expected_revenue NUMERIC,
  closing_date DATE,
  account_id STRING,
  account_name STRING,
  contact_id STRING,
  contact_name STRING,
  owner_id STRING,
  owner_name STRING,
  owner_email STRING,
  lead_source STRING,
  deal_type STRING,
  created_time TIMESTAMP,
  modified_time TIMESTAMP OPTIONS (description = 'Zoho Modified_Time: the version of the row; older never overwrites newer'),
  is_closed_won BOOL OPTIONS (description = 'False once the deal left its won stage'),
  is_deleted BOOL OPTIONS (description = 'True once the deal was deleted in Zoho'),
  deleted_time TIMESTAMP,
  raw JSON OPTIONS (description = 'The record exactly as Zoho sent it, custom fields included'),
  synced_at TIMESTAMP OPTIONS (description = 'When the sync last wrote this row'),
  run_id STRING OPTIONS (description = 'The sync run that last wrote this row (see sync_runs)'),
  home_currency STRING OPTIONS (description = 'ISO code of the org home currency (NULL when unknown)'),
  amount_home NUMERIC OPTIONS (description = 'amount in the home currency: amount / exchange_rate of the record, rounded to the home currency decimal places'),
  expected_revenue_home NUMERIC OPTIONS (description = 'expected_revenue in the home currency, the same way'),
  won_at TIMESTAMP OPTIONS (description = 'When the deal entered its won stage (see won_at_source); never moved by an edit'),
  won_at_source STRING OPTIONS (description = 'stage_history | observed | unknown: how won_at was learned')
)
PARTITION BY DATE_TRUNC(closing_date, MONTH)
CLUSTER BY owner_id, stage
OPTIONS (description = 'Zoho CRM deals that were closed-won; see sql/README.md');
