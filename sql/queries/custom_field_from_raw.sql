-- Runs on: bigquery. JSON_VALUE on the JSON `raw` column and DATE_TRUNC(…, QUARTER) are BigQuery's; on SQLite
-- use json_extract(raw, '$.Region__c') and a date literal. (A custom field COQL can select has its own column.)
-- Example: a Zoho custom field that has no column of its own, read from raw (the record as Zoho sent it).
-- Replace Region__c with your field's API name.
SELECT deal_id, deal_name, JSON_VALUE(raw, '$.Region__c') AS region, amount, currency
FROM `{{dataset}}.current_won_deals`
WHERE closing_date >= DATE_TRUNC(CURRENT_DATE(), QUARTER);
