//! `POST /upload/storage/v1/b/{bucket}/o`: Cloud Storage's JSON API uploads, as its clients
//! send them.
//!
//! - `uploadType=media`: the body is the object's bytes, named by the `name` parameter, with
//!   the request's Content-Type as the object's.
//! - `uploadType=multipart`: a `multipart/related` body of the object resource as JSON, then
//!   the bytes (`multipart_related.rs`).
//! - `uploadType=resumable`: the body is the object resource as JSON (or empty). The response
//!   carries the session URL in `Location`, and the bytes follow in PUT requests to it
//!   (`resumable.rs`).
//!
//! The resource may give `name`, `contentType`, `metadata`, and `crc32c` and `md5Hash`, which
//! are checked against the bytes. The response is the stored object resource. Every upload
//! publishes the bucket's notifications, as any other write does.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::Json;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use sluice_router::buckets::Checksums;
use tracing::debug;

use super::body::{read_to_limit, BodyError};
use super::errors::{invalid, storage_error};
use super::links::{object_json, BaseUrl};
use super::multipart_related;
use super::new_object::NewObject;
use super::resumable::session_error;
use super::StorageState;
use crate::server::status::payload_too_large;

/// The largest object resource that starts a resumable upload. Cloud Storage allows 8 KiB of
/// custom metadata, so this leaves room for the rest.
const MAX_RESOURCE_BYTES: u64 = 64 * 1024;

/// Characters that stay unescaped in a URL path segment: RFC 3986's unreserved set.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The header that carries a resumable session's id, as Cloud Storage sends it.
pub(super) const UPLOAD_ID_HEADER: HeaderName = HeaderName::from_static("x-guploader-uploadid");

/// Query parameters whose effect sluice does not provide, with the reason.
const UNSUPPORTED_PARAMS: [(&str, &str); 8] = [
    ("ifGenerationMatch", "sluice cannot check preconditions yet"),
    (
        "ifGenerationNotMatch",
        "sluice cannot check preconditions yet",
    ),
    (
        "ifMetagenerationMatch",
        "sluice cannot check preconditions yet",
    ),
    (
        "ifMetagenerationNotMatch",
        "sluice cannot check preconditions yet",
    ),
    // google-cloud-storage 3.17 spells it with a capital G in uploads.
    (
        "ifMetaGenerationNotMatch",
        "sluice cannot check preconditions yet",
    ),
    ("predefinedAcl", "sluice has no access control"),
    ("kmsKeyName", "sluice does not encrypt objects"),
    (
        "contentEncoding",
        "sluice does not store a content encoding",
    ),
];

/// Returns the value of query parameter `name`.
pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Returns the 400 response for the first parameter or header that requests a feature
/// sluice lacks.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished HTTP response, returned at once"
)]
pub(super) fn reject_unsupported(
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Result<(), HttpResponse> {
    for (name, reason) in UNSUPPORTED_PARAMS {
        if param(params, name).is_some() {
            return Err(invalid(&format!(
                "{name} is not supported: {reason}, so leave it out of the request"
            )));
        }
    }
    if headers.contains_key("x-goog-encryption-key") {
        return Err(invalid(
            "customer-supplied encryption keys are not supported: sluice stores the bytes as \
             they are, so leave out the x-goog-encryption-* headers",
        ));
    }
    Ok(())
}

pub(super) async fn insert_object(
    State(state): State<StorageState>,
    bucket: Result<Path<String>, PathRejection>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    base: BaseUrl,
    request: Request,
) -> HttpResponse {
    let (Path(bucket), Query(params)) = match (bucket, params) {
        (Ok(bucket), Ok(params)) => (bucket, params),
        (Err(rejection), _) => return invalid(&rejection.body_text()),
        (_, Err(rejection)) => return invalid(&rejection.body_text()),
    };
    if let Err(response) = reject_unsupported(&params, request.headers()) {
        return response;
    }
    if let Err(err) = state.storage.bucket(&bucket).await {
        return storage_error(&err);
    }
    let upload = Upload {
        state: &state,
        bucket: &bucket,
        params: &params,
        base: &base,
    };
    match param(&params, "uploadType") {
        Some("media") => upload.media(request).await,
        Some("multipart") => upload.multipart(request).await,
        Some("resumable") => upload.start_resumable(request).await,
        Some(other) => invalid(&format!(
            "invalid uploadType {other:?}: use media, multipart or resumable"
        )),
        None => invalid(
            "uploadType is missing: add uploadType=media, multipart or resumable to the query",
        ),
    }
}

/// One upload request, with what every kind of upload needs.
struct Upload<'a> {
    state: &'a StorageState,
    bucket: &'a str,
    params: &'a [(String, String)],
    base: &'a BaseUrl,
}

