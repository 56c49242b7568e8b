//! Parsing and validation of one seller offer.
//!
//! An offer is a JSON object with the fields `offerId`, `productId`, `sellerId`, `price` and
//! `currency`; other fields are allowed and passed on untouched. The ids are JSON strings or
//! non-negative JSON integers and are kept as the JSON text they were sent as, so an integer
//! id above 2^53, which a double cannot hold, survives unchanged. The price is read from its
//! JSON text straight into a [`Decimal`], never through a binary floating-point number.

use std::fmt;

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Maximum length of an id, in bytes of its text, so that ids fit in Pub/Sub attribute values
/// (1024 bytes) and in object names.
pub const MAX_ID_BYTES: usize = 256;

/// An id of an offer, a product or a seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferId {
    /// The id as text: the digits of an integer, or the content of a string.
    pub text: String,
    /// The id as it appeared in the JSON: `123` or `"123"`.
    pub json: String,
}

impl fmt::Display for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json)
    }
}

/// A valid offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The offer's id. A message with an id that was already accepted is a duplicate.
    pub offer_id: OfferId,
    /// The product on offer; the best offer is kept per product and currency.
    pub product_id: OfferId,
    /// The seller who made the offer.
    pub seller_id: OfferId,
    /// The price, greater than 0, with no more decimal places than the currency has.
    pub price: Decimal,
    /// The ISO 4217 code of the price's currency.
    pub currency: Currency,
}

/// An offer that failed validation, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid offer: {}", .problems.join("; "))]
pub struct InvalidOffer {
    /// One sentence per problem, each naming the field and the value at fault.
    pub problems: Vec<String>,
}

/// The fields of an offer as JSON text, before validation. Missing fields and `null` are
/// `None`.
#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a JSON object with the fields of an offer"
)]
struct OfferFields<'a> {
    #[serde(borrow)]
    offer_id: Option<&'a RawValue>,
    #[serde(borrow)]
    product_id: Option<&'a RawValue>,
    #[serde(borrow)]
    seller_id: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(borrow)]
    currency: Option<&'a RawValue>,
}

impl Offer {
    /// Parses and validates an offer from the data of a message.
    ///
    /// # Errors
    ///
    /// [`InvalidOffer`] listing every problem. The problems are data that is not a JSON
    /// object, a missing field, an id that is not a string or a non-negative integer, a price
    /// that is not a positive decimal, and a currency that is not a current ISO 4217 code.
    pub fn parse(data: &[u8]) -> Result<Self, InvalidOffer> {
        let fields: OfferFields<'_> = serde_json::from_slice(data).map_err(|err| InvalidOffer {
            problems: vec![format!(
                "the message data is not a JSON object of an offer: {err}"
            )],
        })?;
        let mut problems = Vec::new();
        let offer_id = required(fields.offer_id, "offerId", &mut problems)
            .and_then(|raw| record(parse_id(raw, "offerId"), &mut problems));
        let product_id = required(fields.product_id, "productId", &mut problems)
            .and_then(|raw| record(parse_id(raw, "productId"), &mut problems));
        let seller_id = required(fields.seller_id, "sellerId", &mut problems)
            .and_then(|raw| record(parse_id(raw, "sellerId"), &mut problems));
        let currency = required(fields.currency, "currency", &mut problems)
            .and_then(|raw| record(parse_currency(raw), &mut problems));
        let price = required(fields.price, "price", &mut problems)
            .and_then(|raw| record(parse_price(raw), &mut problems));
        if let (Some(price), Some(currency)) = (price, currency) {
            if let Err(problem) = check_minor_units(price, currency) {
                problems.push(problem);
            }
        }
        match (offer_id, product_id, seller_id, price, currency) {
            (Some(offer_id), Some(product_id), Some(seller_id), Some(price), Some(currency))
                if problems.is_empty() =>
            {
                Ok(Self {
                    offer_id,
                    product_id,
                    seller_id,
                    price,
                    currency,
                })
            }
            _ => Err(InvalidOffer { problems }),
        }
    }
}

fn required<'a>(
    field: Option<&'a RawValue>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<&'a RawValue> {
    if field.is_none() {
        problems.push(format!("{name} is missing"));
    }
    field
}

