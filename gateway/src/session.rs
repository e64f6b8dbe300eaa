//! One WebSocket connection: a reader that handles frames in the order they
//! arrive, a writer that drains a bounded queue, and the hub entry through
//! which room events reach the queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, SplitSink, SplitStream};
use futures::{Sink, SinkExt, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;
use shared::protocol::{
    event, ApiError, Envelope, ErrorCode, HistoryQuery, RequestType, RoomRef, SendMessage,
    ServerFrame, SessionRefresh, User,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use uuid::Uuid;

use crate::app::{App, FRAME_LIMIT};
use crate::auth::Identity;
use crate::conn::{close, Closer, Conn};
use crate::rate::TokenBucket;
use crate::websocket::{Frame, Socket};
use crate::{matching, moderation, outbox, requests};

/// Serves one upgraded connection until it closes.
///
/// This future lives as long as the connection, idle or not, so what it
/// awaits only now and then (a request, a database read) is boxed: held
/// inline, the largest of those futures would size every idle
/// connection's state.
pub fn serve(socket: Socket, app: Arc<App>, identity: Identity) -> impl Future<Output = ()> {
    // Split before the future is made: an async fn keeps its arguments for
    // its whole life, and the socket before the split is 328 bytes.
    let (sink, frames) = socket.split();
    run(sink, frames, app, identity)
}

async fn run(
    sink: SplitSink<Socket, WsMessage>,
    mut frames: SplitStream<Socket>,
    app: Arc<App>,
    identity: Identity,
) {
    let (tx, rx) = outbox::outbox(app.limits.queue);
    let closer = Closer::new(&app.stop);
    let writer = tokio::spawn(write_loop(sink, rx, closer.clone()));
    let user = match Box::pin(requests::profile_at_connect(&app, &identity)).await {
        Ok(profile) => profile,
        Err(_) => identity.user.clone(),
    };
    let conn = Conn::new(app.next_conn_id(), user.id, tx.clone(), closer.clone());

    let loaded_at = std::time::Instant::now();
    let stored = match Box::pin(crate::membership::rooms_of(&app, user.id)).await {
        Ok(rooms) => rooms,
        Err(err) => {
            tracing::warn!(error = %err, "cannot load the rooms of a connecting user");
            closer.close(close::TRY_AGAIN_LATER);
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    if let Err(err) = Box::pin(requests::announce_user(&app, &user)).await {
        // Not fatal: the user can chat; only being found by id waits.
        tracing::warn!(error = %err, "could not make a connecting user known");
    }
    let (mut rooms, first) =
        Box::pin(app.hub.connect(conn.clone(), &user, stored, loaded_at)).await;
    rooms.sort();
    let ready = ServerFrame::new(
        event::SESSION_READY,
        serde_json::json!({"user": &user, "rooms": rooms}),
    );
    let _ = tx.send(ready.to_json().into()).await;
    if let Some(presence) = app.presence.get() {
        if first {
            Box::pin(presence.connected(&user, &rooms, conn.id)).await;
        } else {
            presence.greet(user.id, conn.id, &rooms);
        }
    }

    let expiry = tokio::time::sleep_until(deadline(identity.expires_at));
    tokio::pin!(expiry);
    let mut handler = Handler {
        app: &app,
        user: Arc::new(user),
        conn: &conn,
        bucket: TokenBucket::new(app.limits.rate_per_s, app.limits.rate_burst),
        typing: HashMap::new(),
        waiting: None,
        expires_at: identity.expires_at,
    };
    let mut expires_at = identity.expires_at;
    // Replies in the order their frames came; a send's waits for its PubAck
    // while the frames after it are read.
    let mut replies = FuturesOrdered::new();
    loop {
        let next_stop = handler.typing.values().min().copied();
        let next_refresh = handler.waiting.as_ref().map(|w| w.refresh_at);
        let frame = tokio::select! {
            biased;
            () = closer.stopped().cancelled() => break,
            Some((reply, temp_id)) = replies.next(), if !replies.is_empty() => {
                if !queue_reply(&tx, &conn, reply, temp_id).await {
                    break;
                }
                continue;
            }
            () = &mut expiry => {
                closer.close(close::TOKEN_EXPIRED);
                break;
            }
            () = until(next_stop) => {
                Box::pin(handler.stop_typing(|deadline| deadline <= Instant::now())).await;
                continue;
            }
            () = until(next_refresh) => {
                Box::pin(handler.refresh_waiting()).await;
                continue;
            }
            frame = frames.next(), if replies.len() < MAX_IN_FLIGHT => frame,
        };
        let reply = match frame {
            None => break,
            Some(Err(err)) => {
                // The only read error worth a close code is a frame over
                // the hard limit; the rest mean the peer is gone.
                if matches!(err, WsError::Capacity(_)) {
                    closer.close(close::TOO_BIG);
                }
                tracing::debug!(error = %err, "websocket read ended");
                break;
            }
            Some(Ok(WsMessage::Text(text))) => Box::pin(handler.on_text(text.as_str())).await,
            Some(Ok(WsMessage::Binary(_))) => Reply::Now(error_frame(
                None,
                &ApiError::bad_request("binary frames are not supported; send JSON text frames"),
            )),
            Some(Ok(WsMessage::Close(_))) => break,
            // Ping and pong are answered by the protocol layer.
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => Reply::None,
        };
        if handler.expires_at != expires_at {
            expires_at = handler.expires_at;
            expiry.as_mut().reset(deadline(expires_at));
        }
        match reply {
            Reply::None => {}
            Reply::Now(reply) if replies.is_empty() => {
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
            Reply::Now(reply) => {
                replies.push_back(Box::pin(std::future::ready((Some(reply), None))) as PendingReply)
            }
            Reply::Later(pending) => replies.push_back(pending),
        }
    }
    // Sends already published are answered, also when the gateway stops.
    while let Some((reply, temp_id)) = replies.next().await {
        if !queue_reply(&tx, &conn, reply, temp_id).await {
            break;
        }
    }
    Box::pin(handler.stop_typing(|_| true)).await;
    Box::pin(handler.stop_waiting()).await;
    let user = Arc::clone(&handler.user);
    let rooms = app.hub.rooms_of(user.id).unwrap_or_default();
    if app.hub.disconnect(&conn) {
        if let Some(presence) = app.presence.get() {
            presence.disconnected(User::clone(&user), rooms);
        }
    }
    // With every sender gone the writer drains what is queued, then closes.
    drop(tx);
    drop(conn);
    let _ = writer.await;
}

/// Writes queued frames until the queue closes (then sends the close frame)
/// or the connection is aborted (then stops at once).
async fn write_loop<S>(mut sink: S, mut rx: outbox::Receiver, closer: Closer)
where
    S: Sink<WsMessage> + Unpin,
    S::Error: std::fmt::Display,
{
    loop {
        let frame = tokio::select! {
            biased;
            () = closer.aborted().cancelled() => break,
            frame = rx.recv() => frame,
        };
        let Some(frame) = frame else { break };
        let sent = tokio::select! {
            biased;
            () = closer.aborted().cancelled() => break,
            sent = write_batch(&mut sink, frame, &mut rx) => sent,
        };
        if let Err(err) = sent {
            tracing::debug!(error = %err, "websocket write failed");
            closer.close(close::GOING_AWAY);
            return;
        }
    }
    let (code, reason) = closer.reason();
    // A reader cut off for being slow has a full socket buffer ahead of the
    // close frame: give it time to read up to the frame that says why. Its
    // queue is gone already, so this holds only the socket.
    let patience = if closer.aborted().is_cancelled() {
        SLOW_CLOSE_PATIENCE
    } else {
        Duration::from_secs(1)
    };
    let close = WsMessage::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(patience, sink.send(close)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// Writes `first` and whatever else is queued already, up to a bound, with
/// one flush: under load a connection's frames leave in one system call
/// instead of one each.
async fn write_batch<S>(
    sink: &mut S,
    first: Frame,
    rx: &mut outbox::Receiver,
) -> Result<(), S::Error>
where
    S: Sink<WsMessage> + Unpin,
{
    sink.feed(WsMessage::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        let Some(frame) = rx.try_recv() else { break };
        sink.feed(WsMessage::Text(frame)).await?;
    }
    sink.flush().await
}

/// Frames written per flush at most.
const WRITE_BATCH: usize = 64;

/// How long the close frame of a connection cut off as too slow may take to
/// get through its full socket buffer.
const SLOW_CLOSE_PATIENCE: Duration = Duration::from_secs(30);

/// A typing indicator ends by itself this long after the last start.
const TYPING_TIMEOUT: Duration = Duration::from_secs(5);

/// Sleeps until `deadline`, or for ever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Turns one text frame into at most one reply.
struct Handler<'a> {
    app: &'a App,
    /// The user as their latest `user:update` has them.
    user: Arc<User>,
    conn: &'a Conn,
    bucket: TokenBucket,
    /// Rooms this connection is typing in, with when that ends by itself.
    typing: HashMap<String, Instant>,
    /// This connection's place in the matching pool; boxed, as the key-value
    /// handle is 1.5 KB and most connections never ask for a match.
    waiting: Option<Box<Waiting>>,
    /// When the connection's token expires (Unix seconds); moved by
    /// `session:refresh`.
    expires_at: i64,
}

struct Waiting {
    kv: async_nats::jetstream::kv::Store,
    revision: u64,
    refresh_at: Instant,
}

impl Handler<'_> {
    /// `match:random`.
    async fn ask_match(&mut self) -> Result<requests::Empty, ApiError> {
        // Still waiting? (A match elsewhere took the entry away.)
        self.refresh_waiting().await;
        if self.waiting.is_some() {
            return Ok(requests::Empty {});
        }
        let kv = matching::bucket(self.app).await?;
        let asked = matching::ask(self.app, &kv, &self.user, self.conn.id, self.app.id).await?;
        if let matching::Asked::Waiting(revision) = asked {
            self.waiting = Some(Box::new(Waiting {
                kv,
                revision,
                refresh_at: Instant::now() + matching::REFRESH,
            }));
        }
        Ok(requests::Empty {})
    }

    /// `match:cancel`, and a disconnect.
    async fn stop_waiting(&mut self) {
        if let Some(w) = self.waiting.take() {
            matching::leave(&w.kv, w.revision).await;
        }
    }

    async fn refresh_waiting(&mut self) {
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        match matching::refresh(&w.kv, &self.user, self.conn.id, self.app.id, w.revision).await {
            Some(revision) => {
                w.revision = revision;
                w.refresh_at = Instant::now() + matching::REFRESH;
            }
            // Matched (match:found is on its way) or cancelled elsewhere.
            None => self.waiting = None,
        }
    }

    /// Announces `typing:stop` for the rooms whose deadline `ends` says is
    /// over, and forgets them.
    async fn stop_typing(&mut self, ends: impl Fn(Instant) -> bool) {
        let over: Vec<String> = self
            .typing
            .iter()
            .filter(|(_, d)| ends(**d))
            .map(|(r, _)| r.clone())
            .collect();
        for room in over {
            self.typing.remove(&room);
            requests::announce_typing(self.app, &self.user, &room, false).await;
        }
    }

    async fn on_text(&mut self, text: &str) -> Reply {
        let envelope = match serde_json::from_str::<Envelope<'_>>(text) {
            Ok(e) => e,
            Err(err) => {
                let why = if err.is_data() {
                    "a frame is a JSON object with a string \"type\""
                } else {
                    "a frame is one JSON object"
                };
                return Reply::Now(error_frame(None, &ApiError::bad_request(why)));
            }
        };
        let reference = envelope.reference();
        let answer = match self.check(text.len(), &envelope) {
            Ok(request) => self.dispatch(request, &envelope).await,
            Err(err) => Err(err),
        };
        match (answer, reference) {
            (Ok(Answer::Stored(temp_id, stored)), r) => {
                let reference = r.map(str::to_owned);
                Reply::Later(Box::pin(async move {
                    let reply = match (stored.await, reference.as_deref()) {
                        (Ok(_), None) => None,
                        (Ok(ack), r) => Some(reply_frame(r, to_raw(&ack))),
                        (Err(err), r) => Some(error_frame(r, &err)),
                    };
                    (reply, Some(temp_id))
                }))
            }
            (Ok(Answer::Now(_)), None) => Reply::None,
            (Ok(Answer::Now(data)), r) => Reply::Now(reply_frame(r, Ok(data))),
            (Err(err), r) => Reply::Now(error_frame(r, &err)),
        }
    }

    /// What every frame passes before it is handled: the rate limit, the
    /// reference, the size and the type.
    fn check(&mut self, size: usize, env: &Envelope<'_>) -> Result<RequestType, ApiError> {
        if !self.bucket.try_take() {
            metrics::counter!("gateway_rate_limited_total").increment(1);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many frames; slow down",
            ));
        }
        env.check_reference()?;
        if let Some(r) = env.reference() {
            shared::validate::reference(r)?;
        }
        if size > FRAME_LIMIT {
            return Err(ApiError::too_large("frame is over 64 KiB"));
        }
        let kind = env.kind()?;
        RequestType::parse(kind)
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownType, format!("unknown type {kind:?}")))
    }

    /// `message:send`: published now, acked when stored.
    async fn start_send(&mut self, env: &Envelope<'_>) -> Result<requests::StartedSend, ApiError> {
        let mut req: SendMessage = data(env)?;
        let room = req
            .room
            .take()
            .ok_or_else(|| ApiError::bad_request("missing \"room\""))?;
        requests::start_send(self.app, &self.user, &room, req, Some(self.conn)).await
    }

    /// Handles a request. A send is answered once JetStream has stored it,
    /// while the frames after it are read; every other request before.
    async fn dispatch(
        &mut self,
        request: RequestType,
        env: &Envelope<'_>,
    ) -> Result<Answer, ApiError> {
        let app = self.app;
        let user = Arc::clone(&self.user);
        let user = &*user;
        match request {
            RequestType::MessageSend => {
                let (temp_id, stored) = self.start_send(env).await?;
                Ok(Answer::Stored(temp_id, stored))
            }
            RequestType::RoomJoin => {
                let r: RoomRef = data(env)?;
                let ack = crate::rooms::join(app, user, &r.room).await?;
                // The joiner learns which members are online right now, and
                // they learn the joiner is; not in a big room, where that
                // is a frame per member for every join.
                if let (Some(presence), false) =
                    (app.presence.get(), ack.members_truncated.is_some())
                {
                    presence.greet_members(user.id, self.conn.id, &r.room, &ack.members);
                    Box::pin(presence.joined(user, &r.room)).await;
                }
                now(&ack)
            }
            RequestType::RoomLeave => {
                let r: RoomRef = data(env)?;
                now(&crate::rooms::leave(app, user, &r.room).await?)
            }
            RequestType::RoomCreate => {
                now(&crate::rooms::create_room(app, user, data(env)?).await?)
            }
            RequestType::RoomInvite => now(&crate::rooms::invite(app, user, data(env)?).await?),
            RequestType::RoomSetRole => now(&crate::rooms::set_role(app, user, data(env)?).await?),
            RequestType::MessageEdit => now(&requests::edit(app, user, data(env)?).await?),
            RequestType::MessageDelete => now(&requests::delete(app, user, data(env)?).await?),
            RequestType::MessageRead => now(&requests::mark_read(app, user, data(env)?).await?),
            RequestType::TypingStart | RequestType::TypingStop => {
                let r: RoomRef = data(env)?;
                let start = request == RequestType::TypingStart;
                let ack = requests::typing(app, user, &r.room, start).await?;
                if start {
                    self.typing.insert(r.room, Instant::now() + TYPING_TIMEOUT);
                } else {
                    self.typing.remove(&r.room);
                }
                now(&ack)
            }
            RequestType::HistoryFetch => {
                let q: HistoryQuery = data(env)?;
                let room = q
                    .room
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("missing \"room\""))?;
                now(&requests::history(app, user, &room, &q).await?)
            }
            RequestType::MatchRandom => now(&self.ask_match().await?),
            RequestType::MatchCancel => {
                self.stop_waiting().await;
                now(&requests::Empty {})
            }
            RequestType::RoomNotifications => {
                now(&requests::set_notifications(app, user, data(env)?).await?)
            }
            RequestType::RoomRemove => now(&moderation::remove(app, user, data(env)?).await?),
            RequestType::RoomBan => now(&moderation::ban(app, user, data(env)?).await?),
            RequestType::RoomUnban => now(&moderation::unban(app, user, data(env)?).await?),
            RequestType::MessageFlag => now(&moderation::flag(app, user, data(env)?).await?),
            RequestType::ReactionAdd | RequestType::ReactionRemove => {
                let add = request == RequestType::ReactionAdd;
                now(&requests::react(app, user, data(env)?, add).await?)
            }
            RequestType::UserUpdate => {
                let next = requests::update_profile(app, user, data(env)?).await?;
                let ack = serde_json::json!({ "user": &next });
                self.user = Arc::new(next);
                now(&ack)
            }
            RequestType::SessionRefresh => {
                let r: SessionRefresh = data(env)?;
                let id = app.keys.verify(&r.token).await.map_err(|err| {
                    tracing::debug!(error = %err, "refused a refresh token");
                    ApiError::new(
                        ErrorCode::Unauthorized,
                        "that token is not valid; nothing changed",
                    )
                })?;
                if id.user.id != user.id {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "that token is another user's; nothing changed",
                    ));
                }
                self.expires_at = id.expires_at;
                let at = chrono::DateTime::from_timestamp(id.expires_at, 0).unwrap_or_default();
                now(&serde_json::json!({ "expires_at": at }))
            }
        }
    }
}

