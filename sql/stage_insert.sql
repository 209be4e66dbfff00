-- stage: one batch of changes into the run's staging table, with DML (not insertAll): an INSERT is visible to
-- the next statement at once and never depends on a table's metadata reaching the streaming backend (see
-- README.md, "Staging"). @rows is an ARRAY of STRUCTs of STRING fields; values are cast to the column types
-- here, so a value BigQuery refuses fails this statement and the job finds the row by splitting the batch.
-- Placeholders: staging_columns and staging_values are generated from DEAL_COLUMNS.
INSERT INTO `{{dataset}}.{{staging}}` ({{staging_columns}})
SELECT {{staging_values}}
FROM UNNEST(@rows) AS r
