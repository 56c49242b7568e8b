//! The requests to a resumable upload session: `PUT` to the session URL sends bytes or
//! requests the offset, and `DELETE` cancels the session. `json_upload.rs` starts sessions, and
//! `sessions.rs` keeps them.
//!
//! Each PUT's Content-Range (`ranges.rs`) places its bytes in the object. A chunk may repeat
//! bytes the session already has, which are skipped, as after a response the client never
//! received. It may not leave a gap. Until the last byte arrives, the response is 308 with
//! `Range: bytes=0-LAST` for the bytes received so far. The request that completes the
//! object gets the stored object resource, checked against the `crc32c` and `md5Hash` that
//! the session started with and against the request's `x-goog-hash` header. A PUT without
//! Content-Range sends the whole object at once.
//!
//! NOTE: chunks need not be multiples of 256 KiB, as Cloud Storage requires of every chunk
//! but the last, and every byte received counts, where Cloud Storage may keep fewer.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CONTENT_RANGE, RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use futures::StreamExt as _;
use sluice_router::buckets::Checksums;
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tonic::Code;
use tracing::{debug, warn};

use super::body::{content_length, discard};
use super::errors::invalid;
use super::json_upload::{param, store_object, too_large, UPLOAD_ID_HEADER};
use super::links::BaseUrl;
use super::new_object::{parse_goog_hash, verify_checksum};
use super::ranges::{parse_content_range, ChunkRange};
use super::sessions::{Lease, SessionError};
use super::StorageState;
use crate::server::status::rest_error;

type BucketPath = Result<Path<String>, PathRejection>;
type UploadQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Returns the response for a session error.
pub(super) fn session_error(err: &SessionError) -> HttpResponse {
    let code = match err {
        SessionError::NotFound(_) => Code::NotFound,
        SessionError::Busy(_) => Code::Aborted,
        SessionError::TooManySessions(_) | SessionError::SpoolFull { .. } => {
            Code::ResourceExhausted
        }
        SessionError::Io { .. } => {
            warn!(error = %err, "resumable upload failed");
            Code::Internal
        }
    };
    rest_error(code, &err.to_string(), None)
}

/// `PUT /upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id=ID`.
pub(super) async fn put_chunk(
    State(state): State<StorageState>,
    bucket: BucketPath,
    params: UploadQuery,
    base: BaseUrl,
    request: Request,
) -> HttpResponse {
    let mut lease = match checkout(&state, bucket, params) {
        Ok(lease) => lease,
        Err(response) => return response,
    };
    let (parts, body) = request.into_parts();
    let range = match chunk_range(&parts.headers, lease.session().received) {
        Ok(range) => range,
        Err(message) => return invalid(&message),
    };
    let chunk = Chunk {
        state: &state,
        base: &base,
        headers: &parts.headers,
    };
    match range {
        ChunkRange::Query => {
            discard(body).await;
            incomplete(&lease)
        }
        ChunkRange::Finish { total } => {
            discard(body).await;
            chunk.finish_at(lease, total).await
        }
        ChunkRange::Bytes { first, last, total } => {
            if let Err(response) = chunk.check_placement(&mut lease, first, last, total) {
                discard(body).await;
                return response;
            }
            if let Err(response) = chunk.write(&mut lease, first, last, body).await {
                return response;
            }
            if lease.session().total == Some(lease.session().received) {
                chunk.complete(lease).await
            } else {
                incomplete(&lease)
            }
        }
    }
}

/// `DELETE /upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id=ID`: cancels the
/// session and responds 499, as Cloud Storage does.
pub(super) async fn cancel(
    State(state): State<StorageState>,
    bucket: BucketPath,
    params: UploadQuery,
) -> HttpResponse {
    match checkout(&state, bucket, params) {
        Ok(lease) => {
            let message = format!("upload session {:?} was cancelled", lease.id());
            debug!(upload_id = %lease.id(), "resumable upload cancelled");
            lease.end().await;
            rest_error(Code::Cancelled, &message, None)
        }
        Err(response) => response,
    }
}

