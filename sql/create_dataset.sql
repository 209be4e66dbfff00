-- The dataset, when it is missing. prepare() runs this only after datasets.get answered 404, so a service
-- account without bigquery.datasets.create (BigQuery Data Editor on an existing dataset) never needs it.
-- Placeholders (filled by the job; see README.md): dataset = `project.dataset`, location = BQ_LOCATION
-- (validated: letters, digits, '-').
CREATE SCHEMA IF NOT EXISTS `{{dataset}}`
OPTIONS (
  location = '{{location}}',
  description = 'Zoho CRM closed-won deals, copied nightly by zoho-deals-sync'
);
