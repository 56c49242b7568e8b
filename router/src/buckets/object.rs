//! The object resource, its checksums and its JSON API v1 form.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// The content type of objects uploaded without one, as in Cloud Storage.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The only storage class this store has.
pub const STORAGE_CLASS: &str = "STANDARD";

/// Characters that stay unescaped in a URL path segment: RFC 3986's unreserved set.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One generation of an object: its metadata, without the bytes.
///
/// It serializes (with serde) to the fields of the JSON API resource that are stored, in
/// their JSON API form: camelCase keys, int64 values as decimal strings and times as
/// RFC 3339 with milliseconds. [`to_json`](Self::to_json) adds the derived fields (`kind`,
/// `id`, `selfLink`, `mediaLink`, `etag`) to give the resource exactly as the JSON API
/// returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResource {
    /// The object's name.
    pub name: String,
    /// The bucket's name.
    pub bucket: String,
    /// The version of the object's bytes, unique and increasing per object.
    #[serde(with = "int64_string")]
    pub generation: i64,
    /// Version of the metadata within this generation: 1 when written, +1 per patch.
    #[serde(with = "int64_string")]
    pub metageneration: i64,
    /// The media type of the bytes.
    pub content_type: String,
    /// Always [`STORAGE_CLASS`].
    pub storage_class: String,
    /// Length of the bytes.
    #[serde(with = "int64_string")]
    pub size: u64,
    /// Base64 of the MD5 digest of the bytes.
    pub md5_hash: String,
    /// Base64 of the CRC32C of the bytes as a big-endian u32.
    pub crc32c: String,
    /// When this generation was written, to the millisecond.
    #[serde(with = "rfc3339_millis")]
    pub time_created: SystemTime,
    /// When the metadata last changed, to the millisecond.
    #[serde(with = "rfc3339_millis")]
    pub updated: SystemTime,
    /// When this generation stopped being live, or `None` while it is the live version.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis_option"
    )]
    pub time_deleted: Option<SystemTime>,
    /// When the storage class last changed, which is the creation time here.
    #[serde(with = "rfc3339_millis")]
    pub time_storage_class_updated: SystemTime,
    /// Custom metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The object resource with the fields the JSON API derives from the stored ones.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonApiObject<'a> {
    kind: &'static str,
    id: String,
    self_link: String,
    media_link: String,
    #[serde(flatten)]
    object: &'a ObjectResource,
    etag: String,
}

impl ObjectResource {
    /// Whether this generation is the live version of the object.
    pub fn is_live(&self) -> bool {
        self.time_deleted.is_none()
    }

    /// Returns the JSON API id, `{bucket}/{name}/{generation}`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.bucket, self.name, self.generation)
    }

    /// Returns the HTTP entity tag.
    ///
    /// Cloud Storage writes it as base64 of a protobuf message with the generation as field 1
    /// and the metageneration as field 2. This matches the etags in its object resources, for
    /// example `CNHZkbuF/ugCEAE=` for generation 1587627537231057, metageneration 1.
    pub fn etag(&self) -> String {
        let mut bytes = Vec::with_capacity(20);
        bytes.push(0x08);
        push_varint(&mut bytes, self.generation as u64);
        bytes.push(0x10);
        push_varint(&mut bytes, self.metageneration as u64);
        BASE64.encode(bytes)
    }

    /// Returns the JSON API link to the resource, with the name percent-encoded as one path
    /// segment.
    pub fn self_link(&self) -> String {
        format!(
            "https://www.googleapis.com/storage/v1/b/{}/o/{}",
            self.bucket,
            utf8_percent_encode(&self.name, PATH_SEGMENT)
        )
    }

    /// Returns the JSON API download link of this generation.
    pub fn media_link(&self) -> String {
        format!(
            "https://www.googleapis.com/download/storage/v1/b/{}/o/{}?generation={}&alt=media",
            self.bucket,
            utf8_percent_encode(&self.name, PATH_SEGMENT),
            self.generation
        )
    }

    /// Returns the resource exactly as the JSON API returns it (`kind` `storage#object`).
    ///
    /// NOTE: `selfLink` and `mediaLink` point at Google's endpoints, as the JSON API writes
    /// them, not at this server.
    pub fn to_json(&self) -> serde_json::Value {
        let resource = JsonApiObject {
            kind: "storage#object",
            id: self.id(),
            self_link: self.self_link(),
            media_link: self.media_link(),
            object: self,
            etag: self.etag(),
        };
        serde_json::to_value(resource).unwrap_or_else(|err| {
            unreachable!("an object resource has only string keys and always serializes: {err}")
        })
    }
}

