//! The org's home currency, and a deal's money converted into it (issue #11).
//!
//! Zoho's convention (docs/zoho-api.md §5.5): `GET /crm/v8/org/currencies` lists the org's currencies; the one
//! with `is_base: true` is the **home currency**. An `exchange_rate` (org-wide, and the per-record
//! `Exchange_Rate` of a deal) is **units of the foreign currency per one unit of the home currency**, so
//! `amount_home = Amount ÷ Exchange_Rate`. The direction is UNCONFIRMED by a worked example in Zoho's API
//! reference (§5.5 says what supports it): the job keeps `amount`, `currency` and the record's `exchange_rate`
//! as Zoho sent them on every row, so were the direction ever found reversed, `amount_home` is recomputed from
//! stored columns (`amount * exchange_rate`) without reading Zoho again. The direction lives in one function,
//! [`to_home`].
//!
//! Precision: Zoho keeps exchange rates to 9 decimal places and shows money with the home currency's
//! `format.decimal_places` (2 for most currencies). A converted amount is rounded once, to the home currency's
//! decimal places (at most 9, BigQuery NUMERIC's scale), half away from zero (Zoho's rounding option "normal");
//! an amount already in the home currency is kept exactly as sent.
//!
//! Orgs without multi-currency (Zoho answers the currencies API with 403 `CURRENCIES_NOT_ENABLED`, or
//! `FEATURE_NOT_SUPPORTED` below the Enterprise edition; their deals have no `Currency` field) get
//! `amount_home = amount`. The job does not call the API when the Deals fields have no `Currency` (one credit
//! saved). Not here: which columns hold the result (`warehouse/`).

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::client::ZohoClient;
use super::Error;
use crate::deal::{Deal, HomeMoney};

/// The endpoint, relative to `/crm/v8/`. One call per run, one credit (docs/zoho-api.md §5.5).
pub const ENDPOINT: &str = "org/currencies";

/// Decimal places when the home currency's `format.decimal_places` is absent or unreadable.
pub const DEFAULT_DECIMAL_PLACES: u32 = 2;

/// BigQuery NUMERIC keeps 9 decimal places: a converted amount is never rounded finer.
const MAX_DECIMAL_PLACES: u32 = 9;

/// What the job knows about the org's currencies for this run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OrgCurrencies {
    /// Multi-currency is on: this is the home currency.
    Multi(HomeCurrency),
    /// The org has one currency (multi-currency off or not in its edition): amounts are already home amounts.
    Single,
    /// The currencies could not be read (a missing scope or permission, an unreadable answer): the home
    /// columns stay NULL rather than guessed.
    #[default]
    Unknown,
}

/// The org's home (base) currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeCurrency {
    /// ISO 4217 code, e.g. `USD`.
    pub iso_code: String,
    /// Decimal places converted amounts are rounded to.
    pub decimal_places: u32,
}

impl OrgCurrencies {
    /// Reads the org's currencies (one call). An org without multi-currency is [`OrgCurrencies::Single`]; a
    /// missing scope or permission or an unreadable answer degrades to [`OrgCurrencies::Unknown`] with one
    /// warning; a failure that stops the run anyway (credentials, throttling, the credit budget) is returned.
    pub async fn load(client: &ZohoClient) -> Result<OrgCurrencies, Error> {
        let answer = client.get(ENDPOINT, &[], &[]).await.and_then(|body| match body {
            // No content: no currencies to list, so one currency.
            None => Ok(OrgCurrencies::Single),
            Some(body) => parse(&body),
        });
        match answer {
            Ok(c) => {
                tracing::debug!(currencies = ?c, "read the org's currencies");
                Ok(c)
            }
            Err(Error::PermissionDenied { code, .. }) if is_not_enabled(&code) => Ok(OrgCurrencies::Single),
            Err(Error::Rejected { code, .. }) if is_not_enabled(&code) => Ok(OrgCurrencies::Single),
            Err(e) => super::without_optional(
                e,
                "could not read the org's currencies: home_currency, amount_home and expected_revenue_home stay \
                 empty; add the scope ZohoCRM.settings.currencies.READ to the refresh token to fill them",
                OrgCurrencies::Unknown,
            ),
        }
    }

