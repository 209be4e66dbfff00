-- The data dictionary: one row per (field, column) of Zoho's Deals metadata (a lookup has two columns, a field
-- with no column one row with a NULL column_name), updated by every run. column_type is the type the column was
-- created with and is never overwritten: a field retyped in Zoho keeps its old column (no longer filled).
CREATE TABLE IF NOT EXISTS `{{dataset}}.deal_fields` (
  api_name STRING NOT NULL OPTIONS (description = 'Zoho API name of the field'),
  label STRING OPTIONS (description = 'The label shown in Zoho'),
  data_type STRING OPTIONS (description = 'Zoho data type (text, currency, lookup, ...)'),
  column_name STRING OPTIONS (description = 'Its column in closed_won_deals (NULL when it has none)'),
  column_type STRING OPTIONS (description = 'The type the column was created with'),
  is_custom BOOL OPTIONS (description = 'A custom field'),
  first_seen TIMESTAMP OPTIONS (description = 'First run that saw the field'),
  last_seen TIMESTAMP OPTIONS (description = 'Last run that saw the field')
)
OPTIONS (description = 'zoho-deals-sync: the Deals fields and the columns they land in');
