//! Request bodies under the upload limit.
//!
//! A body larger than the limit gets 413 after the rest of it is read and discarded (up to
//! [`MAX_DISCARDED_BYTES`]). Without that, the server would close the connection while the
//! client still sends, and the client's TCP stack could drop the response when the reset
//! arrives.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::header::{CONTENT_LENGTH, EXPECT};
use axum::http::HeaderMap;
use futures::{Stream, StreamExt as _};

/// How many bytes past the limit an oversized upload may still send, to be discarded, before
/// the server responds with 413 and closes the connection. Past this, the client may see a reset
/// connection and no 413.
pub(super) const MAX_DISCARDED_BYTES: u64 = 64 * 1024 * 1024;

/// A failure to read a body under the limit.
#[derive(Debug)]
pub(super) enum BodyError {
    /// The body passed the limit.
    TooLarge,
    /// The connection failed while the body was read.
    Read(String),
}

/// Reads a whole body of at most `limit` bytes into memory.
pub(super) async fn read_to_limit(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, BodyError> {
    if reject_declared_length(headers, limit) {
        discard_unless_expecting(headers, body, limit).await;
        return Err(BodyError::TooLarge);
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let mut stream = LimitedBody::new(body, limit, exceeded.clone());
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(_) if exceeded.load(Ordering::Relaxed) => return Err(BodyError::TooLarge),
            Err(err) => return Err(BodyError::Read(err.to_string())),
        }
    }
    Ok(Bytes::from(bytes))
}

/// Returns whether the Content-Length header already passes `limit`.
pub(super) fn reject_declared_length(headers: &HeaderMap, limit: u64) -> bool {
    content_length(headers).is_some_and(|length| length > limit)
}

/// Discards a body whose declared length passed `limit`, unless the client waits for
/// "100 Continue" and so has not sent it, or the excess is over [`MAX_DISCARDED_BYTES`].
pub(super) async fn discard_unless_expecting(headers: &HeaderMap, body: Body, limit: u64) {
    let excess = content_length(headers).unwrap_or(0).saturating_sub(limit);
    if !headers.contains_key(EXPECT) && excess <= MAX_DISCARDED_BYTES {
        discard(body).await;
    }
}

/// Returns the Content-Length header's value, if it is a valid number.
pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads and drops a request body, up to [`MAX_DISCARDED_BYTES`].
pub(super) async fn discard(body: Body) {
    let mut stream = body.into_data_stream();
    let mut discarded: u64 = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        discarded += chunk.len() as u64;
        if discarded > MAX_DISCARDED_BYTES {
            break;
        }
    }
}

/// A request body that ends with an error once more than `remaining` bytes came through.
///
/// Before it returns the error, it reads and drops the rest of the body, up to
/// [`MAX_DISCARDED_BYTES`], and sets `exceeded`, so that the handler can tell the limit from
/// a malformed body.
pub(super) struct LimitedBody {
    inner: BodyDataStream,
    /// Bytes still allowed.
    remaining: u64,
    /// Bytes dropped after the limit was passed.
    discarded: u64,
    exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    pub(super) fn new(body: Body, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner: body.into_data_stream(),
            remaining: limit,
            discarded: 0,
            exceeded,
        }
    }
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let chunk = match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(err))) => {
                    return Poll::Ready(Some(Err(std::io::Error::other(err))))
                }
                Poll::Ready(None) if this.exceeded.load(Ordering::Relaxed) => {
                    return Poll::Ready(Some(Err(limit_error())))
                }
                Poll::Ready(None) => return Poll::Ready(None),
            };
            let length = chunk.len() as u64;
            if !this.exceeded.load(Ordering::Relaxed) && length <= this.remaining {
                this.remaining -= length;
                return Poll::Ready(Some(Ok(chunk)));
            }
            this.exceeded.store(true, Ordering::Relaxed);
            this.discarded += length;
            if this.discarded > MAX_DISCARDED_BYTES {
                return Poll::Ready(Some(Err(limit_error())));
            }
        }
    }
}

fn limit_error() -> std::io::Error {
    std::io::Error::other("the request body is larger than the upload limit")
}
