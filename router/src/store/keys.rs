//! Key layout of the sled trees.
//!
//! Tree `catalog` holds the catalog, as JSON:
//! - `t/{name}`: a [`TopicRecord`](super::TopicRecord)
//! - `s/{name}`: a [`SubscriptionRecord`](super::SubscriptionRecord)
//!
//! Tree `data` holds everything a publish or an acknowledgement changes, so that one
//! atomic batch covers it. Integers are big-endian, so keys sort in numeric order:
//! - `m{topic id:u32}{seq:u64}`: a message, encoded by [`encode_message`]
//! - `p{subscription id:u32}{seq:u64}`: a pending delivery; the value is the attempt count
//!   as a big-endian u32
//! - `q{topic id:u32}`: the last sequence number used in the topic, so that ids are never
//!   reused after the newest message is deleted
//! - `r{snapshot id:u32}{seq:u64}`: a message that was unacknowledged when the snapshot was
//!   taken; the value is empty
//! - `x{segment:u64}{topic id:u32}{seq:u64}`: a message whose payload is in that payload
//!   segment file (see `sled_store/payloads.rs`); the value is empty
//!
//! Tree `catalog` also holds `n/{name}`: a [`SnapshotRecord`](super::SnapshotRecord).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::sled_store::PayloadRef;
use super::{NewMessage, StoreError};

pub(super) fn message(topic: u32, seq: u64) -> [u8; 13] {
    prefixed(b'm', topic, seq)
}

pub(super) fn pending(subscription: u32, seq: u64) -> [u8; 13] {
    prefixed(b'p', subscription, seq)
}

pub(super) fn pending_prefix(subscription: u32) -> [u8; 5] {
    id_prefix(b'p', subscription)
}

pub(super) fn message_prefix(topic: u32) -> [u8; 5] {
    id_prefix(b'm', topic)
}

pub(super) fn snapshot_member(snapshot: u32, seq: u64) -> [u8; 13] {
    prefixed(b'r', snapshot, seq)
}

pub(super) fn snapshot_prefix(snapshot: u32) -> [u8; 5] {
    id_prefix(b'r', snapshot)
}