fn record<T>(result: Result<T, String>, problems: &mut Vec<String>) -> Option<T> {
    result.map_err(|problem| problems.push(problem)).ok()
}

/// Reads an id: a non-empty string without control characters, or a non-negative integer.
fn parse_id(raw: &RawValue, name: &str) -> Result<OfferId, String> {
    let json = raw.get();
    let text = if json.starts_with('"') {
        let text: String = serde_json::from_str(json)
            .map_err(|err| format!("{name} {json} is not a valid JSON string: {err}"))?;
        if text.is_empty() {
            return Err(format!("{name} is an empty string"));
        }
        if text.chars().any(char::is_control) {
            return Err(format!("{name} {json} contains control characters"));
        }
        text
    } else if json.bytes().all(|byte| byte.is_ascii_digit()) {
        // JSON allows no leading zeros, so the digits are the integer's one spelling.
        json.to_owned()
    } else {
        return Err(format!(
            "{name} must be a string or a non-negative integer, but it is {}",
            describe(json)
        ));
    };
    if text.len() > MAX_ID_BYTES {
        return Err(format!(
            "{name} is {} bytes long, more than the {MAX_ID_BYTES} allowed",
            text.len()
        ));
    }
    Ok(OfferId {
        text,
        json: json.to_owned(),
    })
}

/// Names the kind of a JSON value that is not a valid id, quoting it when it is short.
fn describe(json: &str) -> String {
    let kind = match json.as_bytes().first() {
        Some(b'{') => return "an object".to_owned(),
        Some(b'[') => return "an array".to_owned(),
        Some(b't' | b'f') => "the boolean",
        Some(b'-') => "the negative number",
        _ => "the number",
    };
    format!("{kind} {json}")
}

/// The significant digits of a price, which `Decimal` keeps exactly.
const MAX_PRICE_DIGITS: usize = 28;

/// Reads a price written as a JSON string or a JSON number, in plain decimal notation.
fn parse_price(raw: &RawValue) -> Result<Decimal, String> {
    let json = raw.get();
    let text: String = if json.starts_with('"') {
        serde_json::from_str(json).map_err(|err| format!("price {json} is invalid: {err}"))?
    } else if json.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        json.to_owned()
    } else {
        return Err(format!(
            "price must be a decimal number as a JSON string or number, such as \"19.99\", \
             but it is {json}"
        ));
    };
    let digits = text.strip_prefix('-').unwrap_or(&text);
    if !is_plain_decimal(digits) {
        return Err(format!(
            "price {json} is not a decimal number in plain notation: write digits with an \
             optional decimal point, such as \"19.99\", without exponent, sign or spaces"
        ));
    }
    // Trailing zeros of the fraction are not significant: `1.000` is `1`.
    let trimmed = match digits.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => digits.to_owned(),
    };
    let significant = trimmed
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    let too_many = || {
        format!(
            "price {json} has {significant} significant digits; at most 28 (and 28 decimal \
             places) are kept exactly"
        )
    };
    if significant > MAX_PRICE_DIGITS {
        return Err(too_many());
    }
    // The price as written keeps its scale (`22.40`). When trailing zeros give it too many
    // digits for `Decimal`, the trimmed form is read instead.
    let sign = if text.starts_with('-') { "-" } else { "" };
    let price = Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_str_exact(&format!("{sign}{trimmed}")))
        .map_err(|_| too_many())?;
    if price.is_sign_negative() || price.is_zero() {
        return Err(format!("price {json} must be greater than 0"));
    }
    Ok(price)
}

/// Returns whether `text` is digits with an optional fraction: `12`, `12.5`, `0.99`.
fn is_plain_decimal(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && all_digits(fraction)
}

