//! Pulls bounded in bytes, for streaming consumers with flow control, and the return of
//! leased messages that never reached their consumer, without counting a delivery attempt.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::{parse_ack_ids, Broker, BrokerError, Delivery};
use crate::metrics::{self, DeliveryMode};
use crate::store::NewMessage;

/// Returns the bytes a delivery counts against a byte limit: data, attributes and ordering
/// key, as Pub/Sub clients measure `max_outstanding_bytes`.
pub fn delivery_bytes(delivery: &Delivery) -> usize {
    message_bytes(&delivery.message.message)
}

/// Returns the bytes of a message as [`delivery_bytes`] counts them.
pub(crate) fn message_bytes(message: &NewMessage) -> usize {
    let attributes: usize = message
        .attributes
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    message.data.len() + attributes + message.ordering_key.len()
}

impl Broker {
    /// Leases up to `max` messages whose sizes (see [`delivery_bytes`]) add up to at most
    /// `max_bytes`, waiting up to `wait` for the first one. The first message is delivered
    /// even when it alone is larger, so that a large message cannot block the
    /// subscription.
    ///
    /// # Errors
    ///
    /// Fails as [`Broker::pull`] does.
    pub async fn pull_within(
        &self,
        name: &str,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let deliveries = self.pull_bounded(name, max, max_bytes, wait).await?;
        for delivery in &deliveries {
            metrics::record_delivery(name, DeliveryMode::Pull, delivery.message.publish_time);
        }
        Ok(deliveries)
    }

    /// Returns leased messages that never reached the consumer, as if they had not been
    /// leased: they are ready again at once, without a retry backoff, and their delivery
    /// attempt is not counted. Ack ids whose lease is no longer current are ignored.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription, a malformed ack id or a store failure.
    pub async fn return_unsent(&self, name: &str, ack_ids: &[String]) -> Result<(), BrokerError> {
        if let Some(shared) = &self.shared {
            return shared.return_unsent(name, ack_ids).await;
        }
        let subscription = self.subscription(name)?;
        let parsed = parse_ack_ids(ack_ids, subscription.tag())?;
        let now = Instant::now();
        let mut returned = Vec::new();
        {
            let mut state = subscription.state();
            for (seq, attempts) in parsed {
                if state.release(seq, attempts).is_none() {
                    continue;
                }
                let previous = attempts.saturating_sub(1);
                state.requeue(seq, previous, None, now);
                returned.push((seq, previous));
            }
        }
        if returned.is_empty() {
            return Ok(());
        }
        debug!(
            subscription = name,
            count = returned.len(),
            "unsent deliveries returned"
        );
        subscription.ready.notify_waiters();
        self.store.set_attempts(name, returned).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::*;
    use crate::store::{NewMessage, StoredMessage};

    #[test]
    fn bytes_count_data_attributes_and_key() {
        let delivery = Delivery {
            ack_id: "1-1".to_owned(),
            message: StoredMessage {
                topic: "t".to_owned(),
                seq: 1,
                publish_time: SystemTime::UNIX_EPOCH,
                message: NewMessage {
                    data: vec![0; 10],
                    attributes: BTreeMap::from([("ab".to_owned(), "cde".to_owned())]),
                    ordering_key: "key".to_owned(),
                },
            },
            delivery_attempt: 0,
        };
        assert_eq!(delivery_bytes(&delivery), 10 + 5 + 3);
    }
}