pub(super) fn payload_member(segment: u64, topic: u32, seq: u64) -> [u8; 21] {
    let mut key = [0u8; 21];
    key[..9].copy_from_slice(&payload_prefix(segment));
    key[9..13].copy_from_slice(&topic.to_be_bytes());
    key[13..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn payload_prefix(segment: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = b'x';
    key[1..].copy_from_slice(&segment.to_be_bytes());
    key
}

pub(super) fn last_seq(topic: u32) -> [u8; 5] {
    id_prefix(b'q', topic)
}

fn id_prefix(tag: u8, id: u32) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[0] = tag;
    key[1..5].copy_from_slice(&id.to_be_bytes());
    key
}

fn prefixed(tag: u8, id: u32, seq: u64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..5].copy_from_slice(&id_prefix(tag, id));
    key[5..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Reads the sequence number at the end of a `m` or `p` key.
pub(super) fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .get(5..13)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(|| corrupt(key, "key is not 13 bytes long"))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(super) fn decode_u32(key: &[u8], value: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = value
        .try_into()
        .map_err(|_| corrupt(key, "value is not 4 bytes long"))?;
    Ok(u32::from_be_bytes(bytes))
}

pub(super) fn decode_u64(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| corrupt(key, "value is not 8 bytes long"))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(super) fn corrupt(key: &[u8], reason: impl Into<String>) -> StoreError {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    StoreError::Corrupt {
        key: hex,
        reason: reason.into(),
    }
}

/// The stored form of a message, as the first versions wrote it. Field order is part of the
/// format, since postcard encodes fields by position.
#[derive(Serialize, Deserialize)]
struct MessageValueV1 {
    publish_secs: u64,
    publish_nanos: u32,
    data: Vec<u8>,
    attributes: Vec<(String, String)>,
    ordering_key: String,
}

/// The stored form of a message: [`MessageValueV1`] with one more field, the reference to a
/// payload kept outside sled (then `data` is empty). A V1 value is one byte short of any V2
/// value, so it never decodes as one.
///
/// `data` goes through serde_bytes, which postcard writes and reads as one length and a block
/// of bytes instead of byte by byte; the encoding is the same as a `Vec<u8>` sequence's.
#[derive(Deserialize)]
struct MessageValue {
    publish_secs: u64,
    publish_nanos: u32,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    attributes: Vec<(String, String)>,
    ordering_key: String,
    external: Option<PayloadRef>,
}

/// [`MessageValue`] borrowed from the message being written, so that encoding copies the
/// payload once, into the encoded value.
#[derive(Serialize)]
struct MessageValueRef<'a> {
    publish_secs: u64,
    publish_nanos: u32,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
    attributes: Vec<(&'a str, &'a str)>,
    ordering_key: &'a str,
    external: Option<PayloadRef>,
}

/// A decoded message value. When `external` is set, `message.data` is empty and the payload
/// is read from its segment.
pub(super) struct DecodedMessage {
    pub(super) message: NewMessage,
    pub(super) publish_time: SystemTime,
    pub(super) external: Option<PayloadRef>,
}

/// Encodes a message, with its payload inline or, when `external` is given, as a reference.
pub(super) fn encode_message(
    message: &NewMessage,
    publish_time: SystemTime,
    external: Option<PayloadRef>,
) -> Vec<u8> {
    let since_epoch = publish_time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let data: &[u8] = if external.is_some() {
        &[]
    } else {
        &message.data
    };
    let value = MessageValueRef {
        publish_secs: since_epoch.as_secs(),
        publish_nanos: since_epoch.subsec_nanos(),
        data,
        attributes: message
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        ordering_key: &message.ordering_key,
        external,
    };
    // Room for the payload and the fixed fields, so the buffer is allocated once for most
    // messages.
    let buffer = Vec::with_capacity(data.len() + message.ordering_key.len() + 64);
    // Encoding into a Vec only fails on types postcard cannot represent, and this one has
    // none.
    postcard::to_extend(&value, buffer).unwrap_or_default()
}

/// Reads only the publish time of a stored message, which is its first two fields.
pub(super) fn decode_publish_time(key: &[u8], bytes: &[u8]) -> Result<SystemTime, StoreError> {
    let ((secs, nanos), _): ((u64, u32), _) = postcard::take_from_bytes(bytes)
        .map_err(|err| corrupt(key, format!("message does not decode: {err}")))?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Decodes a stored message; the payload of an external one is not read.
pub(super) fn decode_message(key: &[u8], bytes: &[u8]) -> Result<DecodedMessage, StoreError> {
    let value = match postcard::from_bytes::<MessageValue>(bytes) {
        Ok(value) => value,
        Err(_) => {
            let old: MessageValueV1 = postcard::from_bytes(bytes)
                .map_err(|err| corrupt(key, format!("message does not decode: {err}")))?;
            MessageValue {
                publish_secs: old.publish_secs,
                publish_nanos: old.publish_nanos,
                data: old.data,
                attributes: old.attributes,
                ordering_key: old.ordering_key,
                external: None,
            }
        }
    };
    Ok(DecodedMessage {
        message: NewMessage {
            data: value.data,
            attributes: value.attributes.into_iter().collect::<BTreeMap<_, _>>(),
            ordering_key: value.ordering_key,
        },
        publish_time: UNIX_EPOCH + Duration::new(value.publish_secs, value.publish_nanos),
        external: value.external,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of [`MessageValue`] with `data` as a plain `Vec<u8>`, which serde encodes
    /// byte by byte: the form that earlier versions wrote.
    #[derive(Serialize)]
    struct MessageValueAsSequence {
        publish_secs: u64,
        publish_nanos: u32,
        data: Vec<u8>,
        attributes: Vec<(String, String)>,
        ordering_key: String,
        external: Option<PayloadRef>,
    }

    #[test]
    fn message_bytes_match_sequence_encoding() {
        let message = NewMessage {
            data: (0..=255).collect(),
            attributes: BTreeMap::from([("a".to_owned(), "1".to_owned())]),
            ordering_key: "key".to_owned(),
        };
        let publish_time = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let expected = postcard::to_stdvec(&MessageValueAsSequence {
            publish_secs: 1_700_000_000,
            publish_nanos: 5,
            data: message.data.clone(),
            attributes: vec![("a".to_owned(), "1".to_owned())],
            ordering_key: "key".to_owned(),
            external: None,
        })
        .expect("encodes");
        let encoded = encode_message(&message, publish_time, None);
        assert_eq!(encoded, expected);
        let decoded = decode_message(b"key", &expected).expect("decodes");
        assert_eq!(decoded.message.data, message.data);
        assert_eq!(decoded.message.ordering_key, "key");
        assert_eq!(decoded.publish_time, publish_time);
    }

    #[test]
    fn first_format_still_decodes() {
        let old = MessageValueV1 {
            publish_secs: 1_700_000_000,
            publish_nanos: 5,
            data: b"payload".to_vec(),
            attributes: vec![("a".to_owned(), "b".to_owned())],
            ordering_key: "k".to_owned(),
        };
        let bytes = postcard::to_stdvec(&old).expect("encodes");
        let decoded = decode_message(b"m", &bytes).expect("decodes");
        assert_eq!(decoded.message.data, b"payload");
        assert_eq!(decoded.message.ordering_key, "k");
        assert_eq!(decoded.external, None);
        assert_eq!(
            decoded.publish_time,
            UNIX_EPOCH + Duration::new(1_700_000_000, 5)
        );
    }

    #[test]
    fn external_reference_round_trips() {
        let message = NewMessage {
            data: vec![1; 4096],
            attributes: BTreeMap::new(),
            ordering_key: String::new(),
        };
        let payload = PayloadRef {
            segment: 3,
            offset: 77,
            len: 4096,
            crc: 9,
        };
        let bytes = encode_message(&message, UNIX_EPOCH, Some(payload));
        assert!(
            bytes.len() < 64,
            "the value holds no payload: {} bytes",
            bytes.len()
        );
        let decoded = decode_message(b"m", &bytes).expect("decodes");
        assert_eq!(decoded.external, Some(payload));
        assert!(decoded.message.data.is_empty());
        assert_eq!(decode_publish_time(b"m", &bytes).expect("time"), UNIX_EPOCH);
    }
}
