//! The offers function: validates each seller offer published to its topic, keeps the best
//! offer per product and currency in a bucket, and publishes accepted offers to another topic.
//!
//! For each offer it runs these steps, holding a lock on the offer's product throughout:
//!
//! 1. Parse and validate the offer. An invalid one fails permanently, so the runner
//!    dead-letters it with the reason in the `sluiceDeadLetterReason` attribute.
//! 2. Read the product's state object `products/{productId}.json` from the state bucket.
//! 3. If the state lists the offer id with the same seller, price and currency, the message
//!    is a redelivery or a copy: it is acknowledged and nothing else happens. The same id
//!    with other values fails permanently.
//! 4. Publish the offer, byte for byte as received, to the accepted topic. Its attributes
//!    tell whether it is now the best offer.
//! 5. Write the new state object.
//!
//! Publishing comes before recording so that a crash never loses an accepted offer: after a
//! crash between steps 4 and 5 the message is delivered again, finds no record and is
//! published a second time. So the accepted topic is at least once, like every Pub/Sub
//! topic, and its consumers can drop a copy by the `offerId` attribute. Without a crash, a
//! redelivered offer finds its record in step 3 and publishes nothing.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rust_decimal::Decimal;
use serde::Deserialize;
use sluice_router::buckets::BucketError;
use sluice_router::deliver::Broker;
use sluice_router::storage::{Storage, StorageError};
use sluice_router::store::{NewMessage, TopicMessage};
use tracing::{debug, info};

use super::offer::Offer;
use super::state::{Decision, ProductState};
use crate::contract::{EventContext, Handler, HandlerError};
use crate::event::TOPIC_PUBLISH;

/// Prefix of the names of state objects in the state bucket.
pub const STATE_PREFIX: &str = "products/";

/// Suffix of the names of state objects.
pub const STATE_SUFFIX: &str = ".json";

/// Number of product locks. Offers of products that share a lock wait for each other, which
/// costs only some concurrency.
const LOCK_STRIPES: usize = 64;

/// Characters of a product id kept as they are in the state object's name. The others are
/// percent-encoded, so every id makes a valid name and no two ids make the same one.
const NAME_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Attribute names of the messages published to the accepted topic.
pub mod attributes {
    /// The offer id as text.
    pub const OFFER_ID: &str = "offerId";
    /// The product id as text.
    pub const PRODUCT_ID: &str = "productId";
    /// The seller id as text.
    pub const SELLER_ID: &str = "sellerId";
    /// The price in decimal notation, as exact as sent.
    pub const PRICE: &str = "price";
    /// The ISO 4217 currency code.
    pub const CURRENCY: &str = "currency";
    /// `true` when the offer became the best of its product and currency, else `false`.
    pub const BEST_OFFER: &str = "bestOffer";
    /// The price of the best offer that this one replaced, when it replaced one.
    pub const PREVIOUS_BEST_PRICE: &str = "previousBestPrice";
    /// The previous best price minus this one, computed in exact decimal arithmetic.
    pub const PRICE_DROP: &str = "priceDrop";
    /// Id of the message on the offers topic that carried the offer.
    pub const SOURCE_MESSAGE_ID: &str = "sourceMessageId";
}

/// Settings of an [`OffersHandler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffersConfig {
    /// The bucket of the product state objects. No other offers handler may use it.
    pub state_bucket: String,
    /// The topic that accepted offers are published to.
    pub accepted_topic: String,
}

/// The offers background function, for `google.pubsub.topic.publish` events.
#[derive(Debug)]
pub struct OffersHandler {
    broker: Arc<Broker>,
    storage: Storage,
    config: OffersConfig,
    /// One lock per stripe of product ids. Holding the product's lock from reading its state
    /// to writing it keeps two offers of one product, or two copies of one offer, from both
    /// working on the same old state.
    locks: Vec<tokio::sync::Mutex<()>>,
}

/// The part of a Pub/Sub event's data that carries the message.
#[derive(Debug, Deserialize)]
struct PubsubData {
    #[serde(default)]
    data: String,
}