/// The instant a token that expires at `unix_s` stops the connection.
fn deadline(unix_s: i64) -> tokio::time::Instant {
    let left = (unix_s - chrono::Utc::now().timestamp()).max(0);
    tokio::time::Instant::now() + Duration::from_secs(left as u64)
}

/// Parses a frame's `data` as `T`; a missing `data` reads as `{}`.
fn data<T: serde::de::DeserializeOwned>(env: &Envelope<'_>) -> Result<T, ApiError> {
    let text = env.data.map_or("{}", RawValue::get);
    shared::validate::json_object(text.as_bytes(), "data")
}

/// A request's answer.
enum Answer {
    Now(Box<RawValue>),
    /// A send: its `temp_id`, and its ack once JetStream has stored it.
    Stored(Uuid, requests::PendingAck),
}

fn now<T: Serialize>(value: &T) -> Result<Answer, ApiError> {
    to_raw(value).map(Answer::Now)
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(|err| {
        tracing::error!(error = %err, "serializing a reply");
        ApiError::new(ErrorCode::Unavailable, "internal error")
    })
}

fn frame<T: Serialize>(kind: &str, reference: Option<&str>, data: T) -> Frame {
    ServerFrame {
        kind,
        reference,
        data,
    }
    .to_json()
    .into()
}

