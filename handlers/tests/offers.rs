//! The offers handler behind the runner, over a real broker and a real state bucket: exact
//! decimal prices, ids above 2^53, the best offer per product, dead letters without retries,
//! and duplicates.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice_handlers::offers::{state_object_name, OffersConfig, OffersHandler};
use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_router::buckets::Buckets;
use sluice_router::deliver::{Broker, Delivery, DEAD_LETTER_REASON_ATTRIBUTE};
use sluice_router::storage::Storage;
use sluice_router::store::{
    DeadLetterPolicy, NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage,
};
use tokio::sync::oneshot;

/// Maximum wait for the runner to settle. It is far above what any test needs, so that only a
/// stuck handler fails a test.
const TIMEOUT: Duration = Duration::from_secs(60);

const OFFERS_TOPIC: &str = "offers";
const ACCEPTED_TOPIC: &str = "offers-accepted";
const DEAD_LETTER_TOPIC: &str = "offers-dead-letter";
const SUBSCRIPTION: &str = "offers-processor";
const ACCEPTED_SUBSCRIPTION: &str = "accepted-tap";
const DEAD_LETTER_SUBSCRIPTION: &str = "dead-letter-tap";
const STATE_BUCKET: &str = "offers-state";

/// The topics, subscriptions and bucket of one test, with the handler running.
struct Setup {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    storage: Storage,
    runner: RunnerHandle,
    _stop: oneshot::Sender<()>,
}

impl Setup {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(&dir.path().join("store")).expect("store opens"));
        let broker = Arc::new(Broker::open(store).expect("broker opens"));
        for topic in [OFFERS_TOPIC, ACCEPTED_TOPIC, DEAD_LETTER_TOPIC] {
            broker.create_topic(topic).await.expect("topic");
        }
        let policy = DeadLetterPolicy {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            max_delivery_attempts: 5,
        };
        let subscriptions = [
            (SUBSCRIPTION, OFFERS_TOPIC, Some(policy)),
            (ACCEPTED_SUBSCRIPTION, ACCEPTED_TOPIC, None),
            (DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC, None),
        ];
        for (name, topic, dead_letter) in subscriptions {
            let spec = SubscriptionSpec {
                dead_letter,
                ..SubscriptionSpec::new(name, topic)
            };
            broker
                .create_subscription(spec)
                .await
                .expect("subscription");
        }
        tokio::spawn(broker.clone().run_maintenance(std::future::pending()));
        let buckets = Buckets::open(dir.path().join("buckets")).expect("buckets open");
        buckets
            .create_bucket(STATE_BUCKET, false)
            .expect("state bucket");
        let storage = Storage::new(Arc::new(buckets), broker.clone());

        let handler = OffersHandler::new(
            broker.clone(),
            storage.clone(),
            OffersConfig {
                state_bucket: STATE_BUCKET.to_owned(),
                accepted_topic: ACCEPTED_TOPIC.to_owned(),
            },
        );
        let options = RunnerOptions {
            concurrency: 4,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            ..RunnerOptions::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = runner::spawn(
            broker.clone(),
            SUBSCRIPTION.to_owned(),
            Arc::new(handler),
            options,
            stopped,
        );
        Self {
            _dir: dir,
            broker,
            storage,
            runner,
            _stop: stop,
        }
    }

    /// Publishes offers to the offers topic in one batch, in order.
    async fn publish(&self, offers: &[&str]) {
        let messages = offers
            .iter()
            .map(|offer| TopicMessage {
                topic: OFFERS_TOPIC.to_owned(),
                message: NewMessage {
                    data: offer.as_bytes().to_vec(),
                    attributes: BTreeMap::new(),
                    ordering_key: String::new(),
                },
            })
            .collect();
        self.broker.publish(messages).await.expect("publish");
    }

    /// Publishes offers one at a time, each after the previous one was handled.
    async fn publish_in_turn(&self, offers: &[&str]) {
        for offer in offers {
            self.publish(&[offer]).await;
            self.settle().await;
        }
    }

    /// Waits until the handler's subscription has no message left, handled or leased.
    async fn settle(&self) {
        let give_up = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let backlog = self
                .broker
                .stats()
                .into_iter()
                .find(|stats| stats.spec.name == SUBSCRIPTION)
                .expect("subscription stats")
                .backlog;
            if backlog == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "timed out with {backlog} offers left"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn accepted(&self) -> Vec<Delivery> {
        self.broker
            .pull(ACCEPTED_SUBSCRIPTION, 100, Duration::ZERO)
            .await
            .expect("pull accepted")
    }

    async fn dead_letters(&self) -> Vec<Delivery> {
        self.broker
            .pull(DEAD_LETTER_SUBSCRIPTION, 100, Duration::ZERO)
            .await
            .expect("pull dead letters")
    }

    /// Returns the text of a product's state object.
    async fn state_text(&self, product_id: &str) -> String {
        let (_, bytes) = self
            .storage
            .read(STATE_BUCKET, &state_object_name(product_id), None)
            .await
            .expect("state object");
        String::from_utf8(bytes).expect("UTF-8 state")
    }

    async fn state(&self, product_id: &str) -> Value {
        serde_json::from_str(&self.state_text(product_id).await).expect("JSON state")
    }
}