/// Reads a currency: a current ISO 4217 code of a currency, in upper case.
fn parse_currency(raw: &RawValue) -> Result<Currency, String> {
    let json = raw.get();
    let Ok(code) = serde_json::from_str::<String>(json) else {
        return Err(format!(
            "currency must be an ISO 4217 code as a string, such as \"EUR\", but it is {json}"
        ));
    };
    let well_formed = code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_uppercase());
    if !well_formed {
        let hint = if code.len() == 3 && code.is_ascii() {
            format!(
                ": write it in upper case, as {:?}",
                code.to_ascii_uppercase()
            )
        } else {
            String::new()
        };
        return Err(format!(
            "currency {json} is not an ISO 4217 code, which is three upper-case letters such \
             as \"EUR\"{hint}"
        ));
    }
    let Some(currency) = Currency::from_code(&code) else {
        return Err(format!("currency {json} is not an ISO 4217 currency code"));
    };
    if let Some(successor) = currency.is_superseded() {
        return Err(format!(
            "currency {json} is no longer in use: it was replaced by \"{}\"",
            successor.code()
        ));
    }
    if currency.is_special() {
        return Err(format!(
            "currency {json} ({}) is an ISO 4217 code for a commodity, a test or no \
             currency, not one that prices are set in",
            currency.name()
        ));
    }
    Ok(currency)
}

