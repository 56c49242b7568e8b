//! `POST /upload/{bucket}`: uploads one or more files as multipart/form-data.
//!
//! The form's parts are read in order. A `file` part is one object, with the part's
//! Content-Type as the object's content type (`application/octet-stream` without one). Its
//! name is the value of the `name` part right before it, or else the part's filename. Every
//! part is read and every name checked before the first object is stored, so a request with
//! one invalid name stores nothing. The response is `{"objects": [object resources]}`.
//!
//! The whole body may be at most `max_upload_bytes`. A larger one gets 413, after the rest of
//! the body is read and discarded, as `body.rs` describes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest as _, Multipart, Path, Request, State};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::Json;
use serde_json::json;
use sluice_router::buckets::{validate_object_name, BucketError};
use tonic::Code;
use tracing::{debug, warn};

use super::body::{discard_unless_expecting, reject_declared_length, LimitedBody};
use super::errors::storage_error;
use super::links::{object_json, BaseUrl};
use super::StorageState;
use crate::server::status::{payload_too_large, rest_error, storage_code};

/// One file of the form, read and named.
struct UploadedFile {
    name: String,
    content_type: Option<String>,
    bytes: Bytes,
}

/// A failure to read the form.
enum FormError {
    /// The body passed the upload limit.
    TooLarge,
    /// An invalid form, with a message that describes the problem and its fix.
    Invalid(String),
}

pub(super) async fn upload(
    State(state): State<StorageState>,
    bucket: Result<Path<String>, PathRejection>,
    base: BaseUrl,
    request: Request,
) -> HttpResponse {
    let Path(bucket) = match bucket {
        Ok(bucket) => bucket,
        Err(rejection) => return rest_error(Code::InvalidArgument, &rejection.body_text(), None),
    };
    let limit = state.max_upload_bytes;
    let files = match read_form(request, limit).await {
        Ok(files) => files,
        Err(FormError::TooLarge) => return too_large(limit),
        Err(FormError::Invalid(message)) => {
            return rest_error(Code::InvalidArgument, &message, None)
        }
    };
    if let Err(err) = state.storage.bucket(&bucket).await {
        return storage_error(&err);
    }

    let mut objects = Vec::with_capacity(files.len());
    for file in files {
        let name = file.name;
        let stored = state
            .storage
            .put(
                &bucket,
                &name,
                file.bytes.into(),
                file.content_type,
                BTreeMap::new(),
            )
            .await;
        match stored {
            Ok(object) => {
                debug!(bucket = %bucket, object = ?object.name, generation = object.generation, "object uploaded");
                objects.push(object_json(&object, &base));
            }
            Err(err) if objects.is_empty() => return storage_error(&err),
            Err(err) => {
                warn!(bucket = %bucket, object = ?name, stored = objects.len(), error = %err, "upload failed after storing some files");
                let message = format!(
                    "{err}; the {} files before this one were stored",
                    objects.len()
                );
                return rest_error(storage_code(&err), &message, None);
            }
        }
    }
    Json(json!({ "objects": objects })).into_response()
}

fn too_large(limit: u64) -> HttpResponse {
    payload_too_large(&format!(
        "the upload is larger than the server's limit of {limit} bytes per request: send \
         fewer or smaller files per request, or restart the server with a larger \
         --max-upload-bytes or [limits] max_upload_bytes"
    ))
}

/// Reads every part of the form within `limit` bytes, and checks the object names.
async fn read_form(request: Request, limit: u64) -> Result<Vec<UploadedFile>, FormError> {
    let (parts, body) = request.into_parts();
    if reject_declared_length(&parts.headers, limit) {
        discard_unless_expecting(&parts.headers, body, limit).await;
        return Err(FormError::TooLarge);
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let body = Body::from_stream(LimitedBody::new(body, limit, exceeded.clone()));
    let mut form = Multipart::from_request(Request::from_parts(parts, body), &())
        .await
        .map_err(|rejection| {
            FormError::Invalid(format!(
                "{}: send the files as multipart/form-data, one `file` part per file",
                rejection.body_text()
            ))
        })?;

    let result = read_parts(&mut form).await;
    if exceeded.load(Ordering::Relaxed) {
        return Err(FormError::TooLarge);
    }
    result
}

async fn read_parts(form: &mut Multipart) -> Result<Vec<UploadedFile>, FormError> {
    let invalid_body = |err: axum::extract::multipart::MultipartError| {
        FormError::Invalid(format!("invalid multipart body: {}", err.body_text()))
    };
    let mut files = Vec::new();
    let mut pending_name: Option<String> = None;
    while let Some(field) = form.next_field().await.map_err(invalid_body)? {
        match field.name() {
            Some("name") => {
                if pending_name.is_some() {
                    return Err(FormError::Invalid(
                        "two `name` parts in a row: a `name` part names the `file` part right \
                         after it"
                            .to_owned(),
                    ));
                }
                let bytes = field.bytes().await.map_err(invalid_body)?;
                let name = String::from_utf8(bytes.to_vec()).map_err(|err| {
                    FormError::Invalid(format!(
                        "the `name` part is not valid UTF-8 (invalid byte at offset {}): \
                         object names are UTF-8, so send the name UTF-8 encoded",
                        err.utf8_error().valid_up_to()
                    ))
                })?;
                pending_name = Some(name);
            }
            Some("file") => {
                let number = files.len() + 1;
                let name = match pending_name.take() {
                    Some(name) => name,
                    None => field
                        .file_name()
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            FormError::Invalid(format!(
                                "file #{number} has no name: send a `name` part before it, or a \
                             filename in its Content-Disposition"
                            ))
                        })?,
                };
                if let Err(rule) = validate_object_name(&name) {
                    let err = BucketError::InvalidName { name, rule };
                    return Err(FormError::Invalid(format!("file #{number}: {err}")));
                }
                let content_type = field.content_type().map(str::to_owned);
                let bytes = field.bytes().await.map_err(invalid_body)?;
                files.push(UploadedFile {
                    name,
                    content_type,
                    bytes,
                });
            }
            other => {
                return Err(FormError::Invalid(format!(
                    "unknown form part {:?}: send `file` parts, each optionally after a `name` \
                     part",
                    other.unwrap_or("")
                )));
            }
        }
    }
    if pending_name.is_some() {
        return Err(FormError::Invalid(
            "the last `name` part has no `file` part after it: send the file right after its \
             name"
                .to_owned(),
        ));
    }
    if files.is_empty() {
        return Err(FormError::Invalid(
            "the form has no `file` part: send each file as a part named `file`".to_owned(),
        ));
    }
    Ok(files)
}
