-- Whether any deal is stored, won or not, or quarantined: what a deletion read from Zoho could flag or resolve.
SELECT EXISTS (SELECT 1 FROM `{{dataset}}.closed_won_deals`)
  OR EXISTS (SELECT 1 FROM `{{dataset}}.quarantined_deals`)
