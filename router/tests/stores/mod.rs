//! A broker over either store, so that one test source checks the delivery behaviour of
//! both: the embedded sled store, and JetStream on a nats-server that the fixture starts.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use sluice_router::deliver::{Broker, Delivery};
use sluice_router::store::jetstream::{JetStreamOptions, JetStreamStore};
use sluice_router::store::{NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage};

use crate::nats::NatsServer;

/// The store under a test broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sled,
    JetStream,
}

/// Both kinds, for tests that loop over them.
pub const KINDS: [StoreKind; 2] = [StoreKind::Sled, StoreKind::JetStream];

/// A broker with its maintenance task running, over a store of one kind.
pub struct Fixture {
    pub kind: StoreKind,
    pub broker: Arc<Broker>,
    maintenance: Maintenance,
    dir: Option<tempfile::TempDir>,
    pub server: Option<NatsServer>,
}

impl Fixture {
    /// Opens a broker over a new, empty store of `kind`, with the given topics.
    pub async fn open(kind: StoreKind, topics: &[&str]) -> Fixture {
        let (broker, dir, server) = match kind {
            StoreKind::Sled => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store: Arc<dyn Store> =
                    Arc::new(SledStore::open(dir.path()).expect("sled store opens"));
                let broker = Broker::open(store).expect("broker opens");
                (broker, Some(dir), None)
            }
            StoreKind::JetStream => {
                let server = NatsServer::start().await;
                let broker = Broker::open_shared(Arc::new(connect(&server.url()).await));
                (broker, None, Some(server))
            }
        };
        let broker = Arc::new(broker);
        for topic in topics {
            broker.create_topic(topic).await.expect("topic");
        }
        let maintenance = Maintenance(tokio::spawn(
            broker.clone().run_maintenance(std::future::pending()),
        ));
        Fixture {
            kind,
            broker,
            maintenance,
            dir,
            server,
        }
    }

    /// Opens a second broker on the same JetStream server, as another node.
    pub async fn another_node(&self) -> Arc<Broker> {
        let server = self
            .server
            .as_ref()
            .expect("only JetStream has other nodes");
        Arc::new(Broker::open_shared(Arc::new(connect(&server.url()).await)))
    }

    /// Drops the broker without flushing and opens a new one on the same data, as after a
    /// crash of the process.
    pub async fn crash_and_reopen(self) -> Fixture {
        let Fixture {
            kind,
            broker,
            maintenance,
            dir,
            server,
        } = self;
        drop(maintenance);
        drop(broker);
        let broker = match (&dir, &server) {
            (Some(dir), _) => {
                // The committer thread of the first store may hold the lock briefly.
                let store = loop {
                    match SledStore::open(dir.path()) {
                        Ok(store) => break store,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                Broker::open(Arc::new(store)).expect("broker reopens")
            }
            (None, Some(server)) => Broker::open_shared(Arc::new(connect(&server.url()).await)),
            (None, None) => unreachable!("a fixture has a directory or a server"),
        };
        let broker = Arc::new(broker);
        let maintenance = Maintenance(tokio::spawn(
            broker.clone().run_maintenance(std::future::pending()),
        ));
        Fixture {
            kind,
            broker,
            maintenance,
            dir,
            server,
        }
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

    pub async fn publish_with(&self, topic: &str, data: &str, attributes: &[(&str, &str)]) {
        let message = TopicMessage {
            topic: topic.to_owned(),
            message: message(data, "", attributes),
        };
        self.broker.publish(vec![message]).await.expect("publish");
    }

    /// Pulls up to `max` messages, waiting up to `wait` for the first.
    pub async fn pull_wait(&self, subscription: &str, max: usize, wait: Duration) -> Vec<Delivery> {
        self.broker
            .pull(subscription, max, wait)
            .await
            .expect("pull")
    }

    pub async fn ack(&self, subscription: &str, deliveries: &[Delivery]) {
        let ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
        self.broker.ack(subscription, &ids).await.expect("ack");
    }

    pub async fn nack(&self, subscription: &str, deliveries: &[Delivery]) {
        let ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
        self.broker
            .modify_ack_deadline(subscription, &ids, 0)
            .await
            .expect("nack");
    }
}

/// The broker's maintenance task, aborted when dropped.
struct Maintenance(tokio::task::JoinHandle<()>);

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects a JetStream store to the server at `url`.
pub async fn connect(url: &str) -> JetStreamStore {
    JetStreamStore::connect(&JetStreamOptions::new(vec![url.to_owned()]))
        .await
        .expect("JetStream store connects")
}

pub fn message(data: &str, ordering_key: &str, attributes: &[(&str, &str)]) -> NewMessage {
    NewMessage {
        data: data.as_bytes().to_vec(),
        attributes: attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ordering_key: ordering_key.to_owned(),
    }
}

pub fn data_of(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| String::from_utf8_lossy(&delivery.message.message.data).into_owned())
        .collect()
}
