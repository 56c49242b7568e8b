//! The durable state of one product: its best offer per currency and every offer accepted for
//! it, stored as one JSON object per product.
//!
//! The best offer of a product in a currency is the one with the lowest price. On a tie the
//! offer published first keeps its place, by message id, which grows with publish order on a
//! topic. Prices in different currencies are never compared, since that would need exchange
//! rates. Ids are stored as the JSON text they were sent as.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::offer::Offer;

/// The state object of one product.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductState {
    /// The product's id, as sent.
    pub product_id: Box<RawValue>,
    /// The best offer per ISO 4217 currency code.
    pub best_offers: BTreeMap<String, BestOffer>,
    /// Every offer accepted for the product, by the text of its id.
    pub accepted_offers: BTreeMap<String, AcceptedOffer>,
}

/// The best offer of a product in one currency.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BestOffer {
    /// The offer's id, as sent.
    pub offer_id: Box<RawValue>,
    /// The seller's id, as sent.
    pub seller_id: Box<RawValue>,
    /// The price in decimal notation.
    pub price: String,
    /// Id of the message that carried the offer, which orders offers of equal price.
    pub message_id: String,
}

/// The fields of an accepted offer that tell a redelivery from an id used again for another
/// offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedOffer {
    /// The seller's id as text.
    pub seller_id: String,
    /// The price in decimal notation.
    pub price: String,
    /// The ISO 4217 currency code.
    pub currency: String,
    /// Id of the message that carried the offer.
    pub message_id: String,
}

/// The change that an offer makes to its product's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The offer was accepted before with the same seller, price and currency: a redelivery
    /// or a copy, which changes nothing.
    Duplicate,
    /// The offer id was accepted before for a different offer.
    Conflict {
        /// The offer accepted first under this id.
        earlier: AcceptedOffer,
    },
    /// A new offer, accepted.
    Accepted {
        /// Whether it is now the best offer of its product in its currency.
        best: bool,
        /// The price of the best offer it replaces, if it replaces one.
        previous_best_price: Option<Decimal>,
    },
}

impl ProductState {
    /// Returns the empty state of a product.
    ///
    /// # Errors
    ///
    /// Fails only when `product_json` is not valid JSON, which the offer parser excludes.
    pub fn new(product_json: &str) -> Result<Self, serde_json::Error> {
        Ok(Self {
            product_id: RawValue::from_string(product_json.to_owned())?,
            best_offers: BTreeMap::new(),
            accepted_offers: BTreeMap::new(),
        })
    }

    /// Decides what `offer`, carried by the message `message_id`, changes, without changing
    /// the state.
    pub fn decide(&self, offer: &Offer, message_id: &str) -> Decision {
        let record = accepted_record(offer, message_id);
        if let Some(earlier) = self.accepted_offers.get(&offer.offer_id.text) {
            return if same_offer(earlier, &record) {
                Decision::Duplicate
            } else {
                Decision::Conflict {
                    earlier: earlier.clone(),
                }
            };
        }
        match self.best_offers.get(offer.currency.code()) {
            None => Decision::Accepted {
                best: true,
                previous_best_price: None,
            },
            Some(best) => {
                let best_price = best.price.parse::<Decimal>().ok();
                let beats = match best_price {
                    Some(best_price) if offer.price != best_price => offer.price < best_price,
                    // On a tie, the offer published first wins. A best offer whose stored
                    // price does not parse is replaced.
                    Some(_) => published_before(message_id, &best.message_id),
                    None => true,
                };
                Decision::Accepted {
                    best: beats,
                    previous_best_price: beats.then_some(best_price).flatten(),
                }
            }
        }
    }

    /// Records an accepted offer, and makes it the best offer of its currency when `best`.
    ///
    /// # Errors
    ///
    /// Fails only when an id's JSON text is not valid JSON, which the offer parser excludes.
    pub fn accept(
        &mut self,
        offer: &Offer,
        message_id: &str,
        best: bool,
    ) -> Result<(), serde_json::Error> {
        if best {
            let best_offer = BestOffer {
                offer_id: RawValue::from_string(offer.offer_id.json.clone())?,
                seller_id: RawValue::from_string(offer.seller_id.json.clone())?,
                price: offer.price.to_string(),
                message_id: message_id.to_owned(),
            };
            self.best_offers
                .insert(offer.currency.code().to_owned(), best_offer);
        }
        self.accepted_offers.insert(
            offer.offer_id.text.clone(),
            accepted_record(offer, message_id),
        );
        Ok(())
    }
}

fn accepted_record(offer: &Offer, message_id: &str) -> AcceptedOffer {
    AcceptedOffer {
        seller_id: offer.seller_id.text.clone(),
        price: offer.price.to_string(),
        currency: offer.currency.code().to_owned(),
        message_id: message_id.to_owned(),
    }
}