impl OffersHandler {
    /// Creates the handler, which publishes through `broker` and keeps its state in the
    /// buckets of `storage`.
    pub fn new(broker: Arc<Broker>, storage: Storage, config: OffersConfig) -> Self {
        Self {
            broker,
            storage,
            config,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Returns the handler's settings.
    pub fn config(&self) -> &OffersConfig {
        &self.config
    }

    async fn process(&self, data: &[u8], message_id: &str) -> Result<(), HandlerError> {
        let offer = Offer::parse(data).map_err(|err| HandlerError::Permanent(err.to_string()))?;
        let _guard = self.lock(&offer.product_id.text).lock().await;
        let name = state_object_name(&offer.product_id.text);
        let mut state = match self.read_state(&name).await? {
            Some(state) => state,
            None => ProductState::new(&offer.product_id.json).map_err(|err| {
                HandlerError::Permanent(format!(
                    "product id {} is not JSON: {err}",
                    offer.product_id
                ))
            })?,
        };
        let (best, previous_best_price) = match state.decide(&offer, message_id) {
            Decision::Duplicate => {
                info!(offer_id = %offer.offer_id, message_id, "offer already accepted; the copy is ignored");
                return Ok(());
            }
            Decision::Conflict { earlier } => {
                return Err(HandlerError::Permanent(format!(
                    "offer id {} was already accepted with seller {:?}, price {} {} (message \
                     {}); give a changed offer a new offerId",
                    offer.offer_id,
                    earlier.seller_id,
                    earlier.price,
                    earlier.currency,
                    earlier.message_id
                )));
            }
            Decision::Accepted {
                best,
                previous_best_price,
            } => (best, previous_best_price),
        };

        self.publish(data, &offer, message_id, best, previous_best_price)
            .await?;
        state.accept(&offer, message_id, best).map_err(|err| {
            HandlerError::Permanent(format!(
                "an id of offer {} is not JSON: {err}",
                offer.offer_id
            ))
        })?;
        self.write_state(&name, &state).await?;
        debug!(offer_id = %offer.offer_id, product_id = %offer.product_id, best, "offer accepted");
        Ok(())
    }

    fn lock(&self, product_id: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        product_id.hash(&mut hasher);
        // The remainder is below LOCK_STRIPES, so it fits in usize.
        &self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize]
    }

    /// Reads a product's state, or `None` when the product has none yet.
    async fn read_state(&self, name: &str) -> Result<Option<ProductState>, HandlerError> {
        let bucket = &self.config.state_bucket;
        let bytes = match self.storage.read(bucket, name, None).await {
            Ok((_, bytes)) => bytes,
            Err(StorageError::Bucket(BucketError::NotFound { .. })) => return Ok(None),
            Err(err) => {
                return Err(storage_failure(
                    format!("reading the state gs://{bucket}/{name}"),
                    err,
                ))
            }
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            HandlerError::Permanent(format!(
                "the state object gs://{bucket}/{name} is not a valid product state: {err}; \
                 repair or delete it, then publish the offer again"
            ))
        })
    }

    async fn write_state(&self, name: &str, state: &ProductState) -> Result<(), HandlerError> {
        let bucket = &self.config.state_bucket;
        let bytes = serde_json::to_vec_pretty(state).map_err(|err| {
            HandlerError::Permanent(format!("the state of {name} is not JSON: {err}"))
        })?;
        let written = self
            .storage
            .put(
                bucket,
                name,
                bytes,
                Some("application/json".to_owned()),
                BTreeMap::new(),
            )
            .await;
        match written {
            // A lost notification of the state bucket does not undo the write.
            Ok(_) | Err(StorageError::Notify { .. }) => Ok(()),
            Err(err) => Err(storage_failure(
                format!("writing the state gs://{bucket}/{name}"),
                err,
            )),
        }
    }

