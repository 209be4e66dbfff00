//! The domain types shared by both sides of the pipeline: a typed closed-won deal, its changes, and the
//! `Modified_Time` window a run covers.
//!
//! `zoho/` turns Zoho's JSON into [`Deal`]s and [`DealChange`]s; `warehouse/` stores them. Nothing here knows
//! about HTTP or SQL. Timestamps are UTC, money is an exact decimal, and the record as Zoho sent it is kept in
//! [`Deal::raw`] so that custom and future fields are never lost.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

/// One deal as the warehouse stores it (a row of `closed_won_deals`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deal {
    /// Zoho record id (a 19-digit number, kept as text).
    pub deal_id: String,
    pub deal_name: Option<String>,
    /// The stage value as it appears in the record.
    pub stage: Option<String>,
    pub pipeline: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub exchange_rate: Option<Decimal>,
    pub probability: Option<i64>,
    pub expected_revenue: Option<Decimal>,
    pub closing_date: Option<NaiveDate>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub contact_id: Option<String>,
    pub contact_name: Option<String>,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub lead_source: Option<String>,
    pub deal_type: Option<String>,
    pub created_time: Option<DateTime<Utc>>,
    /// Zoho's `Modified_Time`: the version of this row. An older version never overwrites a newer one.
    pub modified_time: DateTime<Utc>,
    /// The record exactly as Zoho sent it (JSON text), custom fields included.
    pub raw: String,
    /// Money in the org's home currency (issue #11; see `zoho::currencies` for the convention).
    pub home: HomeMoney,
    /// When the deal entered a won stage, and how the job knows (issue #11; see `sync::won_at`).
    pub won: WonAt,
    /// The custom fields' typed values, by column (empty when the org has none or they were not mapped).
    pub custom: Vec<CustomValue>,
}

// --- issue #11, part B: home-currency money and the won date (grouped to move into the column catalogue) ---

/// A deal's amounts in the org's home currency, computed from the record's own `Exchange_Rate`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HomeMoney {
    /// ISO code of the org's home currency; `None` when the job could not learn it (no multi-currency, or the
    /// currencies API could not be read).
    pub currency: Option<String>,
    /// `amount` in the home currency; `None` when it cannot be computed exactly (no amount, or a foreign-currency
    /// deal without a usable exchange rate).
    pub amount: Option<Decimal>,
    /// `expected_revenue` in the home currency, the same way.
    pub expected_revenue: Option<Decimal>,
}

/// How `won_at` was learned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WonAtSource {
    /// From Zoho's stage history: the time the deal moved into its won stage.
    StageHistory,
    /// The `Modified_Time` of the first version the job saw in a won stage (no history read).
    Observed,
    /// First seen in a backfill (or the first run) without its stage history: the won date is not known.
    #[default]
    Unknown,
}

impl WonAtSource {
    /// The warehouse's spelling (`won_at_source` column).
    pub fn as_str(&self) -> &'static str {
        match self {
            WonAtSource::StageHistory => "stage_history",
            WonAtSource::Observed => "observed",
            WonAtSource::Unknown => "unknown",
        }
    }

    /// Reads the warehouse's spelling; anything else (a row written before the column existed) is `Unknown`.
    pub fn parse(s: &str) -> WonAtSource {
        match s {
            "stage_history" => WonAtSource::StageHistory,
            "observed" => WonAtSource::Observed,
            _ => WonAtSource::Unknown,
        }
    }
}

/// When a deal entered a won stage. On a staged change this is the job's candidate; the merge keeps the stored
/// value of a row that is already won (an edit never moves it) and takes the candidate only for a new row or
/// an un-won row that is won again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WonAt {
    pub at: Option<DateTime<Utc>>,
    pub source: WonAtSource,
}

/// One custom column's value on a [`Deal`].
#[derive(Debug, Clone, PartialEq)]
pub struct CustomValue {
    /// The column's name (a safe identifier: lower-case letters, digits, underscores).
    pub column: String,
    pub value: Cell,
}

/// One column that a field of the source system lands in (or a field with no column), as the warehouse's
/// `deal_fields` data dictionary records it. Custom columns carry their type; standard ones are the
/// warehouse's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldColumn {
    pub api_name: String,
    pub label: String,
    /// The source system's data type (Zoho's `data_type`).
    pub data_type: String,
    /// The column, when the field has one.
    pub column: Option<String>,
    /// The type of a custom column (`None` for standard columns and fields without a column).
    pub cell_type: Option<CellType>,
    pub custom: bool,
}