/// Rejects a price with more decimal places than the currency's minor unit, such as 9.999
/// EUR. Trailing zeros do not count: 9.990 EUR is 9.99 EUR.
fn check_minor_units(price: Decimal, currency: Currency) -> Result<(), String> {
    let Some(exponent) = currency.exponent() else {
        return Ok(());
    };
    let places = price.normalize().scale();
    if places > u32::from(exponent) {
        return Err(format!(
            "price {price} has {places} decimal places, but {} has {exponent}",
            currency.code()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Offer, InvalidOffer> {
        Offer::parse(json.as_bytes())
    }

    fn problems(json: &str) -> Vec<String> {
        parse(json).expect_err("invalid offer").problems
    }

    const VALID: &str =
        r#"{"offerId":"o-1","productId":"p-1","sellerId":7,"price":"19.99","currency":"EUR"}"#;

    #[test]
    fn valid_offer_keeps_ids_as_sent() {
        let offer = parse(VALID).expect("valid");

        assert_eq!(offer.offer_id.text, "o-1");
        assert_eq!(offer.offer_id.json, "\"o-1\"");
        assert_eq!(offer.seller_id.text, "7");
        assert_eq!(offer.seller_id.json, "7");
        assert_eq!(offer.price, Decimal::new(1999, 2));
        assert_eq!(offer.currency, Currency::EUR);
    }

    #[test]
    fn huge_integer_id_is_exact() {
        let offer = parse(
            r#"{"offerId":9007199254740993,"productId":123456789012345678901234567890,
                "sellerId":"s","price":1,"currency":"USD"}"#,
        )
        .expect("valid");

        assert_eq!(offer.offer_id.text, "9007199254740993");
        assert_eq!(offer.product_id.text, "123456789012345678901234567890");
    }

    #[test]
    fn price_number_is_read_without_floating_point() {
        let offer = parse(
            r#"{"offerId":1,"productId":1,"sellerId":1,"price":9007199254740993.01,
                "currency":"USD"}"#,
        )
        .expect("valid");

        assert_eq!(offer.price.to_string(), "9007199254740993.01");
    }

    #[test]
    fn missing_fields_are_all_reported() {
        let found = problems(r#"{"offerId":"o","price":null}"#);

        assert_eq!(
            found,
            [
                "productId is missing",
                "sellerId is missing",
                "currency is missing",
                "price is missing"
            ]
        );
    }

    #[test]
    fn ids_must_be_strings_or_natural_numbers() {
        let cases = [
            ("-5", "the negative number -5"),
            ("1.5", "the number 1.5"),
            ("1e3", "the number 1e3"),
            ("true", "the boolean true"),
            ("{}", "an object"),
            ("[1]", "an array"),
        ];
        for (id, description) in cases {
            let json = format!(
                r#"{{"offerId":{id},"productId":"p","sellerId":"s","price":"1","currency":"EUR"}}"#
            );
            let found = problems(&json);
            assert_eq!(
                found,
                [format!(
                    "offerId must be a string or a non-negative integer, but it is {description}"
                )],
                "id {id}"
            );
        }
        assert_eq!(
            problems(
                r#"{"offerId":"","productId":"p","sellerId":"s","price":"1","currency":"EUR"}"#
            ),
            ["offerId is an empty string"]
        );
    }

    #[test]
    fn trailing_zeros_are_not_significant_digits() {
        let price = format!("\"1.{}\"", "0".repeat(41));
        let json = format!(
            r#"{{"offerId":1,"productId":"p","sellerId":"s","price":{price},"currency":"EUR"}}"#
        );
        let offer = parse(&json).expect("1 followed by zeros is a valid price");
        assert_eq!(offer.price, Decimal::ONE);

        let json = r#"{"offerId":1,"productId":"p","sellerId":"s","price":"1234567890123456789012345678","currency":"JPY"}"#;
        assert!(parse(json).is_ok(), "28 digits are kept");
    }

    #[test]
    fn array_is_not_an_offer() {
        let found = problems("[1,2]");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("expected a JSON object with the fields of an offer"),
            "{found:?}"
        );
        assert!(
            !found[0].contains("OfferFields"),
            "no internal name: {found:?}"
        );
    }

    #[test]
    fn bad_prices_are_rejected() {
        let cases = [
            ("\"0\"", "must be greater than 0"),
            ("-1.50", "must be greater than 0"),
            ("\"1e3\"", "plain notation"),
            ("1E3", "plain notation"),
            ("\" 5\"", "plain notation"),
            ("\"5.\"", "plain notation"),
            ("\"abc\"", "plain notation"),
            ("true", "such as \"19.99\", but it is true"),
            (
                "\"123456789012345678901234567890\"",
                "30 significant digits; at most 28",
            ),
            (
                "\"12345678901234567890123456789\"",
                "29 significant digits; at most 28",
            ),
        ];
        for (price, expected) in cases {
            let json = format!(
                r#"{{"offerId":1,"productId":"p","sellerId":"s","price":{price},"currency":"EUR"}}"#
            );
            let found = problems(&json);
            assert_eq!(found.len(), 1, "price {price}: {found:?}");
            assert!(found[0].contains(expected), "price {price}: {found:?}");
        }
    }

    #[test]
    fn currencies_must_be_current_iso_codes() {
        let cases = [
            ("\"eur\"", "write it in upper case, as \"EUR\""),
            ("\"EURO\"", "three upper-case letters"),
            ("\"ABC\"", "not an ISO 4217 currency code"),
            ("\"HRK\"", "replaced by \"EUR\""),
            ("\"XXX\"", "not one that prices are set in"),
            ("\"XAU\"", "not one that prices are set in"),
            ("978", "as a string"),
        ];
        for (currency, expected) in cases {
            let json = format!(
                r#"{{"offerId":1,"productId":"p","sellerId":"s","price":"1","currency":{currency}}}"#
            );
            let found = problems(&json);
            assert_eq!(found.len(), 1, "currency {currency}: {found:?}");
            assert!(
                found[0].contains(expected),
                "currency {currency}: {found:?}"
            );
        }
    }

    #[test]
    fn price_places_limited_by_currency() {
        let offer = |price: &str, currency: &str| {
            parse(&format!(
                r#"{{"offerId":1,"productId":"p","sellerId":"s","price":"{price}","currency":"{currency}"}}"#
            ))
        };

        assert!(offer("9.990", "EUR").is_ok());
        assert!(offer("1000", "JPY").is_ok());
        assert!(offer("1.234", "BHD").is_ok());
        assert_eq!(
            offer("9.999", "EUR").expect_err("too many places").problems,
            ["price 9.999 has 3 decimal places, but EUR has 2"]
        );
        assert!(offer("100.5", "JPY").is_err());
    }

    #[test]
    fn data_that_is_not_an_object_is_rejected() {
        for data in ["", "[]", "\"offer\"", "{\"offerId\":1,"] {
            let found = problems(data);
            assert_eq!(found.len(), 1, "{data:?}");
            assert!(
                found[0].starts_with("the message data is not a JSON object"),
                "{found:?}"
            );
        }
    }

    #[test]
    fn duplicate_field_is_rejected() {
        let found = problems(
            r#"{"offerId":1,"offerId":2,"productId":"p","sellerId":"s","price":"1","currency":"EUR"}"#,
        );

        assert!(found[0].contains("duplicate field"), "{found:?}");
    }
}