    /// Fills `deal.home` from the deal's own amount, currency and exchange rate.
    pub fn apply(&self, deal: &mut Deal) {
        deal.home = match self {
            OrgCurrencies::Unknown => HomeMoney::default(),
            OrgCurrencies::Single => HomeMoney {
                // Without multi-currency a record carries no Currency; if it does, that is the org's currency.
                currency: deal.currency.clone(),
                amount: deal.amount,
                expected_revenue: deal.expected_revenue,
            },
            OrgCurrencies::Multi(home) => {
                let convert =
                    |v: Option<Decimal>| v.and_then(|v| to_home(v, deal.currency.as_deref(), deal.exchange_rate, home));
                let money = HomeMoney {
                    currency: Some(home.iso_code.clone()),
                    amount: convert(deal.amount),
                    expected_revenue: convert(deal.expected_revenue),
                };
                if deal.amount.is_some() && money.amount.is_none() {
                    tracing::warn!(
                        deal_id = %deal.deal_id,
                        currency = deal.currency.as_deref().unwrap_or(""),
                        exchange_rate = ?deal.exchange_rate,
                        "deal in a foreign currency without a usable Exchange_Rate: amount_home left empty"
                    );
                }
                money
            }
        };
    }
}

/// `amount` (in `currency`, at the record's `rate`) in the home currency, or `None` when it cannot be known.
///
/// - A deal in the home currency keeps its amount exactly (its rate is 1 by definition).
/// - Otherwise `amount ÷ rate` (the rate is foreign units per home unit), rounded to the home currency's decimal
///   places, half away from zero.
/// - No rate, or a rate that is zero or negative: `None`. The job does not quarantine the deal (it is a valid won
///   deal, and a quarantine would hide it from every revenue figure) nor substitute the org's current rate (that
///   would be a different, later rate than the one the deal was booked at): `amount_home` is NULL and a warning
///   names the deal, so the gap is visible and fixed by correcting the record in Zoho.
pub fn to_home(amount: Decimal, currency: Option<&str>, rate: Option<Decimal>, home: &HomeCurrency) -> Option<Decimal> {
    if currency.is_some_and(|c| c.trim().eq_ignore_ascii_case(&home.iso_code)) {
        return Some(amount);
    }
    let rate = rate.filter(|r| r.is_sign_positive() && !r.is_zero())?;
    let places = home.decimal_places.min(MAX_DECIMAL_PLACES);
    amount
        .checked_div(rate)
        .map(|v| v.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero).normalize())
}

/// Zoho's answers for an org without multi-currency (docs/zoho-api.md §5.5).
fn is_not_enabled(code: &str) -> bool {
    matches!(code, "CURRENCIES_NOT_ENABLED" | "FEATURE_NOT_SUPPORTED")
}

