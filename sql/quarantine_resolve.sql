-- Step 3 of commit: a deal this run merged a version of (won, un-won or deleted) is no longer quarantined.
DELETE FROM `{{dataset}}.quarantined_deals`
WHERE deal_id IN (SELECT deal_id FROM `{{dataset}}.{{staging}}`)
