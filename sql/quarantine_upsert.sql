-- Step 4 of commit: this run's quarantined records, one per deal (the newest wins). The source is a UNION ALL of
-- parameter rows (deal_id, field, reason, record), de-duplicated by deal id before it is built.
MERGE `{{dataset}}.quarantined_deals` AS t
USING ({{source}}) AS s
ON t.deal_id = s.deal_id
WHEN MATCHED THEN UPDATE SET
  field = s.field, reason = s.reason, record = s.record, run_id = @run_id, quarantined_at = CURRENT_TIMESTAMP()
WHEN NOT MATCHED THEN INSERT (deal_id, field, reason, record, run_id, quarantined_at)
  VALUES (s.deal_id, s.field, s.reason, s.record, @run_id, CURRENT_TIMESTAMP())
