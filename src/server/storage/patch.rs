//! The body of `PATCH /storage/v1/b/{bucket}/o/{object}`: the object fields that sluice
//! patches, `metadata` and `contentType`.

use std::collections::BTreeMap;

use axum::http::HeaderValue;
use serde_json::{Map, Value};

/// The changes of a PATCH body.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ObjectPatch {
    /// Keys to set (`Some`) or remove (`None`).
    pub(super) metadata: BTreeMap<String, Option<String>>,
    /// Whether `"metadata": null` asked to remove every key.
    pub(super) clear_metadata: bool,
    pub(super) content_type: Option<String>,
}

/// Parses a PATCH body, or returns the message of the 400 response.
pub(super) fn parse_patch(body: &Value) -> Result<ObjectPatch, String> {
    let Value::Object(fields) = body else {
        return Err(
            "the body must be a JSON object such as {\"metadata\": {\"key\": \"value\"}}"
                .to_owned(),
        );
    };
    let mut patch = ObjectPatch::default();
    for (field, value) in fields {
        match field.as_str() {
            "metadata" => match value {
                Value::Null => patch.clear_metadata = true,
                Value::Object(entries) => patch.metadata = parse_metadata(entries)?,
                _ => {
                    return Err(
                        "metadata must be an object of string values, or null to remove \
                         every key"
                            .to_owned(),
                    )
                }
            },
            "contentType" => match value {
                Value::String(content_type) if HeaderValue::from_str(content_type).is_ok() => {
                    patch.content_type = Some(content_type.clone());
                }
                _ => {
                    return Err(
                        "contentType must be a media type string such as \"image/jpeg\"".to_owned(),
                    )
                }
            },
            other => {
                return Err(format!(
                    "field {other:?} cannot be patched: sluice stores and patches only \
                     metadata and contentType"
                ))
            }
        }
    }
    Ok(patch)
}

fn parse_metadata(
    entries: &Map<String, Value>,
) -> Result<BTreeMap<String, Option<String>>, String> {
    entries
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), Some(text.clone()))),
            Value::Null => Ok((key.clone(), None)),
            _ => Err(format!(
                "metadata.{key} must be a string, or null to remove the key"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patch_sets_and_removes_keys() {
        let patch = parse_patch(&json!({
            "metadata": {"set": "v", "remove": null},
            "contentType": "text/plain"
        }))
        .expect("a valid patch");
        assert_eq!(
            patch,
            ObjectPatch {
                metadata: BTreeMap::from([
                    ("remove".to_owned(), None),
                    ("set".to_owned(), Some("v".to_owned())),
                ]),
                clear_metadata: false,
                content_type: Some("text/plain".to_owned()),
            }
        );
    }

    #[test]
    fn patch_null_metadata_clears() {
        let patch = parse_patch(&json!({"metadata": null})).expect("a valid patch");
        assert!(patch.clear_metadata);
        assert!(patch.metadata.is_empty());
    }

    #[test]
    fn patch_rejects_other_fields_and_types() {
        let cases = [
            (json!([]), "the body must be a JSON object"),
            (
                json!({"cacheControl": "no-cache"}),
                "field \"cacheControl\" cannot be patched",
            ),
            (json!({"metadata": {"n": 1}}), "metadata.n must be a string"),
            (json!({"metadata": "x"}), "metadata must be an object"),
            (
                json!({"contentType": 5}),
                "contentType must be a media type",
            ),
            (
                json!({"contentType": "a\nb"}),
                "contentType must be a media type",
            ),
        ];
        for (body, start) in cases {
            let err = parse_patch(&body).expect_err("an invalid patch");
            assert!(err.starts_with(start), "{body}: {err}");
        }
    }
}
