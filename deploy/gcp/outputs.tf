# What the gcloud steps and the runbook need after `terraform apply`.

output "job_name" {
  description = "Cloud Run Job to execute by hand: gcloud run jobs execute <job_name> --region <region> --wait"
  value       = google_cloud_run_v2_job.sync.name
}

output "job_service_account" {
  description = "Identity the job runs as (BigQuery Data Editor on the dataset, Job User on the project)."
  value       = google_service_account.job.email
}

output "invoker_service_account" {
  description = "Identity Cloud Scheduler uses to start the job."
  value       = google_service_account.invoker.email
}

output "dataset" {
  description = "BigQuery dataset the job writes to, as project:dataset."
  value       = "${var.project_id}:${google_bigquery_dataset.zoho.dataset_id}"
}

output "scheduler_job" {
  description = "Cloud Scheduler job that starts the run; `gcloud scheduler jobs run` triggers it now."
  value       = google_cloud_scheduler_job.nightly.name
}

output "secrets_to_fill" {
  description = "Secret Manager secrets that need a version before the first run (deploy/gcp/README.md, step 2)."
  value = [
    google_secret_manager_secret.zoho_client_secret.secret_id,
    google_secret_manager_secret.zoho_refresh_token.secret_id,
  ]
}
