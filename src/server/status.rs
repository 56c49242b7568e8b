//! The one place where service errors become gRPC status codes, and where status codes
//! become HTTP statuses with Google's JSON error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::Json;
use serde_json::{json, Value};
use sluice_router::buckets::BucketError;
use sluice_router::deliver::BrokerError;
use sluice_router::storage::StorageError;
use sluice_router::store::StoreError;
use tonic::{Code, Status};
use tracing::warn;

use super::names;

/// NOT_FOUND for a topic, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn topic_not_found(name: &str) -> Status {
    Status::not_found(format!("Topic not found: {}", names::topic_resource(name)))
}

/// NOT_FOUND for a subscription, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn subscription_not_found(name: &str) -> Status {
    Status::not_found(format!(
        "Subscription does not exist: {}",
        names::subscription_resource(name)
    ))
}

/// NOT_FOUND for a snapshot, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn snapshot_not_found(name: &str) -> Status {
    Status::not_found(format!(
        "Snapshot does not exist: {}",
        names::snapshot_resource(name)
    ))
}

/// ALREADY_EXISTS for a topic, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn topic_exists(name: &str) -> Status {
    Status::already_exists(format!(
        "Topic already exists: {}",
        names::topic_resource(name)
    ))
}

/// ALREADY_EXISTS for a subscription, worded as Pub/Sub words it, with the full resource
/// name.
pub(crate) fn subscription_exists(name: &str) -> Status {
    Status::already_exists(format!(
        "Subscription already exists: {}",
        names::subscription_resource(name)
    ))
}

/// ALREADY_EXISTS for a snapshot, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn snapshot_exists(name: &str) -> Status {
    Status::already_exists(format!(
        "Snapshot already exists: {}",
        names::snapshot_resource(name)
    ))
}

/// Maps a store error to the status Pub/Sub would return for it.
pub(crate) fn from_store(err: &StoreError) -> Status {
    match err {
        StoreError::TopicNotFound(name) => topic_not_found(name),
        StoreError::SubscriptionNotFound(name) => subscription_not_found(name),
        StoreError::SubscriptionConflict { .. } => Status::already_exists(err.to_string()),
        StoreError::InvalidFilter { .. } => Status::invalid_argument(err.to_string()),
        StoreError::SnapshotNotFound(name) => snapshot_not_found(name),
        StoreError::SnapshotExists(name) => snapshot_exists(name),
        // Google's emulator returns FAILED_PRECONDITION with this wording.
        StoreError::SnapshotTopicMismatch {
            snapshot_topic,
            topic,
            ..
        } => Status::failed_precondition(format!(
            "The subscription's topic {} is different from that of the snapshot {}; they \
             must match in order for Seek to work",
            names::topic_resource(topic),
            names::topic_resource(snapshot_topic)
        )),
        StoreError::Closed => {
            Status::unavailable("the server is shutting down; retry against a running server")
        }
        StoreError::DiskFull { .. } | StoreError::Overloaded { .. } => {
            Status::resource_exhausted(err.to_string())
        }
        StoreError::Stalled { .. } => Status::unavailable(err.to_string()),
        StoreError::Database(_) if err.is_disk_full() => Status::resource_exhausted(format!(
            "{err}: the disk of the data directory is full; free disk space, then retry"
        )),
        StoreError::Database(_) | StoreError::Corrupt { .. } | StoreError::Lost { .. } => {
            Status::internal(err.to_string())
        }
        StoreError::Unreachable { .. } | StoreError::JetStream { .. } => {
            Status::unavailable(err.to_string())
        }
        // These occur only while connecting at start-up, which a request never waits for.
        StoreError::CredentialsFile { .. } | StoreError::InvalidUrl { .. } => {
            Status::unavailable(err.to_string())
        }
        StoreError::StreamNotCreated { .. } => Status::failed_precondition(err.to_string()),
        StoreError::Unsupported { .. } => Status::unimplemented(err.to_string()),
        StoreError::TooLarge { .. } => Status::invalid_argument(err.to_string()),
    }
}

