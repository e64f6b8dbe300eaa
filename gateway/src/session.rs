//! One WebSocket connection, served by one task: it reads the client's
//! frames in the order they arrive, writes what its queue holds, and keeps
//! the hub entry through which room events reach that queue.
//!
//! One task rather than a reader and a writer: an idle connection is then
//! one task's header and one future, and waking it for an event polls the
//! queue first (`biased`), so the branches that wait on the client are
//! not touched on the fan-out path. A write that cannot complete at once
//! (the client reads slowly) holds the client's next frame back until it
//! does: the same backpressure as a full queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{Sink, SinkExt, StreamExt};
use shared::protocol::{event, ApiError, ServerFrame, User};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use uuid::Uuid;

use crate::app::App;
use crate::auth::Identity;
use crate::conn::{close, Conn};
use crate::dispatch::{error_frame, Handler, PendingReply, Reply};
use crate::outbox::{self, Next, Receiver};
use crate::websocket::{Frame, Socket};
use crate::{membership, requests};

/// Serves one upgraded connection until it closes; `permit` is its place
/// under the gateway's connection limit, given back when it closes.
///
/// This future lives as long as the connection, idle or not, so what it
/// awaits only now and then (the sign-in's reads, a request) is boxed:
/// held inline, the largest of those futures would size every idle
/// connection's state.
pub fn serve(
    socket: Socket,
    app: Arc<App>,
    identity: Identity,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> {
    // Made before the connection's future, which would keep the identity
    // for its whole life.
    let (tx, rx) = outbox::outbox(app.limits.queue);
    let conn = Conn::new(app.next_conn_id(), identity.user.id, tx);
    let expires_at = identity.expires_at;
    let setup = Box::pin(set_up(Arc::clone(&app), conn.clone(), identity));
    let mut socket = socket;
    // An async block, not an async fn: an async fn's arguments are moved
    // into locals and take their room twice (the socket is 328 bytes).
    async move {
        run(&mut socket, &app, &conn, &rx, setup, expires_at).await;
        drop(permit);
    }
}

/// The connected user's profile and rooms, and the connection in the hub;
/// `None` (the connection told why) when the user's rooms cannot be read.
async fn set_up(app: Arc<App>, conn: Conn, identity: Identity) -> Option<Arc<User>> {
    let user = Arc::new(match requests::profile_at_connect(&app, &identity).await {
        Ok(profile) => profile,
        Err(_) => identity.user.clone(),
    });
    let loaded_at = std::time::Instant::now();
    let stored = match membership::rooms_of(&app, user.id).await {
        Ok(rooms) => rooms,
        Err(err) => {
            tracing::warn!(error = %err, "cannot load the rooms of a connecting user");
            conn.close(close::TRY_AGAIN_LATER);
            return None;
        }
    };
    if let Err(err) = requests::announce_user(&app, &user).await {
        // Not fatal: the user can chat; only being found by id waits.
        tracing::warn!(error = %err, "could not make a connecting user known");
    }
    let (mut rooms, first) = app
        .hub
        .connect(conn.clone(), &user, stored, loaded_at)
        .await;
    // A stop that came while this connection was not in the hub yet.
    if app.stop.is_cancelled() {
        conn.close(close::SERVER_RESTART);
    }
    rooms.sort();
    let ready = ServerFrame::new(
        event::SESSION_READY,
        serde_json::json!({"user": &user, "rooms": rooms}),
    );
    conn.reply(ready.to_json().into());
    if let Some(presence) = app.presence.get() {
        if first {
            presence.connected(&user, &rooms, conn.id).await;
        } else {
            presence.greet(user.id, conn.id, &rooms);
        }
    }
    Some(user)
}

async fn run(
    socket: &mut Socket,
    app: &App,
    conn: &Conn,
    rx: &Receiver,
    setup: Pin<Box<dyn Future<Output = Option<Arc<User>>> + Send>>,
    expires_at: i64,
) {
    let Some(user) = setup.await else {
        finish(socket, rx).await;
        return;
    };
    let mut handler = Handler::new(app, user, conn, expires_at);
    let mut replies = Replies::default();
    let healthy = serve_frames(socket, rx, conn, &mut handler, &mut replies).await;
    // Sends already published are answered, also when the gateway stops.
    while let Some((reply, temp_id)) = replies.next().await {
        queue_reply(conn, reply, temp_id);
    }
    Box::pin(handler.leave()).await;
    let user = Arc::clone(&handler.user);
    let rooms = app.hub.rooms_of(user.id).unwrap_or_default();
    if app.hub.disconnect(conn) {
        if let Some(presence) = app.presence.get() {
            presence.disconnected(User::clone(&user), rooms);
        }
    }
    if healthy {
        finish(socket, rx).await;
    }
}

/// The connection's life once set up: writes what is queued, handles the
/// client's frames, answers sends as their PubAcks come, until the client
/// goes, something ends the connection, or the socket fails (then false).
async fn serve_frames(
    socket: &mut Socket,
    rx: &Receiver,
    conn: &Conn,
    handler: &mut Handler<'_>,
    replies: &mut Replies,
) -> bool {
    let timer = tokio::time::sleep_until(handler.next_deadline());
    tokio::pin!(timer);
    loop {
        let deadline = handler.next_deadline();
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let reading = replies.len() < MAX_IN_FLIGHT && rx.has_room();
        let frame = tokio::select! {
            biased;
            next = rx.next() => match next {
                Next::Write(first) => match write(socket, first, rx).await {
                    Ok(()) => continue,
                    Err(err) => {
                        tracing::debug!(error = %err, "websocket write failed");
                        conn.close(close::GOING_AWAY);
                        return false;
                    }
                },
                Next::End => return true,
            },
            Some((reply, temp_id)) = replies.next(), if !replies.is_empty() => {
                queue_reply(conn, reply, temp_id);
                continue;
            }
            () = &mut timer => {
                if !Box::pin(handler.on_deadline(tokio::time::Instant::now())).await {
                    conn.close(close::TOKEN_EXPIRED);
                }
                continue;
            }
            frame = socket.next(), if reading => frame,
        };
        let reply = match frame {
            None | Some(Ok(WsMessage::Close(_))) => return true,
            Some(Err(err)) => {
                // The only read error worth a close code is a frame over
                // the hard limit; the rest mean the peer is gone.
                if matches!(err, WsError::Capacity(_)) {
                    conn.close(close::TOO_BIG);
                }
                tracing::debug!(error = %err, "websocket read ended");
                return true;
            }
            Some(Ok(WsMessage::Text(text))) => Box::pin(handler.on_text(text.as_str())).await,
            Some(Ok(WsMessage::Binary(_))) => Reply::Now(error_frame(
                None,
                &ApiError::bad_request("binary frames are not supported; send JSON text frames"),
            )),
            // Ping and pong are answered by the protocol layer.
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => Reply::None,
        };
        match reply {
            Reply::None => {}
            Reply::Now(reply) if replies.is_empty() => {
                conn.reply(reply);
            }
            Reply::Now(reply) => replies.push(Box::pin(std::future::ready((Some(reply), None)))),
            Reply::Later(pending) => replies.push(pending),
        }
    }
}

/// Writes `first` and whatever else is queued already, up to a bound, with
/// one flush: under load a connection's frames leave in one system call
/// instead of one each. An abort (a reader too slow) ends a write that
/// waits on the socket.
///
/// Polled by hand rather than with `feed` and `flush` futures: this is in
/// every connection's state, and a write that completes at once (nearly
/// all) never looks at the abort.
async fn write(socket: &mut Socket, first: Frame, rx: &Receiver) -> Result<(), WsError> {
    let mut next = Some(first);
    let mut fed = 0;
    std::future::poll_fn(|cx| loop {
        let waiting = match next.take() {
            Some(frame) => match Pin::new(&mut *socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    Pin::new(&mut *socket).start_send(WsMessage::Text(frame))?;
                    fed += 1;
                    if fed < WRITE_BATCH {
                        next = rx.try_recv();
                    }
                    continue;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    next = Some(frame);
                    Poll::Pending
                }
            },
            None => Pin::new(&mut *socket).poll_flush(cx),
        };
        return match waiting {
            Poll::Pending => rx.poll_aborted(cx).map(Ok),
            done => done,
        };
    })
    .await
}