fn attribute<'a>(delivery: &'a Delivery, key: &str) -> &'a str {
    delivery
        .message
        .message
        .attributes
        .get(key)
        .map_or("", String::as_str)
}

/// Returns the accepted messages in publish order.
fn by_publish_order(mut deliveries: Vec<Delivery>) -> Vec<Delivery> {
    deliveries.sort_by_key(|delivery| delivery.message.seq);
    deliveries
}

async fn wait_for_count(counter: &std::sync::atomic::AtomicU64, expected: u64) {
    let give_up = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let count = counter.load(Ordering::Relaxed);
        if count == expected || tokio::time::Instant::now() >= give_up {
            assert_eq!(count, expected);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_drop_is_exact_decimal() {
    let setup = Setup::start().await;

    setup
        .publish_in_turn(&[
            r#"{"offerId":"a","productId":"kettle","sellerId":"s1","price":"10.00","currency":"EUR"}"#,
            r#"{"offerId":"b","productId":"kettle","sellerId":"s2","price":"9.70","currency":"EUR"}"#,
            r#"{"offerId":"c","productId":"kettle","sellerId":"s3","price":"9.80","currency":"EUR"}"#,
        ])
        .await;

    let accepted = by_publish_order(setup.accepted().await);
    assert_eq!(accepted.len(), 3);
    assert_eq!(attribute(&accepted[0], "bestOffer"), "true");
    assert_eq!(attribute(&accepted[0], "priceDrop"), "");
    assert_eq!(attribute(&accepted[1], "bestOffer"), "true");
    assert_eq!(attribute(&accepted[1], "previousBestPrice"), "10.00");
    // 10.00 - 9.70 in binary floating point is 0.3000000000000007.
    assert_eq!(attribute(&accepted[1], "priceDrop"), "0.30");
    assert_eq!(attribute(&accepted[2], "bestOffer"), "false");
    assert_eq!(attribute(&accepted[2], "price"), "9.80");
    let state = setup.state("kettle").await;
    assert_eq!(state["bestOffers"]["EUR"]["offerId"], "b");
    assert_eq!(state["bestOffers"]["EUR"]["price"], "9.70");
    assert_eq!(
        state["acceptedOffers"].as_object().map(|o| o.len()),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_prices_compare_exactly() {
    let setup = Setup::start().await;

    // Both prices are the same double, 9007199254740992.
    setup
        .publish_in_turn(&[
            r#"{"offerId":1,"productId":"yacht","sellerId":"s","price":9007199254740993.02,"currency":"USD"}"#,
            r#"{"offerId":2,"productId":"yacht","sellerId":"s","price":9007199254740993.01,"currency":"USD"}"#,
        ])
        .await;

    let accepted = by_publish_order(setup.accepted().await);
    assert_eq!(accepted.len(), 2);
    assert_eq!(attribute(&accepted[1], "bestOffer"), "true");
    assert_eq!(attribute(&accepted[1], "priceDrop"), "0.01");
    let state = setup.state("yacht").await;
    assert_eq!(state["bestOffers"]["USD"]["price"], "9007199254740993.01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_offer_id_kept_exactly() {
    let setup = Setup::start().await;
    let offer = r#"{"offerId": 9007199254740993, "productId": 18446744073709551617, "sellerId": "s", "price": "5", "currency": "GBP", "note": "extra fields pass through"}"#;

    setup.publish(&[offer]).await;
    setup.settle().await;

    let accepted = setup.accepted().await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].message.message.data, offer.as_bytes());
    assert_eq!(attribute(&accepted[0], "offerId"), "9007199254740993");
    assert_eq!(attribute(&accepted[0], "productId"), "18446744073709551617");
    let state = setup.state_text("18446744073709551617").await;
    assert!(
        state.contains(r#""offerId": 9007199254740993"#),
        "the state keeps the id as a number:\n{state}"
    );
    assert!(
        state.contains(r#""productId": 18446744073709551617"#),
        "the state keeps the product id as a number:\n{state}"
    );
    assert!(setup.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_currency_is_dead_lettered_without_retries() {
    let setup = Setup::start().await;
    let offer =
        r#"{"offerId":"x","productId":"lamp","sellerId":"s","price":"12.50","currency":"EUX"}"#;

    setup.publish(&[offer]).await;
    setup.settle().await;

    let dead_letters = setup.dead_letters().await;
    assert_eq!(dead_letters.len(), 1);
    let dead_letter = &dead_letters[0];
    assert_eq!(dead_letter.message.message.data, offer.as_bytes());
    assert_eq!(
        attribute(dead_letter, DEAD_LETTER_REASON_ATTRIBUTE),
        "invalid offer: currency \"EUX\" is not an ISO 4217 currency code"
    );
    assert_eq!(
        attribute(dead_letter, "CloudPubSubDeadLetterSourceDeliveryCount"),
        "1"
    );
    wait_for_count(&setup.runner.stats().rejected, 1).await;
    assert_eq!(setup.runner.stats().retried.load(Ordering::Relaxed), 0);
    assert!(setup.accepted().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_in_the_reason() {
    let setup = Setup::start().await;

    setup
        .publish(&[r#"{"offerId":-1,"productId":"lamp","price":"1.001","currency":"eur"}"#])
        .await;
    setup.settle().await;

    let dead_letters = setup.dead_letters().await;
    assert_eq!(dead_letters.len(), 1);
    let reason = attribute(&dead_letters[0], DEAD_LETTER_REASON_ATTRIBUTE);
    for problem in [
        "offerId must be a string or a non-negative integer, but it is the negative number -1",
        "sellerId is missing",
        "currency \"eur\" is not an ISO 4217 code",
    ] {
        assert!(
            reason.contains(problem),
            "{problem:?} missing in {reason:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_ignored() {
    let setup = Setup::start().await;
    let offer =
        r#"{"offerId":42,"productId":"chair","sellerId":"s","price":"30","currency":"CHF"}"#;
    let same_offer_respelled =
        r#"{"currency":"CHF","price":30.00,"sellerId":"s","productId":"chair","offerId":42}"#;

    setup.publish(&[offer, offer]).await;
    setup.settle().await;
    setup.publish(&[same_offer_respelled]).await;
    setup.settle().await;

    assert_eq!(setup.accepted().await.len(), 1);
    assert!(setup.dead_letters().await.is_empty());
    wait_for_count(&setup.runner.stats().succeeded, 3).await;
    let state = setup.state("chair").await;
    assert_eq!(
        state["acceptedOffers"].as_object().map(|o| o.len()),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_offer_id_dead_lettered() {
    let setup = Setup::start().await;

    setup
        .publish_in_turn(&[
            r#"{"offerId":"o","productId":"desk","sellerId":"s","price":"100","currency":"SEK"}"#,
            r#"{"offerId":"o","productId":"desk","sellerId":"s","price":"90","currency":"SEK"}"#,
        ])
        .await;

    assert_eq!(setup.accepted().await.len(), 1);
    let dead_letters = setup.dead_letters().await;
    assert_eq!(dead_letters.len(), 1);
    let reason = attribute(&dead_letters[0], DEAD_LETTER_REASON_ATTRIBUTE);
    assert!(
        reason.starts_with("offer id \"o\" was already accepted with seller \"s\", price 100 SEK"),
        "{reason}"
    );
    let state = setup.state("desk").await;
    assert_eq!(state["bestOffers"]["SEK"]["price"], "100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currencies_have_separate_best_offers() {
    let setup = Setup::start().await;

    setup
        .publish_in_turn(&[
            r#"{"offerId":1,"productId":"bike","sellerId":"s","price":"500","currency":"EUR"}"#,
            r#"{"offerId":2,"productId":"bike","sellerId":"s","price":"60000","currency":"JPY"}"#,
            r#"{"offerId":3,"productId":"bike","sellerId":"t","price":"500.00","currency":"EUR"}"#,
        ])
        .await;

    let accepted = by_publish_order(setup.accepted().await);
    assert_eq!(attribute(&accepted[1], "bestOffer"), "true");
    // A tie keeps the offer published first.
    assert_eq!(attribute(&accepted[2], "bestOffer"), "false");
    let state = setup.state("bike").await;
    assert_eq!(state["bestOffers"]["EUR"]["offerId"], 1);
    assert_eq!(state["bestOffers"]["JPY"]["offerId"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_offer_data_dead_lettered() {
    let setup = Setup::start().await;

    setup.publish(&["not json", "[1, 2]"]).await;
    setup.settle().await;

    let dead_letters = setup.dead_letters().await;
    assert_eq!(dead_letters.len(), 2);
    for dead_letter in &dead_letters {
        let reason = attribute(dead_letter, DEAD_LETTER_REASON_ATTRIBUTE);
        assert!(
            reason.starts_with("invalid offer: the message data is not a JSON object"),
            "{reason}"
        );
    }
    assert_eq!(setup.runner.stats().retried.load(Ordering::Relaxed), 0);
}