/// What a run learned about one deal. The warehouse applies these idempotently (see `warehouse::Warehouse`).
// Won is by far the most common change; boxing it would add an allocation per deal for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DealChange {
    /// The deal is in a won stage: insert it, or update the stored row if this version is not older.
    Won(Deal),
    /// The deal was modified and is no longer in a won stage: an existing row is flagged
    /// `is_closed_won = false` (if this version is not older); no row is created for it.
    Unwon { deal_id: String, stage: Option<String>, modified_time: DateTime<Utc> },
    /// The deal was deleted in Zoho: an existing row is flagged `is_deleted` with the deletion time.
    Deleted { deal_id: String, deleted_time: DateTime<Utc> },
    /// Zoho no longer has the deal at all, and no longer says when it was deleted (found by `reconcile` past
    /// Zoho's deletion retention): an existing row not yet flagged deleted gets `is_deleted` with a NULL
    /// `deleted_time`; no row is created.
    Vanished { deal_id: String },
}

impl DealChange {
    /// The Zoho record id this change is about.
    pub fn deal_id(&self) -> &str {
        match self {
            DealChange::Won(d) => &d.deal_id,
            DealChange::Unwon { deal_id, .. }
            | DealChange::Deleted { deal_id, .. }
            | DealChange::Vanished { deal_id } => deal_id,
        }
    }
}

/// Formats a UTC timestamp the way the warehouse stores it: RFC 3339, whole seconds, `Z`.
pub fn format_utc(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `Modified_Time` window: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// Splits the window into at most `n` consecutive slices of equal length (whole seconds).
    pub fn slices(&self, n: usize) -> Vec<Window> {
        let total = (self.end - self.start).num_seconds().max(0);
        let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX).min(total.max(1));
        let step = total / n;
        (0..n)
            .map(|i| Window {
                start: self.start + chrono::Duration::seconds(i * step),
                end: if i == n - 1 { self.end } else { self.start + chrono::Duration::seconds((i + 1) * step) },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn slices_cover_the_window_exactly() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).single().expect("valid");
        let w = Window { start, end: start + chrono::Duration::seconds(10_001) };
        let s = w.slices(4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].start, w.start);
        assert_eq!(s[3].end, w.end);
        assert!(s.windows(2).all(|p| p[0].end == p[1].start));
        assert_eq!(Window { start, end: start }.slices(4).len(), 1);
    }
}
/// The type of one stored value, independent of any warehouse: each warehouse maps it to its own column type
/// (BigQuery: STRING, INT64, NUMERIC, BIGNUMERIC, BOOL, DATE, TIMESTAMP, JSON, `ARRAY<STRING>`; SQLite: TEXT
/// or INTEGER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellType {
    Text,
    /// A signed 64-bit integer.
    Int,
    /// An exact decimal that fits BigQuery's NUMERIC: at most 29 digits before the point and 9 after.
    Decimal,
    /// An exact decimal beyond NUMERIC, within BIGNUMERIC's safe bounds: at most 38 digits before the point and
    /// 38 after (carried as its text, [`ExactDecimal`]: rust_decimal holds only 28 significant digits).
    BigDecimal,
    Bool,
    Date,
    /// A UTC instant.
    Timestamp,
    /// JSON text.
    Json,
    /// A list of strings (a multi-select pick list).
    TextList,
}

