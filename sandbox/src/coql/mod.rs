//! COQL, the CRM Object Query Language: a tokenizer, a recursive-descent parser and an evaluator for
//! the subset Zoho documents (fact sheet §3c), answering `POST /crm/v8/coql`.
//!
//! Not a general SQL engine: one module (Deals), no joins beyond lookup dot-fields, no GROUP BY.

pub mod exec;
pub mod lexer;
pub mod parser;

use serde_json::{json, Value};

/// Most rows one COQL call may return.
pub const MAX_LIMIT: u64 = 2000;
/// Rows returned when the query has no LIMIT.
pub const DEFAULT_LIMIT: u64 = 200;
/// OFFSET + LIMIT may not go past this (v7/v8).
pub const MAX_REACHABLE: u64 = 100_000;
/// Most select columns (500 since v7, 50 before: Kaizen #183, docs/zoho-api.md §3c).
pub const MAX_COLUMNS: usize = 500;
/// Most formula fields one query may select (COQL limitations, docs/zoho-api.md §3c).
pub const MAX_FORMULA_COLUMNS: usize = 5;
/// Most criteria in a WHERE clause.
pub const MAX_CRITERIA: usize = 25;
/// Most values in an `in (...)` list (Zoho's error list says 100; its prose says 50).
pub const MAX_IN_VALUES: usize = 100;

/// Behaviour switches of the COQL endpoint (from the live fault knobs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Refuse `COUNT(id)` (docs/zoho-api.md §3c: `COUNT` is documented only for number, lookup and pick-list
    /// fields, and whether `COUNT(id)` works is UNCONFIRMED), so a client's fallback can be tested.
    pub refuse_count_id: bool,
}

/// A COQL failure, rendered as Zoho's HTTP 400 error envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct CoqlError {
    /// `SYNTAX_ERROR`, `INVALID_QUERY` or `LIMIT_EXCEEDED`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The `details` object.
    pub details: Value,
}

impl CoqlError {
    /// A grammar error near a 1-based column.
    pub fn syntax(message: impl Into<String>, column: usize, near: &str) -> Self {
        CoqlError {
            code: "SYNTAX_ERROR",
            message: message.into(),
            details: json!({"line": 1, "column": column, "near": near}),
        }
    }

    /// A semantic error (unknown field/module, bad value or operator for a field type).
    pub fn invalid(message: impl Into<String>, details: Value) -> Self {
        CoqlError { code: "INVALID_QUERY", message: message.into(), details }
    }

    /// A limit broken (LIMIT > 2000, OFFSET+LIMIT > 100000, too many columns, ...).
    pub fn limit(message: impl Into<String>, details: Value) -> Self {
        CoqlError { code: "LIMIT_EXCEEDED", message: message.into(), details }
    }

    /// The error envelope body.
    pub fn body(&self) -> Value {
        json!({"code": self.code, "details": self.details, "message": self.message, "status": "error"})
    }
}
