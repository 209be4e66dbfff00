-- Records the job could not map into a deal (a field of an unexpected type or value), one row per deal: the
-- newest quarantine wins, and the row is deleted once a run merges a readable version of the deal (its next edit
-- in Zoho brings it in). `record` is the JSON as received, cut at 64 KiB, so it is text, not JSON. Written with
-- DML only (never streamed), so that rows can be deleted at once.
CREATE TABLE IF NOT EXISTS `{{dataset}}.quarantined_deals` (
  deal_id STRING NOT NULL,
  field STRING OPTIONS (description = 'The field that could not be read'),
  reason STRING,
  record STRING OPTIONS (description = 'The record as received from Zoho (JSON text, cut at 64 KiB)'),
  run_id STRING OPTIONS (description = 'The run that quarantined it (see sync_runs)'),
  quarantined_at TIMESTAMP
)
OPTIONS (description = 'zoho-deals-sync: Zoho records that could not be stored, until a readable version arrives');
