//! Error responses of the bucket routes, in the shape of Cloud Storage's JSON API:
//! `{"error": {"code", "message", "status", "errors": [{"domain", "reason", "message"}]}}`.
//!
//! The status and the body come from `crate::server::status`, the one place that maps errors
//! to HTTP statuses. [`add_error_list`] adds the `errors` list that Cloud Storage's clients
//! read the reason from.

use axum::body::{to_bytes, Body};
use axum::http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::Json;
use serde_json::{json, Value};
use sluice_router::buckets::BucketError;
use sluice_router::storage::StorageError;
use tonic::Code;

use crate::server::status::{rest_error, storage_http_error};

/// The largest error body that [`add_error_list`] rewrites. Error bodies are a few hundred
/// bytes, so a larger one is passed on unchanged.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Returns 400 INVALID_ARGUMENT with `message`.
pub(super) fn invalid(message: &str) -> HttpResponse {
    rest_error(Code::InvalidArgument, message, None)
}

/// Returns a storage error's response. A missing bucket's message names both ways to create
/// one.
pub(super) fn storage_error(err: &StorageError) -> HttpResponse {
    if let StorageError::Bucket(BucketError::BucketNotFound { bucket }) = err {
        let message = format!(
            "bucket {bucket:?} not found: create it with POST /storage/v1/b, or declare it in \
             the configuration with [[buckets]] name = {bucket:?} and restart the server"
        );
        return rest_error(Code::NotFound, &message, None);
    }
    storage_http_error(err)
}

/// Returns 416 for a Range header that selects no byte of an object of `size` bytes.
pub(super) fn range_not_satisfiable(range: &str, size: u64) -> HttpResponse {
    let message = format!(
        "the Range {range:?} selects no byte of the object, which has {size} bytes: request a \
         range that starts below {size}, or leave Range out"
    );
    let body = json!({"error": {
        "code": StatusCode::RANGE_NOT_SATISFIABLE.as_u16(),
        "message": message,
        "status": "OUT_OF_RANGE",
    }});
    let mut response = (StatusCode::RANGE_NOT_SATISFIABLE, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(CONTENT_RANGE, value);
    }
    response
}

/// Adds `errors: [{"domain": "global", "reason", "message"}]` to a JSON error response that
/// has no such list, with the reason Cloud Storage gives for its HTTP status.
pub(super) async fn add_error_list(response: HttpResponse) -> HttpResponse {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_ERROR_BODY_BYTES).await {
        Ok(bytes) => bytes,
        // A body that cannot be read again is lost either way, but the status still gives
        // the client the outcome.
        Err(_) => return HttpResponse::from_parts(parts, Body::empty()),
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return HttpResponse::from_parts(parts, Body::from(bytes));
    };
    let Some(error) = value.get_mut("error").and_then(Value::as_object_mut) else {
        return HttpResponse::from_parts(parts, Body::from(bytes));
    };
    if !error.contains_key("errors") {
        let message = error.get("message").cloned().unwrap_or(Value::Null);
        error.insert(
            "errors".to_owned(),
            json!([{"domain": "global", "reason": reason(status), "message": message}]),
        );
    }
    parts.headers.remove(CONTENT_LENGTH);
    let body = serde_json::to_vec(&value).unwrap_or_else(|_| bytes.to_vec());
    HttpResponse::from_parts(parts, Body::from(body))
}

/// Returns the reason that Cloud Storage's JSON API gives for an HTTP error status.
fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid",
        401 => "required",
        403 => "forbidden",
        404 => "notFound",
        409 => "conflict",
        411 => "required",
        412 => "conditionNotMet",
        413 => "uploadTooLarge",
        416 => "requestedRangeNotSatisfiable",
        429 => "rateLimitExceeded",
        499 => "clientClosedRequest",
        501 => "notImplemented",
        _ if status.is_server_error() => "backendError",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: HttpResponse) -> Value {
        let bytes = to_bytes(response.into_body(), MAX_ERROR_BODY_BYTES)
            .await
            .expect("a readable body");
        serde_json::from_slice(&bytes).expect("a JSON body")
    }

    #[tokio::test]
    async fn error_list_carries_reason_and_message() {
        let response = add_error_list(invalid("bad value")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(body["error"]["message"], "bad value");
        assert_eq!(
            body["error"]["errors"],
            json!([{"domain": "global", "reason": "invalid", "message": "bad value"}])
        );
    }

    #[tokio::test]
    async fn success_passes_unchanged() {
        let response = add_error_list(Json(json!({"kind": "storage#object"})).into_response());
        let body = body_json(response.await).await;
        assert_eq!(body, json!({"kind": "storage#object"}));
    }

    #[tokio::test]
    async fn missing_bucket_names_both_fixes() {
        let err = StorageError::Bucket(BucketError::BucketNotFound {
            bucket: "photos".to_owned(),
        });
        let response = add_error_list(storage_error(&err)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = body_json(response).await;
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains("POST /storage/v1/b"), "{message}");
        assert!(message.contains("[[buckets]]"), "{message}");
        assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
    }
}
