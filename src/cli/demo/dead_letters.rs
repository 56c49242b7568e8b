//! The dead letters that `sluice demo` prints: pulled and acknowledged from a dead-letter
//! subscription, with the reason each handler gave.

use std::collections::HashMap;

use anyhow::Context as _;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{AcknowledgeRequest, PullRequest};
use tonic::transport::Channel;

use crate::client::subscription_resource;

/// One dead-lettered message: its attributes and the reason its handler rejected it.
#[derive(Debug)]
pub(super) struct DeadLetter {
    attributes: HashMap<String, String>,
    pub(super) reason: String,
}

impl DeadLetter {
    /// Returns an attribute of the message, or "" when it has none of that name.
    pub(super) fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// Pulls and acknowledges the messages of a dead-letter subscription, sorted by reason.
pub(super) async fn pull_dead_letters(
    channel: Channel,
    subscription: &str,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut client = SubscriberClient::new(channel);
    let subscription = subscription_resource(subscription);
    let received = client
        .pull(PullRequest {
            subscription: subscription.clone(),
            max_messages: 100,
            ..PullRequest::default()
        })
        .await
        .context("pulling the dead letters failed")?
        .into_inner()
        .received_messages;
    let mut dead_letters = Vec::new();
    let mut ack_ids = Vec::new();
    for received in received {
        ack_ids.push(received.ack_id);
        let attributes = received.message.unwrap_or_default().attributes;
        let reason = attributes
            .get(sluice_router::deliver::DEAD_LETTER_REASON_ATTRIBUTE)
            .cloned()
            .unwrap_or_else(|| "no reason recorded".to_owned());
        dead_letters.push(DeadLetter { attributes, reason });
    }
    if !ack_ids.is_empty() {
        client
            .acknowledge(AcknowledgeRequest {
                subscription,
                ack_ids,
            })
            .await
            .context("acknowledging the dead letters failed")?;
    }
    dead_letters.sort_by(|a, b| a.reason.cmp(&b.reason));
    Ok(dead_letters)
}
