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
//!
//! Tree `catalog` also holds `n/{name}`: a [`SnapshotRecord`](super::SnapshotRecord).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

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

/// The stored form of a message. Field order is part of the format, since postcard encodes
/// fields by position.
#[derive(Serialize, Deserialize)]
struct MessageValue {
    publish_secs: u64,
    publish_nanos: u32,
    data: Vec<u8>,
    attributes: Vec<(String, String)>,
    ordering_key: String,
}

pub(super) fn encode_message(message: &NewMessage, publish_time: SystemTime) -> Vec<u8> {
    let since_epoch = publish_time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let value = MessageValue {
        publish_secs: since_epoch.as_secs(),
        publish_nanos: since_epoch.subsec_nanos(),
        data: message.data.clone(),
        attributes: message
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ordering_key: message.ordering_key.clone(),
    };
    // Encoding into a Vec only fails on types postcard cannot represent, and this one has
    // none.
    postcard::to_stdvec(&value).unwrap_or_default()
}

/// Reads only the publish time of a stored message, which is its first two fields.
pub(super) fn decode_publish_time(key: &[u8], bytes: &[u8]) -> Result<SystemTime, StoreError> {
    let ((secs, nanos), _): ((u64, u32), _) = postcard::take_from_bytes(bytes)
        .map_err(|err| corrupt(key, format!("message does not decode: {err}")))?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

pub(super) fn decode_message(
    key: &[u8],
    bytes: &[u8],
) -> Result<(NewMessage, SystemTime), StoreError> {
    let value: MessageValue = postcard::from_bytes(bytes)
        .map_err(|err| corrupt(key, format!("message does not decode: {err}")))?;
    let publish_time = UNIX_EPOCH + Duration::new(value.publish_secs, value.publish_nanos);
    let message = NewMessage {
        data: value.data,
        attributes: value.attributes.into_iter().collect::<BTreeMap<_, _>>(),
        ordering_key: value.ordering_key,
    };
    Ok((message, publish_time))
}