/// Parses `GET /org/currencies`: the currency with `is_base: true` is home.
pub fn parse(body: &Value) -> Result<OrgCurrencies, Error> {
    let malformed = |detail: &str| Error::malformed(ENDPOINT, detail);
    let list = body.get("currencies").and_then(Value::as_array).ok_or_else(|| malformed("no `currencies` array"))?;
    let base = list
        .iter()
        .find(|c| c.get("is_base").and_then(Value::as_bool) == Some(true))
        .ok_or_else(|| malformed("no currency has `is_base: true`"))?;
    let iso_code = base
        .get("iso_code")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("the base currency has no `iso_code`"))?
        .to_ascii_uppercase();
    // `decimal_places` is a string in Zoho's samples ("2"); a number is read too.
    let decimal_places = match base.pointer("/format/decimal_places") {
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
    .unwrap_or(DEFAULT_DECIMAL_PLACES)
    .min(MAX_DECIMAL_PLACES);
    Ok(OrgCurrencies::Multi(HomeCurrency { iso_code, decimal_places }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    fn usd() -> HomeCurrency {
        HomeCurrency { iso_code: "USD".into(), decimal_places: 2 }
    }

    #[test]
    fn a_rate_above_one_divides_the_amount_down_to_the_home_currency() {
        // 1 USD = 83.1234 INR: 1,000,000 INR is 12,030.3067… USD, rounded to the cent.
        assert_eq!(to_home(dec("1000000"), Some("INR"), Some(dec("83.1234")), &usd()), Some(dec("12030.31")));
    }

    #[test]
    fn a_rate_below_one_multiplies_the_amount_up_to_the_home_currency() {
        // 1 USD = 0.92 EUR: 12,500.10 EUR is 13,587.065… USD, rounded half away from zero to 13,587.07.
        assert_eq!(to_home(dec("12500.1"), Some("EUR"), Some(dec("0.92")), &usd()), Some(dec("13587.07")));
        // and a midpoint: 1.005 / 1 would stay, 2.01 / 2 = 1.005 → 1.01
        assert_eq!(to_home(dec("2.01"), Some("GBP"), Some(dec("2")), &usd()), Some(dec("1.01")));
        assert_eq!(to_home(dec("-2.01"), Some("GBP"), Some(dec("2")), &usd()), Some(dec("-1.01")));
    }

    #[test]
    fn a_deal_in_the_home_currency_keeps_its_amount_exactly_whatever_its_rate_says() {
        assert_eq!(to_home(dec("12500.105"), Some("USD"), Some(dec("1")), &usd()), Some(dec("12500.105")));
        assert_eq!(to_home(dec("7"), Some("usd"), None, &usd()), Some(dec("7")));
    }

    #[test]
    fn a_foreign_deal_without_a_usable_rate_has_no_home_amount() {
        assert_eq!(to_home(dec("100"), Some("EUR"), None, &usd()), None);
        assert_eq!(to_home(dec("100"), Some("EUR"), Some(dec("0")), &usd()), None);
        assert_eq!(to_home(dec("100"), Some("EUR"), Some(dec("-1.5")), &usd()), None);
    }

    #[test]
    fn the_home_currency_decides_the_decimal_places() {
        let jpy = HomeCurrency { iso_code: "JPY".into(), decimal_places: 0 };
        // 1 JPY = 0.0061 EUR: 1,000 EUR is 163,934.43… JPY → 163,934.
        assert_eq!(to_home(dec("1000"), Some("EUR"), Some(dec("0.0061")), &jpy), Some(dec("163934")));
        let bhd = HomeCurrency { iso_code: "BHD".into(), decimal_places: 3 };
        assert_eq!(to_home(dec("10"), Some("USD"), Some(dec("2.652520")), &bhd), Some(dec("3.770")));
    }

    #[test]
    fn the_base_currency_of_the_currencies_api_is_home() {
        let body = json!({"currencies": [
            {"iso_code": "EUR", "is_base": false, "exchange_rate": "0.920000000", "format": {"decimal_places": "2"}},
            {"iso_code": "jpy", "is_base": true, "exchange_rate": "1.000000000", "format": {"decimal_places": "0"}}
        ]});
        assert_eq!(
            parse(&body).expect("parses"),
            OrgCurrencies::Multi(HomeCurrency { iso_code: "JPY".into(), decimal_places: 0 })
        );
        let no_format = json!({"currencies": [{"iso_code": "USD", "is_base": true}]});
        assert_eq!(parse(&no_format).expect("parses"), OrgCurrencies::Multi(usd()));
        assert!(parse(&json!({"currencies": [{"iso_code": "USD", "is_base": false}]})).is_err());
        assert!(parse(&json!({"data": []})).is_err());
    }

    #[test]
    fn an_org_without_multi_currency_gets_its_amounts_as_home_amounts() {
        let mut deal = crate::zoho::model::to_deal(
            &json!({"id": "9", "Modified_Time": "2026-11-27T10:15:00Z", "Amount": 1250.5, "Expected_Revenue": 125.05}),
        )
        .expect("maps");
        OrgCurrencies::Single.apply(&mut deal);
        assert_eq!(
            deal.home,
            HomeMoney { currency: None, amount: Some(dec("1250.5")), expected_revenue: Some(dec("125.05")) }
        );
        OrgCurrencies::Unknown.apply(&mut deal);
        assert_eq!(deal.home, HomeMoney::default(), "unknown currencies leave the home columns empty");
    }

    #[test]
    fn a_multi_currency_deal_converts_both_amounts_with_its_own_rate() {
        let mut deal = crate::zoho::model::to_deal(&json!({"id": "9", "Modified_Time": "2026-11-27T10:15:00Z",
            "Amount": 500000, "Expected_Revenue": 250000, "Currency": "INR", "Exchange_Rate": 83.1234}))
        .expect("maps");
        OrgCurrencies::Multi(usd()).apply(&mut deal);
        assert_eq!(deal.home.currency.as_deref(), Some("USD"));
        assert_eq!(deal.home.amount, Some(dec("6015.15")));
        assert_eq!(deal.home.expected_revenue, Some(dec("3007.58")));
    }
}
