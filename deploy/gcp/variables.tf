# Inputs for the zoho-deals-sync deployment on Cloud Run Jobs. Only project_id, image and
# zoho_client_id have no default.

variable "project_id" {
  description = "Google Cloud project that runs the job and holds the BigQuery dataset."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run Job and the Cloud Scheduler job."
  type        = string
  default     = "us-central1"
}

variable "image" {
  description = "Container image built from deploy/Dockerfile, e.g. us-central1-docker.pkg.dev/PROJECT/jobs/zoho-deals-sync:TAG (prefer a digest)."
  type        = string
}

variable "job_name" {
  description = "Name of the Cloud Run Job; also the prefix of the service accounts and the scheduler job."
  type        = string
  default     = "zoho-deals-sync"

  validation {
    # Service account ids are 6-30 characters and get a suffix of up to 8 ("-invoker").
    condition     = can(regex("^[a-z][a-z0-9-]{4,20}[a-z0-9]$", var.job_name))
    error_message = "job_name must be 6-22 characters of lowercase letters, digits and hyphens."
  }
}

variable "schedule" {
  description = "Cron schedule of the nightly run, in time_zone."
  type        = string
  default     = "30 2 * * *"
}

variable "time_zone" {
  description = "IANA time zone that schedule is read in."
  type        = string
  default     = "Etc/UTC"
}

variable "zoho_dc" {
  description = "Zoho data centre of the CRM org (us, eu, in, au, jp, cn, ca, sa)."
  type        = string
  default     = "us"

  validation {
    condition     = contains(["us", "eu", "in", "au", "jp", "cn", "ca", "sa"], var.zoho_dc)
    error_message = "zoho_dc must be one of us, eu, in, au, jp, cn, ca, sa."
  }
}

variable "zoho_client_id" {
  description = "Client ID of the Zoho self-client (not a secret; the client secret and refresh token live in Secret Manager)."
  type        = string
}

variable "zoho_won_stages" {
  description = "Comma-separated deal stages that count as won; empty lets the job discover them from Zoho's stage probabilities."
  type        = string
  default     = ""
}

variable "bq_dataset" {
  description = "BigQuery dataset the job writes to (created here)."
  type        = string
  default     = "zoho_crm"
}

variable "bq_location" {
  description = "BigQuery location of the dataset."
  type        = string
  default     = "US"
}

variable "sync_max_credits" {
  description = "Zoho API credits one run may spend; null leaves the job's own default."
  type        = number
  default     = null
}

variable "rust_log" {
  description = "Log filter (RUST_LOG syntax), e.g. info or zoho_deals_sync=debug."
  type        = string
  default     = "info"
}

variable "task_timeout" {
  description = "Longest a run may take before Cloud Run stops it (a duration in seconds, e.g. 3600s)."
  type        = string
  default     = "3600s"
}

variable "max_retries" {
  description = "Times Cloud Run retries a failed run. Cloud Run cannot tell exit codes apart, so keep this low: see deploy/README.md."
  type        = number
  default     = 1

  validation {
    condition     = var.max_retries >= 0 && var.max_retries <= 3
    error_message = "max_retries must be between 0 and 3."
  }
}

variable "cpu" {
  description = "CPU limit of the task. The job needs 0.1-0.5 CPU (benchmark to confirm); a whole vCPU is billed only while the run lasts."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of the task. The job needs 64-128 MiB (benchmark to confirm); 512Mi is the floor of the second-generation environment that Cloud Run Jobs always use."
  type        = string
  default     = "512Mi"
}

variable "deletion_protection" {
  description = "Refuse to destroy the Cloud Run Job and the dataset's contents."
  type        = bool
  default     = true
}
