//! StreamingPull responses, split to fit the receive limit of default gRPC clients.

use sluice_proto::google::pubsub::v1::streaming_pull_response::SubscriptionProperties;
use sluice_proto::google::pubsub::v1::{ReceivedMessage, StreamingPullResponse};
use sluice_proto::prost::Message as _;

/// Largest StreamingPullResponse sent with more than one message: 4 MiB, the default receive
/// limit of gRPC clients (`DEFAULT_MAX_RECV_MESSAGE_SIZE` in tonic 0.14). The Rust client
/// keeps it, and so does the Python client in emulator mode, because google-cloud-pubsub
/// 2.44.0 then opens its channel without options.
pub(super) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Splits messages into responses of at most [`MAX_RESPONSE_BYTES`] each, in order. A
/// message that alone exceeds the limit gets a response of its own.
pub(super) fn split_responses(
    messages: Vec<ReceivedMessage>,
    properties: SubscriptionProperties,
) -> Vec<StreamingPullResponse> {
    let empty = StreamingPullResponse {
        subscription_properties: Some(properties),
        ..Default::default()
    };
    let mut responses = Vec::new();
    let mut current = empty.clone();
    let mut size = empty.encoded_len();
    for message in messages {
        let length = message.encoded_len();
        // Field tag, length prefix and the message itself.
        let field = 1 + sluice_proto::prost::length_delimiter_len(length) + length;
        if !current.received_messages.is_empty() && size + field > MAX_RESPONSE_BYTES {
            responses.push(std::mem::replace(&mut current, empty.clone()));
            size = empty.encoded_len();
        }
        size += field;
        current.received_messages.push(message);
    }
    if !current.received_messages.is_empty() {
        responses.push(current);
    }
    responses
}

#[cfg(test)]
mod tests {
    use sluice_proto::google::pubsub::v1::PubsubMessage;

    use super::*;

    fn message(bytes: usize) -> ReceivedMessage {
        ReceivedMessage {
            ack_id: "1-1".to_owned(),
            message: Some(PubsubMessage {
                data: vec![b'x'; bytes],
                ..Default::default()
            }),
            delivery_attempt: 0,
        }
    }

    #[test]
    fn responses_stay_under_the_limit() {
        let messages = (0..10).map(|_| message(1_000_000)).collect();
        let responses = split_responses(messages, SubscriptionProperties::default());
        assert_eq!(responses.len(), 3, "four 1 MB messages fit in 4 MiB");
        for response in &responses {
            assert!(response.encoded_len() <= MAX_RESPONSE_BYTES);
        }
        let total: usize = responses.iter().map(|r| r.received_messages.len()).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn oversized_message_goes_alone() {
        let messages = vec![message(10), message(5_000_000), message(10)];
        let responses = split_responses(messages, SubscriptionProperties::default());
        let sizes: Vec<usize> = responses
            .iter()
            .map(|r| r.received_messages.len())
            .collect();
        assert_eq!(sizes, [1, 1, 1]);
    }
}
