//! The object resource that a JSON API upload sends with its bytes: in the JSON part of a
//! multipart upload, or in the body that starts a resumable upload.

use std::collections::BTreeMap;

use axum::http::HeaderValue;
use serde_json::Value;
use sluice_router::buckets::{Checksums, STORAGE_CLASS};

/// The fields of an uploaded object resource that sluice stores or checks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct NewObject {
    pub(super) name: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    /// The CRC32C the client computed (base64, big-endian), checked against the bytes.
    pub(super) crc32c: Option<String>,
    /// The MD5 the client computed (base64), checked against the bytes.
    pub(super) md5_hash: Option<String>,
}

impl NewObject {
    /// Reads the resource of an upload to `bucket`, or returns the message of the 400
    /// response.
    ///
    /// Fields that sluice does not store, such as `cacheControl` or `acl`, are rejected rather
    /// than dropped, so that a client never believes they were kept.
    pub(crate) fn from_json(resource: &Value, bucket: &str) -> Result<Self, String> {
        let Value::Object(fields) = resource else {
            return Err(
                "the object metadata must be a JSON object such as {\"name\": \"photo.jpg\"}"
                    .to_owned(),
            );
        };
        let mut object = NewObject::default();
        for (field, value) in fields {
            match field.as_str() {
                "name" => object.name = Some(string_field(field, value)?),
                "contentType" => {
                    let content_type = string_field(field, value)?;
                    if HeaderValue::from_str(&content_type).is_err() {
                        return Err(format!(
                            "invalid contentType {content_type:?}: send a media type such as \
                             \"image/jpeg\""
                        ));
                    }
                    object.content_type = Some(content_type);
                }
                "crc32c" => object.crc32c = Some(string_field(field, value)?),
                "md5Hash" => object.md5_hash = Some(string_field(field, value)?),
                "metadata" => object.metadata = metadata_field(value)?,
                "bucket" => {
                    let named = string_field(field, value)?;
                    if named != bucket {
                        return Err(format!(
                            "the metadata names bucket {named:?}, but the request uploads to \
                             bucket {bucket:?}: leave bucket out or make them match"
                        ));
                    }
                }
                "storageClass" if value == STORAGE_CLASS => {}
                "storageClass" => {
                    return Err(format!(
                        "storageClass {value} is not supported: sluice stores every object as \
                         {STORAGE_CLASS}, so leave it out"
                    ))
                }
                "kind" => {}
                other => {
                    return Err(format!(
                        "field {other:?} is not supported in uploads: sluice stores only name, \
                         contentType and metadata, and checks crc32c and md5Hash; leave it out"
                    ))
                }
            }
        }
        Ok(object)
    }

    /// Checks the checksums the client sent against those of the bytes, or returns the
    /// message of the 400 response.
    pub(super) fn verify(&self, actual: &Checksums) -> Result<(), String> {
        verify_checksum("CRC32C", self.crc32c.as_deref(), &actual.crc32c)?;
        verify_checksum("MD5", self.md5_hash.as_deref(), &actual.md5_hash)
    }
}

/// Returns an error unless `expected` is `None` or equals `actual`.
pub(super) fn verify_checksum(
    kind: &str,
    expected: Option<&str>,
    actual: &str,
) -> Result<(), String> {
    match expected {
        Some(expected) if expected != actual => Err(format!(
            "the {kind} {expected:?} that the request gives does not match the {kind} \
             {actual:?} of the bytes received: the data was damaged on the way, so upload it \
             again"
        )),
        _ => Ok(()),
    }
}

/// Parses an `x-goog-hash` request header (`crc32c=BASE64,md5=BASE64`, either or both) into
/// the CRC32C and the MD5 it gives.
pub(super) fn parse_goog_hash(value: &str) -> (Option<String>, Option<String>) {
    let (mut crc32c, mut md5) = (None, None);
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("crc32c", digest)) => crc32c = Some(digest.to_owned()),
            Some(("md5", digest)) => md5 = Some(digest.to_owned()),
            _ => {}
        }
    }
    (crc32c, md5)
}

fn string_field(field: &str, value: &Value) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{field} must be a string, not {value}"))
}

fn metadata_field(value: &Value) -> Result<BTreeMap<String, String>, String> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(entries) => entries
            .iter()
            // A key set to null is left out, as when it is patched to null.
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(format!("metadata.{key} must be a string, not {value}")),
            })
            .collect(),
        _ => Err("metadata must be an object of string values".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_client_fields() {
        let object = NewObject::from_json(
            &json!({
                "name": "a.jpg",
                "bucket": "uploads",
                "contentType": "image/jpeg",
                "metadata": {"k": "v", "gone": null},
                "crc32c": "ImIEBA==",
            }),
            "uploads",
        )
        .expect("a valid resource");
        assert_eq!(object.name.as_deref(), Some("a.jpg"));
        assert_eq!(object.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(
            object.metadata,
            BTreeMap::from([("k".to_owned(), "v".to_owned())])
        );
        assert_eq!(object.crc32c.as_deref(), Some("ImIEBA=="));
    }

    #[test]
    fn rejects_unstored_fields() {
        let cases = [
            (json!([]), "must be a JSON object"),
            (
                json!({"cacheControl": "no-cache"}),
                "field \"cacheControl\"",
            ),
            (json!({"bucket": "other"}), "names bucket \"other\""),
            (
                json!({"storageClass": "COLDLINE"}),
                "storageClass \"COLDLINE\"",
            ),
            (json!({"metadata": {"n": 1}}), "metadata.n must be a string"),
            (json!({"name": 5}), "name must be a string"),
            (json!({"contentType": "a\nb"}), "invalid contentType"),
        ];
        for (resource, reason) in cases {
            let err = NewObject::from_json(&resource, "uploads").expect_err("invalid");
            assert!(err.contains(reason), "{resource}: {err}");
        }
    }

    #[test]
    fn verify_compares_given_checksums() {
        let actual = Checksums::of(b"The quick brown fox jumps over the lazy dog");
        let mut object = NewObject {
            crc32c: Some("ImIEBA==".to_owned()),
            md5_hash: Some("nhB9nTcrtoJr2B01QqQZ1g==".to_owned()),
            ..NewObject::default()
        };
        assert_eq!(object.verify(&actual), Ok(()));
        object.crc32c = Some("AAAAAA==".to_owned());
        let err = object.verify(&actual).expect_err("a wrong CRC32C");
        assert!(err.contains("CRC32C \"AAAAAA==\""), "{err}");
    }

    #[test]
    fn goog_hash_header() {
        assert_eq!(
            parse_goog_hash("crc32c=ImIEBA==,md5=nhB9nTcrtoJr2B01QqQZ1g=="),
            (
                Some("ImIEBA==".to_owned()),
                Some("nhB9nTcrtoJr2B01QqQZ1g==".to_owned())
            )
        );
        assert_eq!(parse_goog_hash("md5=x"), (None, Some("x".to_owned())));
    }
}