fn push_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// The size and the checksums of an object's bytes, in the JSON API's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    /// Length in bytes.
    pub size: u64,
    /// Base64 of the MD5 digest.
    pub md5_hash: String,
    /// Base64 of the CRC32C as a big-endian u32.
    pub crc32c: String,
}

impl Checksums {
    /// Computes the checksums of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            size: bytes.len() as u64,
            md5_hash: BASE64.encode(Md5::digest(bytes)),
            crc32c: crc32c_base64(bytes),
        }
    }
}

/// Base64 of the CRC32C of `bytes` as a big-endian u32.
pub(crate) fn crc32c_base64(bytes: &[u8]) -> String {
    BASE64.encode(crc32c::crc32c(bytes).to_be_bytes())
}

/// Truncates a time to whole milliseconds, the precision of the JSON API's object times.
pub(crate) fn truncate_to_millis(time: SystemTime) -> SystemTime {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis = since_epoch.as_millis();
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Formats a time as RFC 3339 in UTC with milliseconds, as the JSON API writes object times.
fn format_millis(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Formats a time as RFC 3339 in UTC with microseconds, as Cloud Storage writes `eventTime`.
pub(crate) fn format_micros(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Serde for int64 fields, which the JSON API writes as decimal strings.
mod int64_string {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|err| de::Error::custom(format!("invalid integer {text:?}: {err}")))
    }
}

/// Serde for times as RFC 3339 in UTC with milliseconds, as the JSON API writes them.
pub(crate) mod rfc3339_millis {
    use std::time::SystemTime;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        time: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::format_millis(*time))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(SystemTime::from)
            .map_err(|err| de::Error::custom(format!("invalid RFC 3339 time {text:?}: {err}")))
    }
}

/// Serde as [`rfc3339_millis`] for an optional time, to use with `default` and
/// `skip_serializing_if`.
mod rfc3339_millis_option {
    use std::time::SystemTime;

    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::rfc3339_millis::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        super::rfc3339_millis::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectResource {
        let time = UNIX_EPOCH + Duration::from_millis(1_587_627_537_230);
        ObjectResource {
            name: "folder/Test.cs".to_owned(),
            bucket: "some-bucket".to_owned(),
            generation: 1_587_627_537_231_057,
            metageneration: 1,
            content_type: "text/plain".to_owned(),
            storage_class: STORAGE_CLASS.to_owned(),
            size: 352,
            md5_hash: "kF8MuJ5+CTJxvyhHS1xzRg==".to_owned(),
            crc32c: "rTVTeQ==".to_owned(),
            time_created: time,
            updated: time,
            time_deleted: None,
            time_storage_class_updated: time,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn etag_matches_cloud_storage() {
        assert_eq!(sample().etag(), "CNHZkbuF/ugCEAE=");
    }

    #[test]
    fn links_escape_the_name() {
        let object = sample();
        assert_eq!(
            object.media_link(),
            "https://www.googleapis.com/download/storage/v1/b/some-bucket/o/folder%2FTest.cs\
             ?generation=1587627537231057&alt=media"
        );
        assert_eq!(
            object.self_link(),
            "https://www.googleapis.com/storage/v1/b/some-bucket/o/folder%2FTest.cs"
        );
    }

    #[test]
    fn json_writes_int64_as_strings() {
        let json = sample().to_json();
        assert_eq!(json["generation"], "1587627537231057");
        assert_eq!(json["metageneration"], "1");
        assert_eq!(json["size"], "352");
        assert_eq!(json["timeCreated"], "2020-04-23T07:38:57.230Z");
        assert_eq!(json["id"], "some-bucket/folder/Test.cs/1587627537231057");
        assert!(json.get("metadata").is_none());
        assert!(json.get("timeDeleted").is_none());
    }

    #[test]
    fn stored_form_round_trips() {
        let mut object = sample();
        object.time_deleted = Some(object.updated + Duration::from_millis(5));
        object.metadata.insert("k".to_owned(), "v".to_owned());
        let text = serde_json::to_string(&object).expect("serializes");
        let back: ObjectResource = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, object);
    }
}