/// Maps a broker error to a status.
pub(crate) fn from_broker(err: &BrokerError) -> Status {
    match err {
        BrokerError::SubscriptionNotFound(name) => subscription_not_found(name),
        BrokerError::InvalidAckId(_) => Status::invalid_argument(err.to_string()),
        BrokerError::Store(err) => from_store(err),
    }
}

/// Returns the gRPC code of a storage error.
pub(crate) fn storage_code(err: &StorageError) -> Code {
    match err {
        StorageError::Bucket(err) => match err {
            BucketError::InvalidName { .. }
            | BucketError::InvalidBucketName { .. }
            | BucketError::InvalidNotification { .. } => Code::InvalidArgument,
            BucketError::BucketNotFound { .. }
            | BucketError::NotFound { .. }
            | BucketError::NotificationNotFound { .. } => Code::NotFound,
            BucketError::BucketExists { .. } => Code::AlreadyExists,
            // A retry fails the same way until versions are deleted or the limit is raised.
            BucketError::BucketNotEmpty { .. } | BucketError::IndexFull { .. } => {
                Code::FailedPrecondition
            }
            BucketError::Io { .. } | BucketError::Corrupt { .. } => Code::Internal,
            BucketError::Unavailable { .. } => Code::Unavailable,
        },
        // The change was stored, so a retry would repeat it. INTERNAL shows the client that
        // the server, not the request, is at fault.
        StorageError::Notify { .. } => Code::Internal,
        StorageError::Interrupted(_) => Code::Unavailable,
    }
}

/// Returns a storage error as Google's JSON error body with its HTTP status, and logs the
/// errors that are the server's fault.
pub(crate) fn storage_http_error(err: &StorageError) -> HttpResponse {
    // Buckets are created only from the configuration, so point there.
    if let StorageError::Bucket(BucketError::BucketNotFound { bucket }) = err {
        let message = format!(
            "bucket {bucket:?} not found: declare it in the configuration with [[buckets]] \
             name = {bucket:?} and restart the server"
        );
        return rest_error(Code::NotFound, &message, None);
    }
    let code = storage_code(err);
    if matches!(code, Code::Internal | Code::Unavailable) {
        warn!(error = %err, "storage request failed");
    }
    rest_error(code, &err.to_string(), None)
}

/// Returns Google's JSON error: `{"error": {"code": HTTP_STATUS, "message", "status": NAME}}`
/// with the HTTP status that Google maps the gRPC code to.
pub(crate) fn rest_error(code: Code, message: &str, detail: Option<Value>) -> HttpResponse {
    let (http_status, name) = http_status_of(code);
    error_response(http_status, name, message, detail)
}

/// Returns HTTP 413 with Google's JSON error, for a request body over a size limit.
///
/// No gRPC code maps to 413. The body names RESOURCE_EXHAUSTED, the code that gRPC itself
/// uses for a message larger than the receiver's limit.
pub(crate) fn payload_too_large(message: &str) -> HttpResponse {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RESOURCE_EXHAUSTED",
        message,
        None,
    )
}

fn error_response(
    http_status: StatusCode,
    name: &str,
    message: &str,
    detail: Option<Value>,
) -> HttpResponse {
    let mut error = json!({
        "code": http_status.as_u16(),
        "message": message,
        "status": name,
    });
    if let Some(detail) = detail {
        error["details"] = Value::Array(vec![detail]);
    }
    (http_status, Json(json!({ "error": error }))).into_response()
}

/// Returns the gRPC code of an HTTP status, the reverse of [`http_status_of`] where several
/// codes share a status.
pub(crate) fn code_of_http(http_status: StatusCode) -> Code {
    match http_status.as_u16() {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        413 | 429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// Returns the HTTP status and the `google.rpc.Code` name of a gRPC code, as
/// `google/rpc/code.proto` maps them.
fn http_status_of(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "OK"),
        Code::Cancelled => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "CANCELLED",
        ),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION"),
        Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    }
}
