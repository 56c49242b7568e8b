//! The bucket routes of Cloud Storage's JSON API: `buckets.get`, `buckets.insert` and
//! `buckets.list`.
//!
//! A bucket created here is stored like a configured one, in `<data dir>/buckets`, so it
//! stays after a restart. It has no notification configs, because sluice adds those only
//! from the configuration file.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::Json;
use serde_json::{json, Value};
use sluice_router::buckets::STORAGE_CLASS;
use sluice_router::storage::StorageError;
use tonic::Code;
use tracing::info;

use super::errors::{invalid, storage_error};
use super::links::{bucket_json, BaseUrl};
use super::StorageState;
use crate::server::status::rest_error;

/// `GET /storage/v1/b/{bucket}`: the bucket resource.
pub(super) async fn get_bucket(
    State(state): State<StorageState>,
    bucket: Result<Path<String>, PathRejection>,
    base: BaseUrl,
) -> HttpResponse {
    let Path(bucket) = match bucket {
        Ok(bucket) => bucket,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    match state.storage.bucket(&bucket).await {
        Ok(info) => Json(bucket_json(&info, &base)).into_response(),
        Err(err) => storage_error(&err),
    }
}

/// `GET /storage/v1/b`: every bucket, as `storage#buckets`. The `project` parameter is
/// ignored, because sluice has no projects.
pub(super) async fn list_buckets(State(state): State<StorageState>, base: BaseUrl) -> HttpResponse {
    let items: Vec<Value> = match state.storage.list_buckets().await {
        Ok(buckets) => buckets
            .iter()
            .map(|info| bucket_json(info, &base))
            .collect(),
        Err(err) => return storage_error(&err),
    };
    let mut response = json!({"kind": "storage#buckets"});
    if !items.is_empty() {
        response["items"] = Value::Array(items);
    }
    Json(response).into_response()
}

/// `POST /storage/v1/b`: creates a bucket from a JSON body with `name` and optionally
/// `versioning.enabled`. The `project` parameter and the `location` field are accepted and
/// ignored, because sluice has neither projects nor locations.
pub(super) async fn insert_bucket(
    State(state): State<StorageState>,
    base: BaseUrl,
    body: Result<Json<Value>, JsonRejection>,
) -> HttpResponse {
    let settings = match body {
        Ok(Json(body)) => parse_bucket(&body),
        Err(rejection) => Err(rejection.body_text()),
    };
    let (name, versioning) = match settings {
        Ok(settings) => settings,
        Err(message) => return invalid(&message),
    };
    let buckets = state.storage.buckets().clone();
    let created = {
        let name = name.clone();
        // Creating a bucket fsyncs its folder, so it runs off the runtime.
        tokio::task::spawn_blocking(move || buckets.create_bucket(&name, versioning)).await
    };
    match created {
        Ok(Ok(info)) => {
            info!(bucket = %name, versioning, "bucket created through the JSON API");
            Json(bucket_json(&info, &base)).into_response()
        }
        Ok(Err(err)) => storage_error(&StorageError::Bucket(err)),
        Err(_) => rest_error(Code::Unavailable, "the server is shutting down", None),
    }
}

/// Returns the name and the versioning of a `buckets.insert` body, or the message of the 400
/// response.
fn parse_bucket(body: &Value) -> Result<(String, bool), String> {
    let Value::Object(fields) = body else {
        return Err("the body must be a JSON object such as {\"name\": \"my-bucket\"}".to_owned());
    };
    let mut name = None;
    let mut versioning = false;
    for (field, value) in fields {
        match field.as_str() {
            "name" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| format!("name must be a string, not {value}"))?;
                name = Some(text.to_owned());
            }
            "versioning" => {
                versioning = match value.get("enabled") {
                    Some(Value::Bool(enabled)) => *enabled,
                    None | Some(Value::Null) => false,
                    Some(other) => {
                        return Err(format!(
                            "versioning.enabled must be true or false, not {other}"
                        ))
                    }
                };
            }
            "storageClass" if value == STORAGE_CLASS => {}
            "kind" | "location" => {}
            other => {
                return Err(format!(
                    "field {other:?} is not supported: sluice stores only a bucket's name and \
                     versioning, so leave it out"
                ))
            }
        }
    }
    let name = name.ok_or("the bucket name is missing: send {\"name\": \"my-bucket\"}")?;
    Ok((name, versioning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_body_reads_name_and_versioning() {
        let parsed = parse_bucket(&json!({
            "name": "b1",
            "location": "US",
            "versioning": {"enabled": true}
        }));
        assert_eq!(parsed, Ok(("b1".to_owned(), true)));
    }

    #[test]
    fn bucket_body_rejects_other_fields() {
        let cases = [
            (json!({}), "the bucket name is missing"),
            (json!({"name": 1}), "name must be a string"),
            (json!({"name": "b", "labels": {}}), "field \"labels\""),
            (
                json!({"name": "b", "versioning": {"enabled": "yes"}}),
                "versioning.enabled",
            ),
            (
                json!({"name": "b", "storageClass": "NEARLINE"}),
                "field \"storageClass\"",
            ),
        ];
        for (body, reason) in cases {
            let err = parse_bucket(&body).expect_err("invalid");
            assert!(err.contains(reason), "{body}: {err}");
        }
    }
}