/// Returns whether two records describe the same offer. The message id does not count, since a
/// copy published again has a new one, and prices compare as numbers, so 9.9 equals 9.90.
fn same_offer(earlier: &AcceptedOffer, record: &AcceptedOffer) -> bool {
    let price = |text: &str| text.parse::<Decimal>().ok();
    earlier.seller_id == record.seller_id
        && earlier.currency == record.currency
        && price(&earlier.price).is_some()
        && price(&earlier.price) == price(&record.price)
}

/// Returns whether message `id` was published before message `other` on the same topic.
/// Message ids are decimal sequence numbers; ids that are not compare as never earlier.
fn published_before(id: &str, other: &str) -> bool {
    match (id.parse::<u64>(), other.parse::<u64>()) {
        (Ok(id), Ok(other)) => id < other,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, price: &str) -> Offer {
        let json = format!(
            r#"{{"offerId":{id},"productId":"p","sellerId":"s","price":"{price}","currency":"EUR"}}"#
        );
        Offer::parse(json.as_bytes()).expect("valid offer")
    }

    fn state() -> ProductState {
        ProductState::new("\"p\"").expect("valid product id")
    }

    fn accept(state: &mut ProductState, offer: &Offer, message_id: &str) -> Decision {
        let decision = state.decide(offer, message_id);
        if let Decision::Accepted { best, .. } = decision {
            state.accept(offer, message_id, best).expect("valid ids");
        }
        decision
    }

    fn price(text: &str) -> Decimal {
        text.parse().expect("valid decimal")
    }

    #[test]
    fn first_offer_is_best() {
        let mut state = state();

        assert_eq!(
            accept(&mut state, &offer("1", "10.00"), "5"),
            Decision::Accepted {
                best: true,
                previous_best_price: None
            }
        );
        assert_eq!(state.best_offers["EUR"].offer_id.get(), "1");
    }

    #[test]
    fn lower_price_replaces_best_exactly() {
        let mut state = state();
        accept(&mut state, &offer("1", "10.00"), "5");

        let decision = accept(&mut state, &offer("2", "9.70"), "6");

        assert_eq!(
            decision,
            Decision::Accepted {
                best: true,
                previous_best_price: Some(price("10.00"))
            }
        );
        assert_eq!(price("10.00") - price("9.70"), price("0.30"));
        assert_eq!(state.best_offers["EUR"].offer_id.get(), "2");
        assert_eq!(state.accepted_offers.len(), 2);
    }

    #[test]
    fn higher_price_is_accepted_but_not_best() {
        let mut state = state();
        accept(&mut state, &offer("1", "10.00"), "5");

        let decision = accept(&mut state, &offer("2", "10.01"), "6");

        assert_eq!(
            decision,
            Decision::Accepted {
                best: false,
                previous_best_price: None
            }
        );
        assert_eq!(state.best_offers["EUR"].offer_id.get(), "1");
    }

    #[test]
    fn tie_goes_to_offer_published_first() {
        let mut state = state();
        accept(&mut state, &offer("1", "10"), "8");

        let later = accept(&mut state, &offer("2", "10.00"), "9");
        let earlier = accept(&mut state, &offer("3", "10.0"), "7");

        assert!(matches!(later, Decision::Accepted { best: false, .. }));
        assert!(matches!(earlier, Decision::Accepted { best: true, .. }));
        assert_eq!(state.best_offers["EUR"].offer_id.get(), "3");
    }

    #[test]
    fn same_offer_again_is_duplicate() {
        let mut state = state();
        accept(&mut state, &offer("\"o-1\"", "10.00"), "5");

        assert_eq!(
            state.decide(&offer("\"o-1\"", "10.0"), "5"),
            Decision::Duplicate
        );
        assert_eq!(
            state.decide(&offer("\"o-1\"", "10.00"), "12"),
            Decision::Duplicate
        );
    }

    #[test]
    fn id_used_again_for_other_price_is_conflict() {
        let mut state = state();
        accept(&mut state, &offer("1", "10.00"), "5");

        let decision = state.decide(&offer("1", "8.00"), "6");

        assert!(
            matches!(&decision, Decision::Conflict { earlier } if earlier.price == "10.00"),
            "{decision:?}"
        );
    }

    #[test]
    fn state_round_trips_ids_exactly() {
        let mut state = state();
        accept(&mut state, &offer("9007199254740993", "1.25"), "5");

        let json = serde_json::to_string(&state).expect("serializable");
        let read: ProductState = serde_json::from_str(&json).expect("readable");

        assert!(json.contains(r#""offerId":9007199254740993"#), "{json}");
        assert_eq!(read.best_offers["EUR"].offer_id.get(), "9007199254740993");
        assert!(read.accepted_offers.contains_key("9007199254740993"));
    }
}