impl CellType {
    /// The spelling used in `deal_fields.column_type` and in messages (BigQuery's type names).
    pub const fn as_str(self) -> &'static str {
        match self {
            CellType::Text => "STRING",
            CellType::Int => "INT64",
            CellType::Decimal => "NUMERIC",
            CellType::BigDecimal => "BIGNUMERIC",
            CellType::Bool => "BOOL",
            CellType::Date => "DATE",
            CellType::Timestamp => "TIMESTAMP",
            CellType::Json => "JSON",
            CellType::TextList => "ARRAY<STRING>",
        }
    }

    /// Reads [`CellType::as_str`] back.
    pub fn parse(s: &str) -> Option<CellType> {
        [
            CellType::Text,
            CellType::Int,
            CellType::Decimal,
            CellType::BigDecimal,
            CellType::Bool,
            CellType::Date,
            CellType::Timestamp,
            CellType::Json,
            CellType::TextList,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One typed value of a row, as `zoho/` produces it and each warehouse encodes it its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Decimal(Decimal),
    /// A decimal of a BIGNUMERIC column, as validated exact text.
    BigDecimal(ExactDecimal),
    Bool(bool),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    /// JSON text.
    Json(String),
    TextList(Vec<String>),
}

/// A Rust value that is one cell of a stored deal (the standard columns' field types).
pub trait CellValue: Sized {
    fn to_cell(&self) -> Cell;
    /// `None` when the cell is of another type (a reader then reports the column as unreadable).
    fn from_cell(cell: Cell) -> Option<Self>;
}

macro_rules! cell_value {
    ($t:ty, $variant:ident) => {
        impl CellValue for Option<$t> {
            fn to_cell(&self) -> Cell {
                self.clone().map_or(Cell::Null, Cell::$variant)
            }
            fn from_cell(cell: Cell) -> Option<Self> {
                match cell {
                    Cell::Null => Some(None),
                    Cell::$variant(v) => Some(Some(v)),
                    _ => None,
                }
            }
        }
        impl CellValue for $t {
            fn to_cell(&self) -> Cell {
                Cell::$variant(self.clone())
            }
            fn from_cell(cell: Cell) -> Option<Self> {
                match cell {
                    Cell::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
cell_value!(String, Text);
cell_value!(i64, Int);
cell_value!(Decimal, Decimal);
cell_value!(bool, Bool);
cell_value!(NaiveDate, Date);
cell_value!(DateTime<Utc>, Timestamp);

/// BIGNUMERIC's safe bounds: 38 digits before the point (its range is about ±5.8 × 10^38, so every 38-digit
/// integer part fits) and 38 after (its scale).
/// <https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#decimal_types>
pub const BIGNUMERIC_INTEGER_DIGITS: usize = 38;
/// See [`BIGNUMERIC_INTEGER_DIGITS`].
pub const BIGNUMERIC_FRACTION_DIGITS: usize = 38;

/// An exact decimal within BIGNUMERIC's safe bounds, as canonical text: an optional `-`, the integer digits
/// without leading zeros (`0` when there are none), and a point with the fractional digits without trailing
/// zeros when there are any (`-12.5`, `0.000000000001`, `120`); zero is `0`. Never passes through a float or
/// rust_decimal (which holds 28 significant digits), so every digit the source sent is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExactDecimal(String);

/// Why a text is not an [`ExactDecimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal number")]
    Malformed,
    #[error(
        "{integer} digits before the point and {fraction} after: more than BIGNUMERIC's \
         {BIGNUMERIC_INTEGER_DIGITS} and {BIGNUMERIC_FRACTION_DIGITS}"
    )]
    OutOfRange {
        /// Digits before the point (saturated for absurd exponents).
        integer: u64,
        /// Digits after the point (saturated likewise).
        fraction: u64,
    },
}

impl ExactDecimal {
    /// Reads a decimal as a JSON number's literal text (or a warehouse's decimal text) spells it: an optional
    /// sign, digits with an optional point, and an optional exponent (`1.5e-3`, `12E+2`). Fails when the value
    /// has more than 38 digits before or after the point.
    pub fn parse(text: &str) -> Result<ExactDecimal, DecimalError> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(DecimalError::Malformed);
        }
        let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
        let Some(first) = digits.iter().position(|&b| b != b'0') else {
            // Zero, whatever its exponent (checked for shape only).
            return match exponent.map(parse_exponent) {
                Some(Err(DecimalError::Malformed)) => Err(DecimalError::Malformed),
                _ => Ok(ExactDecimal("0".to_owned())),
            };
        };
        let last = digits.iter().rposition(|&b| b != b'0').unwrap_or(first);
        let significant = &digits[first..=last];
        // The value is 0.<significant> × 10^point.
        let exp = match exponent {
            Some(e) => parse_exponent(e)?,
            None => 0,
        };
        let int_len = i64::try_from(int_part.len()).unwrap_or(i64::MAX);
        let lead = i64::try_from(first).unwrap_or(i64::MAX);
        let point = int_len.saturating_sub(lead).saturating_add(exp);
        let n = i64::try_from(significant.len()).unwrap_or(i64::MAX);
        let integer = point.max(0);
        let fraction = n.saturating_sub(point).max(0);
        let limit = |d: usize| i64::try_from(d).unwrap_or(i64::MAX);
        if integer > limit(BIGNUMERIC_INTEGER_DIGITS) || fraction > limit(BIGNUMERIC_FRACTION_DIGITS) {
            return Err(DecimalError::OutOfRange {
                integer: u64::try_from(integer).unwrap_or(u64::MAX),
                fraction: u64::try_from(fraction).unwrap_or(u64::MAX),
            });
        }
        // Both are at most 38 here, so the conversions cannot fail.
        let (integer, point) = (usize::try_from(integer).unwrap_or(0), usize::try_from(point.max(0)).unwrap_or(0));
        let zeros = |k: usize| "0".repeat(k);
        let text = std::str::from_utf8(significant).map_err(|_| DecimalError::Malformed)?;
        let mut out = String::with_capacity(significant.len() + 42);
        if negative {
            out.push('-');
        }
        if integer == 0 {
            out.push_str("0.");
            out.push_str(&zeros(usize::try_from(fraction).unwrap_or(0).saturating_sub(significant.len())));
            out.push_str(text);
        } else if point >= significant.len() {
            out.push_str(text);
            out.push_str(&zeros(point - significant.len()));
        } else {
            out.push_str(&text[..point]);
            out.push('.');
            out.push_str(&text[point..]);
        }
        Ok(ExactDecimal(out))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits before the point (0 for `0.5`).
    pub fn integer_digits(&self) -> usize {
        let abs = self.0.trim_start_matches('-');
        match abs.split_once('.') {
            Some(("0", _)) => 0,
            Some((i, _)) => i.len(),
            None if abs == "0" => 0,
            None => abs.len(),
        }
    }

    /// Digits after the point, without trailing zeros.
    pub fn fraction_digits(&self) -> usize {
        self.0.split_once('.').map_or(0, |(_, f)| f.len())
    }
}

impl std::fmt::Display for ExactDecimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An exponent's digits: at most 9 of them (a larger exponent on a non-zero value is far beyond any bound).
fn parse_exponent(e: &str) -> Result<i64, DecimalError> {
    let (negative, digits) = match e.as_bytes().first() {
        Some(b'-') => (true, &e[1..]),
        Some(b'+') => (false, &e[1..]),
        _ => (false, e),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::Malformed);
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 9 {
        return Err(if negative {
            DecimalError::OutOfRange { integer: 0, fraction: u64::MAX }
        } else {
            DecimalError::OutOfRange { integer: u64::MAX, fraction: 0 }
        });
    }
    let magnitude: i64 = if trimmed.is_empty() { 0 } else { trimmed.parse().map_err(|_| DecimalError::Malformed)? };
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod exact_decimal_tests {
    use super::*;

    fn parsed(s: &str) -> String {
        ExactDecimal::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).as_str().to_owned()
    }

    #[test]
    fn a_decimal_keeps_every_digit_numeric_would_round() {
        assert_eq!(parsed("1234.567890123456"), "1234.567890123456");
        assert_eq!(parsed("0.000000000001"), "0.000000000001");
        let long = format!("{}.{}", "9".repeat(38), "1".repeat(38));
        assert_eq!(parsed(&long), long, "the largest value within both bounds");
        assert_eq!(ExactDecimal::parse(&long).map(|d| (d.integer_digits(), d.fraction_digits())), Ok((38, 38)));
    }

    #[test]
    fn negatives_zeros_and_redundant_digits_have_one_canonical_text() {
        assert_eq!(parsed("-12.500"), "-12.5");
        assert_eq!(parsed("-0.000000000001"), "-0.000000000001");
        assert_eq!(parsed("007.0"), "7");
        assert_eq!(parsed("-0.0"), "0");
        assert_eq!(parsed("0e-999999999999"), "0", "zero is zero whatever its exponent");
        assert_eq!(parsed("+3"), "3");
        assert_eq!(parsed(".5"), "0.5");
        assert_eq!(parsed("120"), "120");
        assert_eq!(ExactDecimal::parse("0.5").map(|d| d.integer_digits()), Ok(0));
    }

    #[test]
    fn an_exponent_moves_the_point_exactly() {
        assert_eq!(parsed("1.5e-3"), "0.0015");
        assert_eq!(parsed("12E+2"), "1200");
        assert_eq!(parsed("-1.234567890123e3"), "-1234.567890123");
        assert_eq!(parsed("123456e-12"), "0.000000123456");
        assert_eq!(parsed("1e37"), format!("1{}", "0".repeat(37)));
    }

    #[test]
    fn more_digits_than_bignumeric_holds_are_refused_with_the_counts() {
        assert_eq!(
            ExactDecimal::parse(&format!("0.{}1", "0".repeat(38))),
            Err(DecimalError::OutOfRange { integer: 0, fraction: 39 })
        );
        assert_eq!(ExactDecimal::parse(&"9".repeat(39)), Err(DecimalError::OutOfRange { integer: 39, fraction: 0 }));
        assert_eq!(ExactDecimal::parse("1e40"), Err(DecimalError::OutOfRange { integer: 41, fraction: 0 }));
        assert!(matches!(ExactDecimal::parse("1e-9999999999999"), Err(DecimalError::OutOfRange { .. })));
        assert!(matches!(ExactDecimal::parse("1e400"), Err(DecimalError::OutOfRange { .. })));
        let message = ExactDecimal::parse("1e40").expect_err("too large").to_string();
        assert!(message.contains("41 digits before the point") && message.contains("BIGNUMERIC"), "{message}");
    }

    #[test]
    fn anything_but_a_decimal_is_malformed() {
        for bad in ["", "-", ".", "1.2.3", "1e", "1e+", "abc", "1,5", " 1", "1 ", "NaN", "inf", "0x10", "1e1.5", "--1"]
        {
            assert_eq!(ExactDecimal::parse(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
    }
}