/// Takes the session that the request names.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished HTTP response, returned at once"
)]
fn checkout(
    state: &StorageState,
    bucket: BucketPath,
    params: UploadQuery,
) -> Result<Lease, HttpResponse> {
    let Path(bucket) = bucket.map_err(|rejection| invalid(&rejection.body_text()))?;
    let Query(params) = params.map_err(|rejection| invalid(&rejection.body_text()))?;
    let id = param(&params, "upload_id").ok_or_else(|| {
        invalid(
            "upload_id is missing: send the bytes to the URL in the Location header of the \
             response that started the resumable upload",
        )
    })?;
    let lease = state
        .sessions
        .checkout(id)
        .map_err(|err| session_error(&err))?;
    if lease.session().bucket != bucket {
        return Err(invalid(&format!(
            "upload session {id:?} uploads to bucket {:?}, not {bucket:?}: use the URL in the \
             Location header unchanged",
            lease.session().bucket
        )));
    }
    Ok(lease)
}

/// Returns the request's Content-Range. Without one, the body is the whole object, which
/// needs a Content-Length and a session that has no bytes yet.
fn chunk_range(headers: &HeaderMap, received: u64) -> Result<ChunkRange, String> {
    if let Some(value) = headers.get(CONTENT_RANGE) {
        let value = value
            .to_str()
            .map_err(|_| "the Content-Range header is not ASCII".to_owned())?;
        return parse_content_range(value);
    }
    if received > 0 {
        return Err(format!(
            "Content-Range is missing, but the session already has {received} bytes: send the \
             rest with Content-Range: bytes {received}-LAST/TOTAL"
        ));
    }
    match content_length(headers) {
        Some(0) => Ok(ChunkRange::Finish { total: 0 }),
        Some(length) => Ok(ChunkRange::Bytes {
            first: 0,
            last: length - 1,
            total: Some(length),
        }),
        None => Err(
            "send Content-Range: bytes FIRST-LAST/TOTAL with each chunk, or Content-Length with \
             a body that is the whole object"
                .to_owned(),
        ),
    }
}

/// Returns 308 with the bytes the session has.
fn incomplete(lease: &Lease) -> HttpResponse {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    let headers = response.headers_mut();
    let received = lease.session().received;
    if received > 0 {
        if let Ok(range) = HeaderValue::from_str(&format!("bytes=0-{}", received - 1)) {
            headers.insert(RANGE, range);
        }
    }
    if let Ok(id) = HeaderValue::from_str(lease.id()) {
        headers.insert(UPLOAD_ID_HEADER, id);
    }
    response
}

/// One PUT to a session.
struct Chunk<'a> {
    state: &'a StorageState,
    base: &'a BaseUrl,
    headers: &'a HeaderMap,
}

