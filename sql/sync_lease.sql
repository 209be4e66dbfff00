-- The lease: ONE row (id = 1) naming the run that may write, until expires_at. Taken and renewed by
-- compare-and-set UPDATEs (lease_take.sql, lease_renew.sql): BigQuery serialises mutating DML on one table
-- (concurrent UPDATEs of it conflict and are retried or failed, never both applied), so two runs can never
-- both see the row free. An INSERT-then-read lease is not serialised (see docs/bigquery.md, "DML concurrency").
-- Written with DML only (never streamed), so every UPDATE sees it at once.
CREATE TABLE IF NOT EXISTS `{{dataset}}.sync_lease` (
  id INT64 OPTIONS (description = 'Always 1: the table has one row'),
  holder STRING OPTIONS (description = 'run_id of the run holding the lease, NULL when free'),
  expires_at TIMESTAMP OPTIONS (description = 'The lease is free after this instant (BigQuery clock)')
)
OPTIONS (description = 'zoho-deals-sync: which run may write (one row)');