    async fn publish(
        &self,
        data: &[u8],
        offer: &Offer,
        message_id: &str,
        best: bool,
        previous_best_price: Option<Decimal>,
    ) -> Result<(), HandlerError> {
        let mut attributes = BTreeMap::from([
            (attributes::OFFER_ID, offer.offer_id.text.clone()),
            (attributes::PRODUCT_ID, offer.product_id.text.clone()),
            (attributes::SELLER_ID, offer.seller_id.text.clone()),
            (attributes::PRICE, offer.price.to_string()),
            (attributes::CURRENCY, offer.currency.code().to_owned()),
            (attributes::BEST_OFFER, best.to_string()),
            (attributes::SOURCE_MESSAGE_ID, message_id.to_owned()),
        ]);
        if let Some(previous) = previous_best_price {
            attributes.insert(attributes::PREVIOUS_BEST_PRICE, previous.to_string());
            attributes.insert(attributes::PRICE_DROP, (previous - offer.price).to_string());
        }
        let message = TopicMessage {
            topic: self.config.accepted_topic.clone(),
            message: NewMessage {
                data: data.to_vec(),
                attributes: attributes
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect(),
                ordering_key: String::new(),
            },
        };
        self.broker.publish(vec![message]).await.map_err(|err| {
            HandlerError::Retryable(format!(
                "publishing offer {} to {} failed: {err}",
                offer.offer_id, self.config.accepted_topic
            ))
        })?;
        Ok(())
    }
}

#[async_trait]
impl Handler for OffersHandler {
    fn name(&self) -> &str {
        "offers"
    }

    async fn handle(&self, data: &[u8], context: &EventContext) -> Result<(), HandlerError> {
        if context.event_type != TOPIC_PUBLISH {
            return Err(HandlerError::Permanent(format!(
                "the offers handler takes messages published to its topic, not {} events",
                context.event_type
            )));
        }
        let message = message_data(data).map_err(|reason| {
            HandlerError::Permanent(format!("event {}: {reason}", context.event_id))
        })?;
        self.process(&message, &context.event_id).await
    }
}

/// Decodes the message data out of the data of a Pub/Sub event.
fn message_data(event_data: &[u8]) -> Result<Vec<u8>, String> {
    let wrapper: PubsubData = serde_json::from_slice(event_data)
        .map_err(|err| format!("the event data is not a Pub/Sub message: {err}"))?;
    BASE64
        .decode(wrapper.data)
        .map_err(|err| format!("the message data is not valid base64: {err}"))
}

/// Returns the name of a product's state object.
pub fn state_object_name(product_id: &str) -> String {
    format!(
        "{STATE_PREFIX}{}{STATE_SUFFIX}",
        utf8_percent_encode(product_id, NAME_SAFE)
    )
}

/// Classifies a storage failure. Invalid names, missing buckets and damaged stored data are
/// permanent. Everything else, such as an I/O error or a runtime that is shutting down, is
/// retryable.
fn storage_failure(action: String, err: StorageError) -> HandlerError {
    let message = format!("{action} failed: {err}");
    match err {
        StorageError::Bucket(
            BucketError::InvalidName { .. }
            | BucketError::InvalidBucketName { .. }
            | BucketError::BucketNotFound { .. }
            | BucketError::Corrupt { .. },
        ) => HandlerError::Permanent(message),
        _ => HandlerError::Retryable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_encode_unsafe_characters() {
        assert_eq!(state_object_name("sku-1.a_b~"), "products/sku-1.a_b~.json");
        assert_eq!(state_object_name("a/b c"), "products/a%2Fb%20c.json");
        assert_eq!(state_object_name("ü"), "products/%C3%BC.json");
    }

    #[test]
    fn message_data_is_decoded_from_the_event() {
        let event = br#"{"@type":"type.googleapis.com/google.pubsub.v1.PubsubMessage","data":"eyJhIjoxfQ=="}"#;

        assert_eq!(message_data(event).expect("valid"), br#"{"a":1}"#);
        assert!(message_data(b"not json").is_err());
        assert!(message_data(br#"{"data":"%%%"}"#).is_err());
    }
}
