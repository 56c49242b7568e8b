//! Names, settings and encodings of the streams and consumers behind topics and
//! subscriptions.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, stream};
use serde::{Deserialize, Serialize};

use super::{failed, stream_not_created};
use crate::store::{
    NewMessage, StoreError, StoredMessage, SubscriptionRecord, TopicRecord, DEFAULT_RETENTION_SECS,
};

/// Most unacknowledged deliveries one subscription has at once across all nodes, unless
/// it orders messages. It bounds how many messages the consumers lease at a time.
const MAX_ACK_PENDING: i64 = 20_000;

/// Returns the stream name of the topic with this id.
pub(super) fn stream_name(topic_id: u32) -> String {
    format!("sluice_topic_{topic_id}")
}

/// Returns the subject that the topic with this id publishes on.
pub(super) fn subject(topic_id: u32) -> String {
    format!("sluice.topic.{topic_id}")
}

/// Returns the durable consumer name of the subscription with this id.
pub(crate) fn consumer_name(subscription_id: u32) -> String {
    format!("sluice_subscription_{subscription_id}")
}

/// Creates a topic's stream, or updates its settings.
///
/// Acknowledged messages stay until the maximum age, which is the topic's message
/// retention or, without one, 7 days, so that a seek back in time can find them.
pub(super) async fn ensure_stream(
    context: &jetstream::Context,
    topic: &TopicRecord,
    replicas: usize,
) -> Result<(), StoreError> {
    let max_age_secs = topic
        .settings
        .message_retention_secs
        .unwrap_or(DEFAULT_RETENTION_SECS);
    let config = stream::Config {
        name: stream_name(topic.id),
        description: Some(format!("sluice topic {}", topic.name)),
        subjects: vec![subject(topic.id)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: replicas,
        max_age: Duration::from_secs(max_age_secs),
        ..Default::default()
    };
    let name = config.name.clone();
    match context.get_stream(&config.name).await {
        Ok(_) => context
            .update_stream(config)
            .await
            .map(|_| ())
            .map_err(|err| stream_not_created(&name, replicas, err)),
        Err(_) => context
            .get_or_create_stream(config)
            .await
            .map(|_| ())
            .map_err(|err| stream_not_created(&name, replicas, err)),
    }
}

pub(super) async fn delete_stream(
    context: &jetstream::Context,
    topic_id: u32,
) -> Result<(), StoreError> {
    match context.delete_stream(stream_name(topic_id)).await {
        Ok(_) => Ok(()),
        Err(err) if err.to_string().contains("not found") => Ok(()),
        Err(err) => Err(failed("delete the topic's stream", err)),
    }
}

/// Builds the consumer settings of a subscription, whose deliveries start at `start`.
fn consumer_config(
    record: &SubscriptionRecord,
    start: consumer::DeliverPolicy,
) -> consumer::pull::Config {
    let spec = &record.spec;
    consumer::pull::Config {
        durable_name: Some(consumer_name(record.id)),
        description: Some(format!("sluice subscription {}", spec.name)),
        deliver_policy: start,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(u64::from(spec.ack_deadline_secs)),
        // Unlimited: the broker dead-letters a message itself when it is fetched after its
        // last allowed attempt, so that the copy is written before the delivery ends.
        max_deliver: -1,
        // With one delivery outstanding at a time, a message is acknowledged or redelivered
        // before the next one goes out, which keeps every ordering key in publish order.
        max_ack_pending: if spec.enable_message_ordering {
            1
        } else {
            MAX_ACK_PENDING
        },
        ..Default::default()
    }
}

/// Creates a subscription's consumer, delivering messages published from now on, or
/// updates the settings of the existing one.
pub(super) async fn ensure_consumer(
    context: &jetstream::Context,
    record: &SubscriptionRecord,
) -> Result<(), StoreError> {
    if record.spec.topic == crate::store::DELETED_TOPIC {
        return Ok(());
    }
    let stream = stream_of(context, record).await?;
    // A consumer's start cannot change once it exists, and a seek may have moved it.
    let start = match stream.consumer_info(consumer_name(record.id)).await {
        Ok(info) => info.config.deliver_policy,
        Err(_) => consumer::DeliverPolicy::New,
    };
    stream
        .create_consumer(consumer_config(record, start))
        .await
        .map(|_| ())
        .map_err(|err| failed("create the subscription's consumer", err))
}

/// Replaces a subscription's consumer with one that delivers every retained message
/// published at or after `time`. Outstanding deliveries end with the old consumer.
pub(super) async fn restart_consumer_at(
    context: &jetstream::Context,
    record: &SubscriptionRecord,
    time: SystemTime,
) -> Result<(), StoreError> {
    let stream = stream_of(context, record).await?;
    delete_consumer(context, record).await?;
    let start_time = time::OffsetDateTime::from(time);
    stream
        .create_consumer(consumer_config(
            record,
            consumer::DeliverPolicy::ByStartTime { start_time },
        ))
        .await
        .map(|_| ())
        .map_err(|err| failed("recreate the subscription's consumer", err))
}

pub(super) async fn delete_consumer(
    context: &jetstream::Context,
    record: &SubscriptionRecord,
) -> Result<(), StoreError> {
    let Ok(stream) = context.get_stream(stream_name(record.topic_id)).await else {
        // The topic was deleted, and its consumers with it.
        return Ok(());
    };
    match stream.delete_consumer(&consumer_name(record.id)).await {
        Ok(_) => Ok(()),
        Err(err) if err.to_string().contains("not found") => Ok(()),
        Err(err) => Err(failed("delete the subscription's consumer", err)),
    }
}

pub(super) async fn consumer_info(
    context: &jetstream::Context,
    record: &SubscriptionRecord,
) -> Result<consumer::Info, StoreError> {
    let stream = stream_of(context, record).await?;
    stream
        .consumer_info(consumer_name(record.id))
        .await
        .map_err(|err| failed("read the subscription's consumer", err))
}

async fn stream_of(
    context: &jetstream::Context,
    record: &SubscriptionRecord,
) -> Result<stream::Stream, StoreError> {
    context
        .get_stream(stream_name(record.topic_id))
        .await
        .map_err(|err| failed("open the topic's stream", err))
}

/// A message as the payload of a stream message.
#[derive(Serialize, Deserialize)]
struct EncodedMessage {
    /// Microseconds since the Unix epoch.
    publish_time_micros: u64,
    attributes: BTreeMap<String, String>,
    ordering_key: String,
    /// One length and a block of bytes, the same encoding as a byte sequence, but written
    /// and read in one copy.
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Encodes a message with its publish time as a stream message's payload.
///
/// # Errors
///
/// [`StoreError::JetStream`] when encoding fails, which postcard does only when out of
/// memory.
pub fn encode_message(message: &NewMessage, now: SystemTime) -> Result<bytes::Bytes, StoreError> {
    let micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let encoded = EncodedMessage {
        publish_time_micros: u64::try_from(micros).unwrap_or(u64::MAX),
        attributes: message.attributes.clone(),
        ordering_key: message.ordering_key.clone(),
        data: message.data.clone(),
    };
    postcard::to_stdvec(&encoded)
        .map(bytes::Bytes::from)
        .map_err(|err| failed("encode a message", err))
}

/// Decodes the payload of a stream message.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the payload was not written by [`encode_message`].
pub fn decode_message(topic: &str, seq: u64, payload: &[u8]) -> Result<StoredMessage, StoreError> {
    let encoded: EncodedMessage =
        postcard::from_bytes(payload).map_err(|err| StoreError::Corrupt {
            key: format!("{topic}/{seq}"),
            reason: err.to_string(),
        })?;
    Ok(StoredMessage {
        topic: topic.to_owned(),
        seq,
        publish_time: SystemTime::UNIX_EPOCH + Duration::from_micros(encoded.publish_time_micros),
        message: NewMessage {
            data: encoded.data,
            attributes: encoded.attributes,
            ordering_key: encoded.ordering_key,
        },
    })
}

/// The parts of a JetStream acknowledgement subject, which sluice uses as the ack id of a
/// delivery so that any node can settle it.
///
/// The subject is `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
/// <timestamp>.<pending>`, with a domain and an account hash after `$JS.ACK` on servers
/// from 2.9 on that send the longer form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSubject<'a> {
    /// The stream of the message.
    pub stream: &'a str,
    /// The consumer that delivered it.
    pub consumer: &'a str,
    /// Deliveries of the message so far, this one included.
    pub delivered: u32,
    /// The message's sequence number in the stream.
    pub stream_seq: u64,
}

impl<'a> AckSubject<'a> {
    /// Reads an acknowledgement subject; `None` when `subject` is not one.
    ///
    /// Ack ids come from clients and the valid ones are published to as NATS subjects, so
    /// every token is checked: names and the domain are letters, digits, `-` and `_`, and
    /// the five counters are decimal digits. Anything else, such as a space or CR LF that
    /// would end the NATS protocol line, makes the id invalid.
    pub fn parse(subject: &'a str) -> Option<Self> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let (prefix, rest) = match tokens.as_slice() {
            ["$JS", "ACK", rest @ ..] if rest.len() == 7 => (&[][..], rest),
            // Servers from 2.10 on may add one more token at the end.
            ["$JS", "ACK", _domain, _account, rest @ ..] if (7..=8).contains(&rest.len()) => {
                (&tokens[2..4], rest)
            }
            _ => return None,
        };
        let name = |token: &str| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        };
        let number =
            |token: &str| !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_digit());
        let valid = prefix.iter().all(|token| name(token))
            && name(rest[0])
            && name(rest[1])
            && rest[2..7].iter().all(|token| number(token))
            && rest[7..].iter().all(|token| name(token));
        if !valid {
            return None;
        }
        Some(AckSubject {
            stream: rest[0],
            consumer: rest[1],
            delivered: rest[2].parse().ok()?,
            stream_seq: rest[3].parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_through_payload() {
        let message = NewMessage {
            data: vec![0, 1, 255],
            attributes: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            ordering_key: "key".to_owned(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let payload = encode_message(&message, now).expect("encodes");

        let stored = decode_message("t", 7, &payload).expect("decodes");

        assert_eq!(stored.message, message);
        assert_eq!(stored.publish_time, now);
        assert_eq!(stored.seq, 7);
    }

    #[test]
    fn garbage_payload_is_corrupt() {
        let result = decode_message("t", 1, &[0xff; 3]);
        assert!(
            matches!(result, Err(StoreError::Corrupt { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn ack_subject_rejects_protocol_injection() {
        let valid = "$JS.ACK.sluice_topic_1.sluice_subscription_2.3.40.5.170.9";
        let injected = [
            format!("{valid}\r\nPUB sluice_topic_1 1\r\nx"),
            format!("{valid} extra"),
            "$JS.ACK.sluice_topic_1.sluice_subscription_2.3.40.5.170.9\r\nUNSUB 1".to_owned(),
            "$JS.ACK.d.acc.sluice_topic_1.sluice_subscription_2.3.40.5.170.9.x y".to_owned(),
            "$JS.ACK.sluice topic.sluice_subscription_2.3.40.5.170.9".to_owned(),
            "$JS.ACK.sluice_topic_1.sluice_subscription_2.3.40.5.17 0.9".to_owned(),
            "$JS.ACK.sluice_topic_1.sluice_subscription_2.3.40.5.170.".to_owned(),
            "$JS.ACK.d.a.s.c.1.2.3.4.5.t.extra".to_owned(),
        ];

        assert!(AckSubject::parse(valid).is_some());
        for id in &injected {
            assert_eq!(AckSubject::parse(id), None, "{id:?}");
        }
    }

    #[test]
    fn ack_subject_short_form_parses() {
        let parsed = AckSubject::parse("$JS.ACK.sluice_topic_1.sluice_subscription_2.3.40.5.170.9");
        assert_eq!(
            parsed,
            Some(AckSubject {
                stream: "sluice_topic_1",
                consumer: "sluice_subscription_2",
                delivered: 3,
                stream_seq: 40,
            })
        );
    }

    #[test]
    fn ack_subject_long_form_parses() {
        let parsed = AckSubject::parse(
            "$JS.ACK.hub.ACCHASH.sluice_topic_1.sluice_subscription_2.1.8.8.170.0.tok",
        );
        assert_eq!(parsed.map(|p| (p.stream_seq, p.delivered)), Some((8, 1)));
    }

    #[test]
    fn other_subjects_are_not_ack_subjects() {
        assert_eq!(AckSubject::parse("1-1-0badcafe"), None);
        assert_eq!(AckSubject::parse("$JS.ACK.s.c.x.1.1.1.1"), None);
    }
}
