//! A broker on a temporary sled store, with short helpers for the delivery tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_router::deliver::{Broker, Delivery, SubscriptionStats};
use sluice_router::store::{NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage};

/// A pull that returns at once when nothing is ready.
pub const NO_WAIT: Duration = Duration::ZERO;

/// A broker over a store in its own temporary directory.
pub struct TestBroker {
    pub broker: Arc<Broker>,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    /// Opens a broker with the given topics.
    pub async fn with_topics(topics: &[&str]) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store opens"));
        let broker = Arc::new(Broker::open(store).expect("broker opens"));
        for topic in topics {
            broker.create_topic(topic).await.expect("topic");
        }
        TestBroker { broker, dir }
    }

    /// Closes this broker and opens a new one on the same directory, as after a restart.
    pub async fn reopen(self) -> TestBroker {
        let TestBroker { broker, dir } = self;
        broker.store().flush().await.expect("flush");
        drop(broker);
        // The committer thread of the first store may still hold the database lock briefly.
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let broker = Arc::new(Broker::open(Arc::new(store)).expect("broker reopens"));
        TestBroker { broker, dir }
    }

    pub async fn subscribe(&self, spec: SubscriptionSpec) {
        self.broker
            .create_subscription(spec)
            .await
            .expect("subscription");
    }

    /// Publishes one message per `(data, ordering key)` pair, in order, in one call.
    pub async fn publish(&self, topic: &str, messages: &[(&str, &str)]) {
        let messages = messages
            .iter()
            .map(|(data, key)| TopicMessage {
                topic: topic.to_owned(),
                message: message(data, key, &[]),
            })
            .collect();
        self.broker.publish(messages).await.expect("publish");
    }

    /// Publishes one message with attributes.
    pub async fn publish_with(&self, topic: &str, data: &str, attributes: &[(&str, &str)]) {
        let message = TopicMessage {
            topic: topic.to_owned(),
            message: message(data, "", attributes),
        };
        self.broker.publish(vec![message]).await.expect("publish");
    }

    pub async fn pull(&self, subscription: &str, max: usize) -> Vec<Delivery> {
        self.broker
            .pull(subscription, max, NO_WAIT)
            .await
            .expect("pull")
    }

    /// Pulls what is ready and returns the data of each delivery, in delivery order.
    pub async fn pull_data(&self, subscription: &str) -> Vec<String> {
        data_of(&self.pull(subscription, 100).await)
    }

    pub async fn ack(&self, subscription: &str, delivery: &Delivery) {
        self.broker
            .ack(subscription, std::slice::from_ref(&delivery.ack_id))
            .await
            .expect("ack");
    }

    pub async fn nack(&self, subscription: &str, delivery: &Delivery) {
        self.broker
            .modify_ack_deadline(subscription, std::slice::from_ref(&delivery.ack_id), 0)
            .await
            .expect("nack");
    }

    pub fn stats(&self, subscription: &str) -> SubscriptionStats {
        self.broker
            .stats()
            .into_iter()
            .find(|stats| stats.spec.name == subscription)
            .expect("subscription stats")
    }
}

pub fn message(data: &str, ordering_key: &str, attributes: &[(&str, &str)]) -> NewMessage {
    let attributes: BTreeMap<String, String> = attributes
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    NewMessage {
        data: data.as_bytes().to_vec(),
        attributes,
        ordering_key: ordering_key.to_owned(),
    }
}

pub fn data_of(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| String::from_utf8_lossy(&delivery.message.message.data).into_owned())
        .collect()
}
