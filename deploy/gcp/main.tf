# zoho-deals-sync on Google Cloud: a Cloud Run Job started nightly by Cloud Scheduler, writing to BigQuery.
#
# What this creates, and what it leaves to you:
#   - the BigQuery dataset and the job's service account (Data Editor on that dataset, Job User on the project);
#   - two Secret Manager secrets, EMPTY: add their versions with gcloud (deploy/gcp/README.md, step 2), so that
#     secret values never enter Terraform state;
#   - the Cloud Run Job, with those secrets mounted as environment variables;
#   - a Cloud Scheduler job that calls the Cloud Run Admin API `jobs.run`, authenticated as its own invoker
#     service account, which may run this one job and nothing else.
# The BigQuery tables themselves are created by the job on first run (sql/ holds the DDL).

locals {
  job_sa_id     = var.job_name
  invoker_sa_id = "${var.job_name}-invoker"
  labels = {
    app = "zoho-deals-sync"
  }
}

resource "google_project_service" "apis" {
  for_each = toset([
    "bigquery.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])

  service            = each.value
  disable_on_destroy = false
}

# --- Identities -------------------------------------------------------------------------------------------

resource "google_service_account" "job" {
  account_id   = local.job_sa_id
  display_name = "zoho-deals-sync job (reads Zoho secrets, writes BigQuery)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "invoker" {
  account_id   = local.invoker_sa_id
  display_name = "zoho-deals-sync scheduler (may only start the job)"
  depends_on   = [google_project_service.apis]
}

# --- BigQuery ---------------------------------------------------------------------------------------------

resource "google_bigquery_dataset" "zoho" {
  dataset_id  = var.bq_dataset
  location    = var.bq_location
  description = "Closed-won deals copied from Zoho CRM by zoho-deals-sync."
  labels      = local.labels

  # The deals are the point of the whole thing: never drop them with `terraform destroy`.
  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]
}

resource "google_bigquery_dataset_iam_member" "job_data_editor" {
  dataset_id = google_bigquery_dataset.zoho.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.job.member
}

# Job User is project-wide by nature: it lets the job run the MERGE and load jobs, billed to this project.
resource "google_project_iam_member" "job_bigquery_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.job.member
}

# --- Secrets (containers only; the values are added with gcloud) -------------------------------------------

resource "google_secret_manager_secret" "zoho_client_secret" {
  secret_id = "zoho-client-secret"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "zoho_refresh_token" {
  secret_id = "zoho-refresh-token"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "job_reads_client_secret" {
  secret_id = google_secret_manager_secret.zoho_client_secret.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.job.member
}

resource "google_secret_manager_secret_iam_member" "job_reads_refresh_token" {
  secret_id = google_secret_manager_secret.zoho_refresh_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.job.member
}

# --- The job ----------------------------------------------------------------------------------------------

resource "google_cloud_run_v2_job" "sync" {
  name                = var.job_name
  location            = var.region
  labels              = local.labels
  deletion_protection = var.deletion_protection

  template {
    # One task: the job is a single sequential pipeline guarded by its own lease.
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.job.email
      timeout         = var.task_timeout
      # Cloud Run retries on any non-zero exit, immediately; it cannot skip exit code 3 (credentials) the way
      # the Kubernetes podFailurePolicy does, hence the low default. See deploy/README.md for the table.
      max_retries = var.max_retries

      containers {
        image = var.image
        args  = ["sync"]

        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }

        env {
          name  = "WAREHOUSE"
          value = "bigquery"
        }
        env {
          name  = "BQ_PROJECT"
          value = var.project_id
        }
        env {
          name  = "BQ_DATASET"
          value = google_bigquery_dataset.zoho.dataset_id
        }
        env {
          name  = "BQ_LOCATION"
          value = var.bq_location
        }
        env {
          name  = "ZOHO_DC"
          value = var.zoho_dc
        }
        env {
          name  = "ZOHO_CLIENT_ID"
          value = var.zoho_client_id
        }
        env {
          name = "ZOHO_CLIENT_SECRET"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.zoho_client_secret.secret_id
              version = "latest"
            }
          }
        }
        env {
          name = "ZOHO_REFRESH_TOKEN"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.zoho_refresh_token.secret_id
              version = "latest"
            }
          }
        }
        env {
          name  = "LOG_FORMAT"
          value = "json"
        }
        env {
          name  = "RUST_LOG"
          value = var.rust_log
        }
        dynamic "env" {
          for_each = var.zoho_won_stages == "" ? [] : [var.zoho_won_stages]
          content {
            name  = "ZOHO_WON_STAGES"
            value = env.value
          }
        }
        dynamic "env" {
          for_each = var.sync_max_credits == null ? [] : [tostring(var.sync_max_credits)]
          content {
            name  = "SYNC_MAX_CREDITS"
            value = env.value
          }
        }
        # No GOOGLE_APPLICATION_CREDENTIALS: on Cloud Run the job's service account comes from the metadata server.
      }
    }
  }

  # Cloud Run checks at deploy time that the job's identity may read the secrets it mounts.
  depends_on = [
    google_secret_manager_secret_iam_member.job_reads_client_secret,
    google_secret_manager_secret_iam_member.job_reads_refresh_token,
  ]
}

# The invoker may start this job only (roles/run.invoker carries run.jobs.run).
resource "google_cloud_run_v2_job_iam_member" "invoker_runs_job" {
  name     = google_cloud_run_v2_job.sync.name
  location = google_cloud_run_v2_job.sync.location
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# --- The schedule -----------------------------------------------------------------------------------------

resource "google_cloud_scheduler_job" "nightly" {
  name        = "${var.job_name}-nightly"
  region      = var.region
  description = "Starts the ${var.job_name} Cloud Run Job."
  schedule    = var.schedule
  time_zone   = var.time_zone

  # These retries cover only the call that *starts* the job (the API answers at once with an operation);
  # a failed run is retried by the job's own max_retries, never by the scheduler.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.sync.name}:run"

    # OAuth (not OIDC): the target is a Google API, which takes access tokens.
    oauth_token {
      service_account_email = google_service_account.invoker.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.invoker_runs_job]
}
