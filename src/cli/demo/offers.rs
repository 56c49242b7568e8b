//! The offers part of `sluice demo`: publishes bundled seller offers to the topic `offers`,
//! then reads what the `offers-processor` subscription accepted, dead-lettered and kept as the
//! best offer per product.

use anyhow::Context as _;
use serde_json::Value;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest,
};
use tonic::transport::Channel;

use super::dead_letters::{pull_dead_letters, DeadLetter};
use crate::cli::write_stdout;
use crate::client::{subscription_resource, topic_resource};

/// The topic, subscriptions and bucket of the offers pipeline, as the built-in configuration
/// names them.
const OFFERS_TOPIC: &str = "offers";
const ACCEPTED_SUBSCRIPTION: &str = "offers-accepted";
const OFFERS_DEAD_LETTER: &str = "offers-dead-letter";
const STATE_BUCKET: &str = "offers-state";

/// The bundled offers, published in this order. The first id is above 2^53, where a double
/// would round it to 9007199254740992. The fifth offer is a copy of the first, and the last
/// two are invalid.
pub(super) const OFFERS: [&str; 7] = [
    r#"{"offerId": 9007199254740993, "productId": "kettle", "sellerId": "north-shop", "price": "24.90", "currency": "EUR"}"#,
    r#"{"offerId": "k-2", "productId": "kettle", "sellerId": "south-shop", "price": "22.40", "currency": "EUR"}"#,
    r#"{"offerId": "k-3", "productId": "kettle", "sellerId": "east-shop", "price": "23.00", "currency": "EUR"}"#,
    r#"{"offerId": "l-1", "productId": "lamp", "sellerId": "north-shop", "price": "3150", "currency": "JPY"}"#,
    r#"{"offerId": 9007199254740993, "productId": "kettle", "sellerId": "north-shop", "price": "24.90", "currency": "EUR"}"#,
    r#"{"offerId": "l-2", "productId": "lamp", "sellerId": "west-shop", "price": "12.50", "currency": "EUX"}"#,
    r#"{"offerId": "l-3", "productId": "lamp", "sellerId": "west-shop", "currency": "EUR"}"#,
];

/// The accepted, dead-lettered and best offers.
#[derive(Debug, Default)]
pub(super) struct OfferSummary {
    published: usize,
    /// Offer id, product, price and currency of each accepted offer, sorted by offer id.
    accepted: Vec<[String; 4]>,
    dead_letters: Vec<DeadLetter>,
    /// Product, currency, price, offer id and seller of each best offer.
    best: Vec<[String; 5]>,
}

/// Publishes the bundled offers in one request.
pub(super) async fn publish(channel: Channel) -> anyhow::Result<usize> {
    let messages = OFFERS
        .iter()
        .map(|offer| PubsubMessage {
            data: offer.as_bytes().to_vec(),
            ..PubsubMessage::default()
        })
        .collect();
    PublisherClient::new(channel)
        .publish(PublishRequest {
            topic: topic_resource(OFFERS_TOPIC),
            messages,
        })
        .await
        .context("publishing the offers failed")?;
    Ok(OFFERS.len())
}

impl OfferSummary {
    /// Pulls the accepted offers and the dead letters, and reads the state objects.
    pub(super) async fn collect(
        http: &reqwest::Client,
        url: &str,
        channel: Channel,
        published: usize,
    ) -> anyhow::Result<Self> {
        let mut accepted: Vec<[String; 4]> = pull_all(channel.clone(), ACCEPTED_SUBSCRIPTION)
            .await?
            .iter()
            .map(|message| {
                ["offerId", "productId", "price", "currency"]
                    .map(|key| message.attributes.get(key).cloned().unwrap_or_default())
            })
            .collect();
        accepted.sort();
        let dead_letters = pull_dead_letters(channel, OFFERS_DEAD_LETTER).await?;
        let best = best_offers(http, url).await?;
        Ok(Self {
            published,
            accepted,
            dead_letters,
            best,
        })
    }

    pub(super) fn print(&self) {
        let ignored = self
            .published
            .saturating_sub(self.accepted.len() + self.dead_letters.len());
        write_stdout(format_args!(
            "\nOffers: {} published to {OFFERS_TOPIC}, {} accepted, {ignored} duplicate \
             ignored, {} dead-lettered",
            self.published,
            self.accepted.len(),
            self.dead_letters.len()
        ));
        write_stdout(format_args!("Accepted to {ACCEPTED_SUBSCRIPTION}:"));
        for [offer_id, product_id, price, currency] in &self.accepted {
            write_stdout(format_args!(
                "  offer {offer_id:<17} {product_id:<7} {price:>6} {currency}"
            ));
        }
        write_stdout(format_args!("Best offers in bucket {STATE_BUCKET}:"));
        for [product_id, currency, price, offer_id, seller_id] in &self.best {
            write_stdout(format_args!(
                "  {product_id:<7} {currency} {price:>6}  offer {offer_id} from {seller_id}"
            ));
        }
        write_stdout(format_args!(
            "Dead-lettered to {OFFERS_DEAD_LETTER}: {}",
            self.dead_letters.len()
        ));
        for dead_letter in &self.dead_letters {
            write_stdout(format_args!("  {}", dead_letter.reason));
        }
    }
}

/// Pulls and acknowledges every message of a subscription that is ready now.
async fn pull_all(channel: Channel, subscription: &str) -> anyhow::Result<Vec<PubsubMessage>> {
    let mut client = SubscriberClient::new(channel);
    let subscription = subscription_resource(subscription);
    let received = client
        .pull(PullRequest {
            subscription: subscription.clone(),
            max_messages: 100,
            ..PullRequest::default()
        })
        .await
        .with_context(|| format!("pulling {subscription} failed"))?
        .into_inner()
        .received_messages;
    let ack_ids: Vec<String> = received.iter().map(|r| r.ack_id.clone()).collect();
    if !ack_ids.is_empty() {
        client
            .acknowledge(AcknowledgeRequest {
                subscription: subscription.clone(),
                ack_ids,
            })
            .await
            .with_context(|| format!("acknowledging {subscription} failed"))?;
    }
    Ok(received.into_iter().filter_map(|r| r.message).collect())
}

/// Reads every product state object and returns its best offers, sorted by product and
/// currency.
async fn best_offers(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<[String; 5]>> {
    let listing: Value = http
        .get(format!("{url}/storage/v1/b/{STATE_BUCKET}/o"))
        .send()
        .await
        .context("listing the offer states failed")?
        .json()
        .await
        .context("the offer state listing is not JSON")?;
    let mut best = Vec::new();
    for object in listing["items"].as_array().into_iter().flatten() {
        let name = object["name"].as_str().unwrap_or_default();
        let state: Value = http
            .get(format!(
                "{url}/storage/v1/b/{STATE_BUCKET}/o/{}?alt=media",
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading the offer state {name:?} failed"))?
            .json()
            .await
            .with_context(|| format!("the offer state {name:?} is not JSON"))?;
        let product = json_text(&state["productId"]);
        for (currency, offer) in state["bestOffers"].as_object().into_iter().flatten() {
            best.push([
                product.clone(),
                currency.clone(),
                json_text(&offer["price"]),
                json_text(&offer["offerId"]),
                json_text(&offer["sellerId"]),
            ]);
        }
    }
    best.sort();
    Ok(best)
}

/// Returns a string's content, or any other JSON value as its JSON text.
fn json_text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}
