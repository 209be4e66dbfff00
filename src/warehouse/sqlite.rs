//! SQLite warehouse (placeholder; being written).