/// Writes what is left in the queue (unless the connection was aborted),
/// then the close frame with the code that says why.
async fn finish(socket: &mut Socket, rx: &Receiver) {
    while let Some(frame) = rx.try_recv() {
        if write(socket, frame, rx).await.is_err() {
            return;
        }
    }
    let ending = rx.ending();
    let (code, reason) = ending.map_or(close::GOING_AWAY, |e| e.reason);
    // A reader cut off for being slow has a full socket buffer ahead of the
    // close frame: give it time to read up to the frame that says why. Its
    // queue is gone already, so this holds only the socket.
    let patience = if ending.is_some_and(|e| e.abort) {
        SLOW_CLOSE_PATIENCE
    } else {
        Duration::from_secs(1)
    };
    let close = WsMessage::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(patience, socket.send(close)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
}

/// Replies waiting for their sends' PubAcks, in the order of the frames
/// that asked. Made at the first send: most connections never send.
#[derive(Default)]
struct Replies(Option<FuturesOrdered<PendingReply>>);

impl Replies {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesOrdered::len)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, reply: PendingReply) {
        self.0
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(reply);
    }

    async fn next(&mut self) -> Option<(Option<Frame>, Option<Uuid>)> {
        self.0.as_mut()?.next().await
    }
}

/// Queues a reply (if any), then lets go of the events held for its send.
fn queue_reply(conn: &Conn, reply: Option<Frame>, temp_id: Option<Uuid>) {
    if let Some(reply) = reply {
        conn.reply(reply);
    }
    if let Some(temp_id) = temp_id {
        conn.settle(temp_id);
    }
}

/// Frames written per flush at most.
const WRITE_BATCH: usize = 64;

/// How long the close frame of a connection cut off as too slow may take to
/// get through its full socket buffer.
const SLOW_CLOSE_PATIENCE: Duration = Duration::from_secs(30);

/// Sends of one connection waiting for their PubAcks at once. Beyond this
/// the connection's next frame waits: its own backpressure.
const MAX_IN_FLIGHT: usize = 256;
