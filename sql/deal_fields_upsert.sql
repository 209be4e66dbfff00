-- declare_fields: record this run's field metadata. @fields is an ARRAY of STRUCTs of STRING fields. Matched rows
-- get the new label, data type and last_seen; column_type is only filled where it was empty (never changed).
MERGE `{{dataset}}.deal_fields` AS t
USING (
  SELECT f.api_name, f.label, f.data_type, f.column_name, f.column_type, f.is_custom FROM UNNEST(@fields) AS f
) AS s
ON t.api_name = s.api_name AND COALESCE(t.column_name, '') = COALESCE(s.column_name, '')
WHEN MATCHED THEN UPDATE SET label = s.label, data_type = s.data_type, is_custom = s.is_custom = 'true',
  column_type = COALESCE(t.column_type, s.column_type), last_seen = CURRENT_TIMESTAMP()
WHEN NOT MATCHED THEN INSERT (api_name, label, data_type, column_name, column_type, is_custom, first_seen, last_seen)
  VALUES (s.api_name, s.label, s.data_type, s.column_name, s.column_type, s.is_custom = 'true',
    CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP())
