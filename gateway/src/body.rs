//! Reading a request body within the limit, so that a body of any size gets
//! its answer.
//!
//! Refusing a large body before reading it (warp's `content_length_limit`)
//! makes hyper close the connection with the body still arriving: the
//! kernel then resets it, and the client sees a reset instead of `413`.
//! Here the answer goes out at once, and what is left of the body is read
//! and thrown away in the background, so the connection closes cleanly.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use shared::protocol::ApiError;

/// How much of an over-long body is read and thrown away, and for how
/// long, before the connection is closed anyway.
const DRAIN_BYTES: u64 = 1 << 30;
const DRAIN_TIME: Duration = Duration::from_secs(60);

/// Why a body was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is over {0} bytes")]
    TooLarge(u64),
    #[error("the body could not be read")]
    Broken,
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge(limit) => {
                ApiError::too_large(format!("body is over {} KiB", limit / 1024))
            }
            BodyError::Broken => ApiError::bad_request(err.to_string()),
        }
    }
}

/// The whole body when it is at most `limit` bytes.
///
/// # Errors
/// [`BodyError::TooLarge`] as soon as the declared length or the bytes
/// read pass `limit` (the rest is drained in the background);
/// [`BodyError::Broken`] when the client breaks off.
pub async fn read<S, B>(declared: Option<u64>, limit: u64, mut body: S) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf + Send,
{
    if declared.is_some_and(|n| n > limit) {
        drain(body);
        return Err(BodyError::TooLarge(limit));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Broken)?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            drain(body);
            return Err(BodyError::TooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.put_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Reads the rest of a refused body and throws it away.
fn drain<S, B>(mut body: S)
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf + Send,
{
    tokio::spawn(async move {
        let mut read = 0u64;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(chunk)) = body.next().await {
                read += chunk.remaining() as u64;
                if read > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}