impl Chunk<'_> {
    /// Checks that bytes `first` to `last` fit the session: no gap after the bytes received,
    /// the same total as before, within the upload limit and the spool limit. Reserves the
    /// new bytes in the spool.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the finished HTTP response, returned at once"
    )]
    fn check_placement(
        &self,
        lease: &mut Lease,
        first: u64,
        last: u64,
        total: Option<u64>,
    ) -> Result<(), HttpResponse> {
        let session = lease.session();
        let received = session.received;

        if let (Some(known), Some(total)) = (session.total, total) {
            if known != total {
                return Err(invalid(&format!(
                    "the Content-Range gives the object's size as {total} bytes, but the \
                     upload declared {known} before: keep the size the same in every request"
                )));
            }
        }
        if let Some(known) = session.total.or(total) {
            if last >= known {
                return Err(invalid(&format!(
                    "the chunk ends at byte {last}, past the end of the {known}-byte object"
                )));
            }
        }

        if first > received {
            return Err(invalid(&format!(
                "the chunk starts at byte {first}, but the session has only {received} bytes: \
                 query the offset with Content-Range: bytes */* and resume from there"
            )));
        }
        let length = last - first + 1;
        if let Some(declared) = content_length(self.headers).filter(|declared| *declared != length)
        {
            return Err(invalid(&format!(
                "the Content-Range covers {length} bytes, but Content-Length is {declared}: \
                 send exactly the bytes of the range"
            )));
        }
        let limit = self.state.max_upload_bytes;
        if last >= limit || total.is_some_and(|total| total > limit) {
            return Err(too_large(limit));
        }

        let new_bytes = (last + 1).saturating_sub(received);
        lease
            .reserve(new_bytes)
            .map_err(|err| session_error(&err))?;
        if let Some(total) = total {
            lease.session_mut().total = Some(total);
        }
        Ok(())
    }

    /// Appends the body's bytes past those received to the spool file.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the finished HTTP response, returned at once"
    )]
    async fn write(
        &self,
        lease: &mut Lease,
        first: u64,
        last: u64,
        body: Body,
    ) -> Result<(), HttpResponse> {
        let session = lease.session();
        let received = session.received;
        let path = session.path.clone();
        let length = last - first + 1;
        let io_failed = |operation: &'static str| {
            let path = path.clone();
            move |source| {
                session_error(&SessionError::Io {
                    operation,
                    path,
                    source,
                })
            }
        };

        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(io_failed("opened"))?;
        // A request that failed part-way may have left bytes past those received.
        file.set_len(received)
            .await
            .map_err(io_failed("truncated"))?;
        file.seek(std::io::SeekFrom::Start(received))
            .await
            .map_err(io_failed("written"))?;

        let mut skip = received.saturating_sub(first);
        let mut counted: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(data) = stream.next().await {
            let data =
                data.map_err(|err| invalid(&format!("the request body could not be read: {err}")))?;
            counted += data.len() as u64;
            if counted > length {
                return Err(invalid(&format!(
                    "the body is longer than the {length} bytes of its Content-Range: send \
                     exactly the bytes of the range"
                )));
            }
            let skipped = usize::try_from(skip.min(data.len() as u64)).unwrap_or(data.len());
            skip -= skipped as u64;
            file.write_all(&data[skipped..])
                .await
                .map_err(io_failed("written"))?;
        }

        if counted < length {
            return Err(invalid(&format!(
                "the body has {counted} bytes, fewer than the {length} of its Content-Range: \
                 send exactly the bytes of the range"
            )));
        }
        file.flush().await.map_err(io_failed("written"))?;
        let session = lease.session_mut();
        session.received = session.received.max(last + 1);
        Ok(())
    }

    /// Handles `bytes */TOTAL`: completes the object when the session has all `total` bytes.
    async fn finish_at(&self, mut lease: Lease, total: u64) -> HttpResponse {
        let session = lease.session();
        let received = session.received;
        if let Some(known) = session.total.filter(|known| *known != total) {
            return invalid(&format!(
                "the Content-Range gives the object's size as {total} bytes, but the upload \
                 declared {known} before: keep the size the same in every request"
            ));
        }
        if total != received {
            return invalid(&format!(
                "the Content-Range ends the upload at {total} bytes, but the session has \
                 {received}: send the missing bytes first"
            ));
        }
        lease.session_mut().total = Some(total);
        self.complete(lease).await
    }

    /// Checks the complete object's bytes, stores the object and ends the session.
    async fn complete(&self, lease: Lease) -> HttpResponse {
        let session = lease.session();
        let path = session.path.clone();
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(source) => {
                let err = SessionError::Io {
                    operation: "read",
                    path,
                    source,
                };
                lease.end().await;
                return session_error(&err);
            }
        };

        // Hashing up to the upload limit takes milliseconds, too long for a runtime thread.
        let hashed = tokio::task::spawn_blocking(move || (Checksums::of(&bytes), bytes)).await;
        let Ok((checksums, bytes)) = hashed else {
            lease.end().await;
            return rest_error(Code::Unavailable, "the server is shutting down", None);
        };
        if let Err(message) = self.verify(lease.session(), &checksums) {
            lease.end().await;
            return invalid(&message);
        }

        let session = lease.session();
        let object = session.object.clone();
        let name = object.name.clone().unwrap_or_default();
        let content_type = object.content_type.clone();
        let bucket = session.bucket.clone();
        debug!(upload_id = %lease.id(), bytes = bytes.len(), "resumable upload complete");
        // The session ends whatever the outcome, so a failed store needs a new upload.
        lease.end().await;
        store_object(
            self.state,
            &bucket,
            &name,
            bytes,
            content_type,
            object,
            self.base,
        )
        .await
    }

    /// Checks the object's checksums against those the session started with and those of
    /// the request's `x-goog-hash` header.
    fn verify(
        &self,
        session: &super::sessions::Session,
        checksums: &Checksums,
    ) -> Result<(), String> {
        session.object.verify(checksums)?;
        let header = self
            .headers
            .get("x-goog-hash")
            .and_then(|value| value.to_str().ok());
        if let Some(header) = header {
            let (crc32c, md5) = parse_goog_hash(header);
            verify_checksum("CRC32C", crc32c.as_deref(), &checksums.crc32c)?;
            verify_checksum("MD5", md5.as_deref(), &checksums.md5_hash)?;
        }
        Ok(())
    }
}