fn error_frame(reference: Option<&str>, err: &ApiError) -> Frame {
    frame(event::ERROR, reference, err)
}

/// The `ack` carrying `answer`, or the `error` it failed with.
fn reply_frame(reference: Option<&str>, answer: Result<Box<RawValue>, ApiError>) -> Frame {
    match answer {
        Ok(data) => frame(event::ACK, reference, &data),
        Err(err) => error_frame(reference, &err),
    }
}

/// What a frame gets back.
enum Reply {
    /// Nothing: a request without `ref` that succeeded.
    None,
    Now(Frame),
    /// A send's ack or error, once JetStream has answered; with the send's
    /// `temp_id`, whose held events the reply lets go.
    Later(PendingReply),
}

type PendingReply = Pin<Box<dyn Future<Output = (Option<Frame>, Option<Uuid>)> + Send>>;

/// Queues a reply (if any), then lets go of the events held for its send.
/// Returns false when the connection's writer is gone.
async fn queue_reply(
    tx: &outbox::Sender,
    conn: &Conn,
    reply: Option<Frame>,
    temp_id: Option<Uuid>,
) -> bool {
    let queued = match reply {
        Some(reply) => tx.send(reply).await.is_ok(),
        None => true,
    };
    if let Some(temp_id) = temp_id {
        conn.settle(temp_id);
    }
    queued
}

/// Sends of one connection waiting for their PubAcks at once. Beyond this
/// the connection's next frame waits: its own backpressure.
const MAX_IN_FLIGHT: usize = 256;
