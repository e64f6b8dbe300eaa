//! What one client frame asks, and the reply it gets: the checks every
//! frame passes (rate, size, type), each request's handling, and the state
//! a connection keeps between frames (typing, a place in the matching
//! pool, when its token expires).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use shared::protocol::{
    event, ApiError, Envelope, ErrorCode, HistoryQuery, RequestType, RoomRef, SendMessage,
    ServerFrame, SessionRefresh, User,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::app::{App, FRAME_LIMIT};
use crate::conn::Conn;
use crate::rate::TokenBucket;
use crate::websocket::Frame;
use crate::{matching, moderation, requests};

/// A typing indicator ends by itself this long after the last start.
const TYPING_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns one text frame into at most one reply.
pub struct Handler<'a> {
    app: &'a App,
    /// The user as their latest `user:update` has them.
    pub user: Arc<User>,
    conn: &'a Conn,
    bucket: TokenBucket,
    /// Rooms this connection is typing in, with when that ends by itself.
    typing: HashMap<String, Instant>,
    /// This connection's place in the matching pool; boxed, as the key-value
    /// handle is 1.5 KB and most connections never ask for a match.
    waiting: Option<Box<Waiting>>,
    /// When the connection's token expires; moved by `session:refresh`.
    expiry: Instant,
}

struct Waiting {
    kv: async_nats::jetstream::kv::Store,
    revision: u64,
    refresh_at: Instant,
}

impl<'a> Handler<'a> {
    /// A connection's handler; its token expires at `expires_at` (Unix
    /// seconds).
    pub fn new(app: &'a App, user: Arc<User>, conn: &'a Conn, expires_at: i64) -> Self {
        Self {
            app,
            user,
            conn,
            bucket: TokenBucket::new(app.limits.rate_per_s, app.limits.rate_burst),
            typing: HashMap::new(),
            waiting: None,
            expiry: deadline(expires_at),
        }
    }

    /// When the handler next has something to do by itself: the token's
    /// expiry, a typing indicator's end, the matching pool's refresh.
    pub fn next_deadline(&self) -> Instant {
        let typing = self.typing.values().min().copied();
        let refresh = self.waiting.as_ref().map(|w| w.refresh_at);
        [typing, refresh]
            .into_iter()
            .flatten()
            .fold(self.expiry, Instant::min)
    }

    /// Does what is due at `now`; false once the token has expired.
    pub async fn on_deadline(&mut self, now: Instant) -> bool {
        if self.expiry <= now {
            return false;
        }
        if self.typing.values().any(|d| *d <= now) {
            self.stop_typing(|deadline| deadline <= now).await;
        }
        if self.waiting.as_ref().is_some_and(|w| w.refresh_at <= now) {
            self.refresh_waiting().await;
        }
        true
    }

    /// What a closing connection undoes: its typing indicators and its
    /// place in the matching pool.
    pub async fn leave(&mut self) {
        self.stop_typing(|_| true).await;
        self.stop_waiting().await;
    }

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

    pub async fn on_text(&mut self, text: &str) -> Reply {
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
                self.expiry = deadline(id.expires_at);
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

pub fn error_frame(reference: Option<&str>, err: &ApiError) -> Frame {
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
pub enum Reply {
    /// Nothing: a request without `ref` that succeeded.
    None,
    Now(Frame),
    /// A send's ack or error, once JetStream has answered; with the send's
    /// `temp_id`, whose held events the reply lets go.
    Later(PendingReply),
}

pub type PendingReply = Pin<Box<dyn Future<Output = (Option<Frame>, Option<Uuid>)> + Send>>;
