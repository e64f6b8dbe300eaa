//! The WebSocket upgrade of `GET /v1/ws`, done here rather than with
//! warp's `ws()` filter, which leaves tungstenite's buffers at their
//! defaults: a 128 KiB read buffer per connection, zeroed on every read.
//! That made an idle connection cost over 128 KiB and put `memset` at the
//! top of the gateway's profile under load. Frames are also written from
//! shared bytes ([`Frame`]): one serialized event serves every recipient,
//! where warp's `Message::text` takes a `String` per recipient.

use std::future::Future;

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

/// An accepted connection.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes read from the socket at once, and the read buffer every
/// connection keeps while idle. Client frames are small (a send is about
/// 200 bytes); a larger frame is read in several goes. 4 KiB here was the
/// largest single part of an idle connection.
const READ_CHUNK: usize = 512;

/// Bytes of frames gathered before a write to the socket; a flush writes
/// the rest. The writer feeds every queued frame, then flushes: one system
/// call for many frames under load.
const WRITE_CHUNK: usize = 16 * 1024;

/// An upgrade request, ready to be accepted.
pub struct Upgrade {
    key: String,
    on_upgrade: Option<OnUpgrade>,
}

/// Matches a WebSocket upgrade request (RFC 6455, version 13).
pub fn upgrade() -> impl Filter<Extract = (Upgrade,), Error = Rejection> + Clone {
    warp::header::<String>("connection")
        .and_then(|connection: String| async move {
            let upgrade = connection
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
            if upgrade {
                Ok(())
            } else {
                Err(warp::reject::reject())
            }
        })
        .untuple_one()
        .and(warp::header::exact_ignore_case("upgrade", "websocket"))
        .and(warp::header::exact("sec-websocket-version", "13"))
        .and(warp::header::<String>("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
        .map(|key, on_upgrade| Upgrade { key, on_upgrade })
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and, once the connection is
    /// upgraded, spawns the future `serve` makes of the socket as a task of
    /// its own. `max_frame` bounds a client's frame and message.
    ///
    /// Spawned, not awaited here: the connection's one long-lived task is
    /// then that future alone, without this upgrade's state around it.
    pub fn accept<F, U>(self, max_frame: usize, serve: F) -> Response
    where
        F: FnOnce(Socket) -> U + Send + 'static,
        U: Future<Output = ()> + Send + 'static,
    {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            .write_buffer_size(WRITE_CHUNK)
            .max_message_size(Some(max_frame))
            .max_frame_size(Some(max_frame));
        if let Some(on_upgrade) = self.on_upgrade {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let io = TokioIo::new(upgraded);
                        let socket =
                            WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                        tokio::spawn(serve(socket));
                    }
                    Err(err) => tracing::debug!(error = %err, "websocket upgrade failed"),
                }
            });
        }
        let mut response = Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = derive_accept_key(self.key.as_bytes());
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// A serialized server frame as it is queued to connections: text whose
/// bytes are shared, not copied, by every recipient.
pub type Frame = Utf8Bytes;

/// The frame of an event's bytes, checked as UTF-8 once for all its
/// recipients; `None` (logged) for bytes that are not text, which no
/// well-behaved publisher sends.
pub fn frame(bytes: Bytes) -> Option<Frame> {
    match Utf8Bytes::try_from(bytes) {
        Ok(text) => Some(text),
        Err(err) => {
            tracing::warn!(error = %err, "an event is not UTF-8; dropped");
            None
        }
    }
}
