# Hearing when a run fails: two Cloud Monitoring alert policies on the Cloud Run Job.
#
#   1. failed executions: Cloud Run's own metric run.googleapis.com/job/completed_execution_count with
#      result = "failed" (https://cloud.google.com/monitoring/api/metrics_gcp#gcp-run). Fires for every
#      non-zero exit, including a crash before the job could log anything.
#   2. exit codes >= 3, by code: a log-based metric on the job's last log line, the JSON object
#      {"message": "zoho-deals-sync finished", "exit_code": N, ...} that every run writes to stderr (Cloud Run
#      turns JSON lines into jsonPayload). Codes 0-2 are left out: 0 is success and 2 is a configuration error
#      that policy 1 already reports on the first run after a change. The label exit_code says which code, so
#      a chart or a second policy can tell 3 (credentials: a human must act) from 5 (Zoho unavailable).
#
# Notifications go to var.notification_channels (create channels in the console or with
# google_monitoring_notification_channel; an empty list keeps the incidents in the console only). The job's own
# webhook (ALERT_WEBHOOK_URL, README "Monitoring") is independent of these and can be used with or without them.

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/PROJECT/notificationChannels/ID) that hear about failed runs; empty keeps incidents in the console only."
  type        = list(string)
  default     = []
}

variable "alerts_enabled" {
  description = "Whether the failed-run alert policies are enabled."
  type        = bool
  default     = true
}

resource "google_project_service" "monitoring" {
  for_each = toset([
    "logging.googleapis.com",
    "monitoring.googleapis.com",
  ])

  service            = each.value
  disable_on_destroy = false
}

resource "google_logging_metric" "exit_codes" {
  name        = "${var.job_name}-exit-codes"
  description = "zoho-deals-sync runs that ended with exit code 3 or more, labelled by code (README: exit codes)."
  filter      = <<-EOT
    resource.type="cloud_run_job"
    resource.labels.job_name="${var.job_name}"
    jsonPayload.message="zoho-deals-sync finished"
    jsonPayload.exit_code>=3
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "exit_code"
      value_type  = "STRING"
      description = "The job's exit code (README: exit codes and runbook)."
    }
  }

  label_extractors = {
    exit_code = "EXTRACT(jsonPayload.exit_code)"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "failed_executions" {
  display_name          = "${var.job_name}: a run failed"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.notification_channels

  conditions {
    display_name = "Cloud Run Job ${var.job_name}: failed execution"

    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND resource.labels.job_name = \"${var.job_name}\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\" AND metric.labels.result = \"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    # A nightly job: an incident that nobody closes closes itself after a day, before the next night's run.
    auto_close = "82800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The zoho-deals-sync run failed. Its exit code says what to do (README, "Exit codes and runbook");
      find it in the run's last log line, `zoho-deals-sync finished`, field `exit_code`, and the error line
      above it. `zoho-deals-sync status` shows the last success, failures in a row and the last error.
    EOT
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "exit_codes" {
  display_name          = "${var.job_name}: exit code 3 or more"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.notification_channels

  conditions {
    display_name = "zoho-deals-sync exit code >= 3"

    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.exit_codes.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.exit_code"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "82800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      zoho-deals-sync ended with exit code $${metric.label.exit_code}. 3: Zoho rejected the credentials (a
      human must act); 4: token mints throttled (wait 10 minutes); 5: Zoho unavailable (retry later); 6: credit
      budget; 7: warehouse unreachable or permission denied; 8: some records quarantined (see the
      quarantined_deals table); 9: another run held the lease. README, "Exit codes and runbook", has the detail.
    EOT
  }
}