impl Upload<'_> {
    async fn media(&self, request: Request) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = match read_to_limit(&parts.headers, body, self.state.max_upload_bytes).await {
            Ok(bytes) => bytes,
            Err(err) => return self.body_error(err),
        };
        let object = NewObject {
            content_type,
            ..NewObject::default()
        };
        self.store(object, None, bytes).await
    }

    async fn multipart(&self, request: Request) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let boundary = match multipart_related::boundary(content_type) {
            Ok(boundary) => boundary,
            Err(message) => return invalid(&message),
        };
        let body = match read_to_limit(&parts.headers, body, self.state.max_upload_bytes).await {
            Ok(bytes) => bytes,
            Err(err) => return self.body_error(err),
        };
        let (object, media_type, bytes) = match self.read_multipart(&body, &boundary) {
            Ok(read) => read,
            Err(message) => return invalid(&message),
        };
        self.store(object, media_type, bytes).await
    }

    /// Returns the object resource, the media part's content type and its bytes.
    fn read_multipart(
        &self,
        body: &Bytes,
        boundary: &str,
    ) -> Result<(NewObject, Option<String>, Bytes), String> {
        let parts = multipart_related::parse(body, boundary)?;
        let [metadata, media] = parts.as_slice() else {
            return Err(format!(
                "a multipart upload has two parts, the JSON metadata and then the bytes, but \
                 this one has {}",
                parts.len()
            ));
        };
        let resource: Value = serde_json::from_slice(metadata.body)
            .map_err(|err| format!("the first part is not valid JSON metadata: {err}"))?;
        let object = NewObject::from_json(&resource, self.bucket)?;
        Ok((
            object,
            media.content_type.clone(),
            body.slice_ref(media.body),
        ))
    }

    async fn start_resumable(&self, request: Request) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let total =
            match header("x-upload-content-length").map(str::parse::<u64>) {
                None => None,
                Some(Ok(total)) => Some(total),
                Some(Err(_)) => return invalid(
                    "invalid X-Upload-Content-Length: send the object's size as a decimal number \
                     of bytes, or leave the header out",
                ),
            };
        let limit = self.state.max_upload_bytes;
        if total.is_some_and(|total| total > limit) {
            return too_large(limit);
        }
        let upload_content_type = header("x-upload-content-type").map(str::to_owned);
        let body = match read_to_limit(&parts.headers, body, MAX_RESOURCE_BYTES).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return invalid(&format!(
                    "the object metadata is larger than {MAX_RESOURCE_BYTES} bytes: send less \
                     custom metadata"
                ))
            }
            Err(err) => return self.body_error(err),
        };
        let mut object = if body.is_empty() {
            NewObject::default()
        } else {
            let parsed = serde_json::from_slice::<Value>(&body)
                .map_err(|err| format!("the body is not valid JSON metadata: {err}"))
                .and_then(|resource| NewObject::from_json(&resource, self.bucket));
            match parsed {
                Ok(object) => object,
                Err(message) => return invalid(&message),
            }
        };
        if object.content_type.is_none() {
            object.content_type = upload_content_type;
        }
        match self.object_name(object.name.as_deref()) {
            Ok(name) => object.name = Some(name),
            Err(response) => return response,
        }
        let sessions = &self.state.sessions;
        let id = match sessions.create(self.bucket, object, total).await {
            Ok(id) => id,
            Err(err) => return session_error(&err),
        };
        debug!(bucket = %self.bucket, upload_id = %id, "resumable upload started");
        let location = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&upload_id={id}",
            self.base.root(),
            utf8_percent_encode(self.bucket, PATH_SEGMENT),
        );
        let mut response = axum::http::StatusCode::OK.into_response();
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(LOCATION, location);
        }
        if let Ok(id) = HeaderValue::from_str(&id) {
            headers.insert(UPLOAD_ID_HEADER, id);
        }
        response
    }

    /// Returns the object's name from the `name` parameter or the resource, which must agree
    /// when both give one.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the finished HTTP response, returned at once"
    )]
    fn object_name(&self, from_resource: Option<&str>) -> Result<String, HttpResponse> {
        match (param(self.params, "name"), from_resource) {
            (Some(query), Some(resource)) if query != resource => Err(invalid(&format!(
                "the name parameter {query:?} and the metadata's name {resource:?} differ: give \
                 the object's name once, or the same in both"
            ))),
            (Some(name), _) | (None, Some(name)) => Ok(name.to_owned()),
            (None, None) => Err(invalid(
                "the object name is missing: add name=NAME to the query or \"name\" to the \
                 metadata",
            )),
        }
    }

    /// Checks and stores the uploaded bytes. `media_type` is the content type that the bytes
    /// came with, used when the resource gives none.
    async fn store(
        &self,
        mut object: NewObject,
        media_type: Option<String>,
        bytes: Bytes,
    ) -> HttpResponse {
        let name = match self.object_name(object.name.as_deref()) {
            Ok(name) => name,
            Err(response) => return response,
        };
        if let Err(message) = object.verify(&Checksums::of(&bytes)) {
            return invalid(&message);
        }
        let content_type = object.content_type.take().or(media_type);
        store_object(
            self.state,
            self.bucket,
            &name,
            bytes.into(),
            content_type,
            object,
            self.base,
        )
        .await
    }

    fn body_error(&self, err: BodyError) -> HttpResponse {
        match err {
            BodyError::TooLarge => too_large(self.state.max_upload_bytes),
            BodyError::Read(message) => {
                invalid(&format!("the request body could not be read: {message}"))
            }
        }
    }
}

/// Stores an object whose checksums were checked, and returns its resource.
pub(super) async fn store_object(
    state: &StorageState,
    bucket: &str,
    name: &str,
    bytes: Vec<u8>,
    content_type: Option<String>,
    object: NewObject,
    base: &BaseUrl,
) -> HttpResponse {
    let stored = state
        .storage
        .put(bucket, name, bytes, content_type, object.metadata)
        .await;
    match stored {
        Ok(object) => {
            debug!(bucket = %bucket, object = ?object.name, generation = object.generation, "object uploaded");
            Json(object_json(&object, base)).into_response()
        }
        Err(err) => storage_error(&err),
    }
}

/// Returns 413 for an upload over the limit.
pub(super) fn too_large(limit: u64) -> HttpResponse {
    payload_too_large(&format!(
        "the upload is larger than the server's limit of {limit} bytes per object: upload a \
         smaller object, or restart the server with a larger --max-upload-bytes or [limits] \
         max_upload_bytes"
    ))
}
