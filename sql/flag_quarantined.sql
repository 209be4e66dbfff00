-- Step 4b of commit, after the quarantine is resolved (step 3) and written (step 4): a stored row carries
-- is_quarantined while its deal is in quarantined_deals (Zoho's newest version could not be read, so the row is an
-- older one), and loses it once a readable version was staged. Only rows whose flag changes are touched.
UPDATE `{{dataset}}.closed_won_deals` AS t
SET is_quarantined = t.deal_id IN (SELECT deal_id FROM `{{dataset}}.quarantined_deals`)
WHERE COALESCE(t.is_quarantined, FALSE) != (t.deal_id IN (SELECT deal_id FROM `{{dataset}}.quarantined_deals`))
