//! Reads the first message of a gRPC request body without consuming it, so that the
//! permission check can see the resource that a request names before the service runs.

use axum::body::{Body, Bytes};
use futures::{stream, StreamExt as _};

/// The gRPC message prefix: a compressed flag byte and a 4-byte big-endian length.
const PREFIX_BYTES: usize = 5;

/// An error reading the first message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FirstMessageError {
    #[error(
        "the request's first message is {length} bytes, over the limit of {limit} bytes \
         ([limits] max_request_bytes); send smaller requests"
    )]
    TooLarge { length: usize, limit: usize },
    #[error("the request's first message is compressed, which this server does not accept")]
    Compressed,
    #[error("reading the request body failed: {0}")]
    Body(#[from] axum::Error),
}

/// Returns the first message of `body`, or `None` when the body ends before a whole message,
/// and a body that replays every byte read.
///
/// # Errors
///
/// Fails when the message is over `limit` bytes or compressed, or the body cannot be read.
pub(crate) async fn read_first_message(
    body: Body,
    limit: usize,
) -> Result<(Option<Bytes>, Body), FirstMessageError> {
    read(body, limit, true).await
}

/// Checks the length prefix of the first message of `body` against `limit`, reading no more
/// than the chunks that carry the prefix, and returns a body that replays them.
///
/// # Errors
///
/// As [`read_first_message`].
pub(crate) async fn check_first_message_length(
    body: Body,
    limit: usize,
) -> Result<Body, FirstMessageError> {
    Ok(read(body, limit, false).await?.1)
}

async fn read(
    body: Body,
    limit: usize,
    whole: bool,
) -> Result<(Option<Bytes>, Body), FirstMessageError> {
    let mut chunks = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut ended = false;
    let message = loop {
        if buffer.len() >= PREFIX_BYTES {
            if buffer[0] != 0 {
                return Err(FirstMessageError::Compressed);
            }
            let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
            if length > limit {
                return Err(FirstMessageError::TooLarge { length, limit });
            }
            if !whole {
                break None;
            }
            if buffer.len() >= PREFIX_BYTES + length {
                break Some(Bytes::copy_from_slice(
                    &buffer[PREFIX_BYTES..PREFIX_BYTES + length],
                ));
            }
        }
        if ended {
            break None;
        }
        match chunks.next().await {
            Some(chunk) => buffer.extend_from_slice(&chunk?),
            None => ended = true,
        }
    };
    let replay = stream::once(async move { Ok::<_, axum::Error>(Bytes::from(buffer)) });
    let body = if ended {
        Body::from_stream(replay)
    } else {
        Body::from_stream(replay.chain(chunks))
    };
    Ok((message, body))
}
