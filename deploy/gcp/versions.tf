# Provider and Terraform versions for the Cloud Run Job + Cloud Scheduler recipe.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.x: google_cloud_run_v2_job has deletion_protection and the fields used here.
      version = "~> 6.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
