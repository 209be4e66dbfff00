//! BigQuery warehouse (placeholder; being written).
