//! Time formatting and parsing in Zoho's wire formats.
//!
//! Zoho renders datetimes as ISO 8601 with seconds and the API user's offset and no fraction
//! (`2026-11-27T10:15:00+05:30`), and dates as `YYYY-MM-DD` (docs/zoho-api.md §5.2).

use chrono::{DateTime, FixedOffset, NaiveDate, SubsecRound, Utc};

/// The wall clock, floored to the second (Zoho never shows fractions).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// `2026-11-27T10:15:00+05:30`: an instant in the user's offset, as Zoho sends it.
pub fn fmt_datetime(t: DateTime<Utc>, tz: FixedOffset) -> String {
    t.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// `2026-11-27`.
pub fn fmt_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// An ISO 8601 datetime with an offset (`Z`, `+00:00`, `+05:30`, ...) as an instant.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// A `YYYY-MM-DD` date (exactly that shape, nothing after it).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// A user offset from minutes east of UTC (330 = +05:30); `None` when out of range.
pub fn offset(minutes: i32) -> Option<FixedOffset> {
    FixedOffset::east_opt(minutes.checked_mul(60)?)
}

/// Parses `+05:30`, `-07:00`, `+0530`, `Z` or `UTC` into minutes east of UTC.
pub fn parse_tz(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_zoho_and_parses_any_offset() {
        let t = parse_datetime("2026-11-27T04:45:00Z").expect("valid literal");
        let ist = offset(330).expect("valid offset");
        assert_eq!(fmt_datetime(t, ist), "2026-11-27T10:15:00+05:30");
        assert_eq!(parse_datetime("2026-11-27T10:15:00+05:30"), Some(t));
        assert_eq!(parse_datetime("2026-11-26T21:45:00-07:00"), Some(t));
        assert_eq!(fmt_datetime(t, offset(0).expect("utc")), "2026-11-27T04:45:00+00:00");
        assert!(parse_datetime("2026-11-27").is_none());
        assert!(parse_date("2026-11-27").is_some());
        assert!(parse_date("2026-11-27T00:00:00Z").is_none());
    }

    #[test]
    fn tz_flag_forms() {
        assert_eq!(parse_tz("+05:30"), Some(330));
        assert_eq!(parse_tz("-0700"), Some(-420));
        assert_eq!(parse_tz("Z"), Some(0));
        assert_eq!(parse_tz("05:30"), None);
        assert_eq!(parse_tz("+25:00"), None);
    }
}
