//! What each request does, the same for the WebSocket and REST: check,
//! publish a job (or an ephemeral event), answer. Refusals are the
//! contract's errors; nothing is published before every check has passed.

use std::future::Future;

use serde::{Deserialize, Serialize};
use shared::events::RoomEvent;
use shared::jobs::{self, Deletion, Edit, Job, NewMessage, ReadMark, UserSeen};
use shared::protocol::{
    event, ApiError, DeleteMessage, EditMessage, ErrorCode, HistoryQuery, MarkRead, Message,
    MessageKind, React, ReadEvent, RoomMember, SendMessage, User,
};
use shared::validate;
use uuid::Uuid;

use crate::app::App;
use crate::conn::Conn;
use crate::membership::{ensure_manager, ensure_member};
use crate::publish::{self, publish_event, publish_job};
use crate::store::{self, db_unavailable};

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, what)
}

fn forbidden(what: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, what)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Empty {}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendAck {
    pub temp_id: Uuid,
}

/// A send on its way: its `temp_id`, and its ack once JetStream has stored
/// it (boxed once: a connection keeps many in flight).
pub type StartedSend = (Uuid, PendingAck);
pub type PendingAck = std::pin::Pin<Box<dyn Future<Output = Result<SendAck, ApiError>> + Send>>;

/// `message:send` over REST: checks, publishes and waits for the PubAck.
///
/// # Errors
/// The contract's refusals; `unavailable` when the job was not stored.
pub async fn send(
    app: &App,
    user: &User,
    room: &str,
    req: SendMessage,
) -> Result<SendAck, ApiError> {
    let (_, stored) = start_send(app, user, room, req, None).await?;
    stored.await
}

/// `message:send`: checks and publishes, then returns the message's
/// `temp_id` and a future that resolves to the ack once JetStream has
/// stored it, so a connection can read its next frame meanwhile. A
/// WebSocket sender passes its connection, whose ack gate then holds the
/// message's `message:persisted` until the caller has queued the reply and
/// called [`Conn::settle`].
///
/// # Errors
/// The contract's refusals; `unavailable` when the job was not published.
pub async fn start_send(
    app: &App,
    user: &User,
    room: &str,
    req: SendMessage,
    conn: Option<&Conn>,
) -> Result<StartedSend, ApiError> {
    validate::room_id(room)?;
    if req.kind == Some(MessageKind::System) {
        return Err(ApiError::bad_request(
            "only the application's backend sends system messages",
        ));
    }
    ensure_member(app, user, room).await?;
    start_checked_send(app, user, room, req, conn).await
}

/// The server API's send: as the service itself (a system message, no
/// sender) or as `sender`, with no membership needed.
///
/// # Errors
/// As [`send`].
pub async fn send_for_backend(
    app: &App,
    sender: Option<User>,
    room: &str,
    mut req: SendMessage,
) -> Result<SendAck, ApiError> {
    validate::room_id(room)?;
    let sender = match sender {
        Some(_) if req.kind == Some(MessageKind::System) => {
            return Err(ApiError::bad_request("a system message has no sender"));
        }
        Some(user) => user,
        None => {
            req.kind = Some(MessageKind::System);
            User::service()
        }
    };
    let (_, stored) = start_checked_send(app, &sender, room, req, None).await?;
    stored.await
}

/// A send whose sender may send in `room`.
async fn start_checked_send(
    app: &App,
    user: &User,
    room: &str,
    req: SendMessage,
    conn: Option<&Conn>,
) -> Result<StartedSend, ApiError> {
    validate::text(&req.text)?;
    let mentions = mentioned_members(app, room, req.mentions.unwrap_or_default()).await?;
    let attachments = req.attachments.unwrap_or_default();
    validate::attachments(&attachments)?;
    if let Some(cid) = &req.client_id {
        validate::client_id(cid)?;
    }
    if let Some(secs) = req.deliver_after_s {
        validate::deliver_after(secs)?;
    }
    if let Some(reply_to) = req.reply_to {
        // Only sends that reply pay for a read.
        let meta = store::message_meta(&app.pool, reply_to, user.id)
            .await
            .map_err(db_unavailable)?;
        if meta.is_none_or(|m| m.room_id != room) {
            return Err(not_found("reply_to names no message of this room"));
        }
    }
    if let Some(root) = req.thread_of {
        thread_root(app, user, room, root).await?;
    }
    let (temp_id, id) = jobs::message_ids(user.id, req.client_id.as_deref());
    // A scheduled message enters the room when it falls due: that is its
    // created_at, and its seq is handed out then.
    let due = req
        .deliver_after_s
        .map(|secs| shared::time::now_millis() + chrono::Duration::seconds(secs as i64));
    let job = Job::Message(NewMessage {
        id,
        temp_id,
        room: room.to_owned(),
        sender: user.clone(),
        kind: req.kind.unwrap_or_default(),
        text: req.text,
        reply_to: req.reply_to,
        attachments,
        client_id: req.client_id,
        created_at: due.unwrap_or_else(shared::time::now_millis),
        mentions,
        thread_of: req.thread_of,
    });
    // A scheduled message's events come long after its ack: no gate.
    let gate = conn.filter(|_| due.is_none());
    if let Some(conn) = gate {
        conn.expect_ack(temp_id);
    }
    let stored = match publish::start(app, &job, &temp_id.to_string(), due).await {
        Ok(stored) => stored,
        Err(err) => {
            if let Some(conn) = gate {
                conn.settle(temp_id);
            }
            return Err(err);
        }
    };
    Ok((
        temp_id,
        Box::pin(async move {
            stored.await?;
            metrics::counter!("gateway_messages_accepted_total").increment(1);
            Ok(SendAck { temp_id })
        }),
    ))
}

/// Refuses a thread root that is not a live message of the room, or is a
/// reply in a thread itself (threads do not nest).
async fn thread_root(app: &App, user: &User, room: &str, root: Uuid) -> Result<(), ApiError> {
    let meta = live_message(app, user, room, root).await?;
    if meta.thread_of.is_some() {
        return Err(ApiError::bad_request(
            "thread_of names a reply in a thread: threads do not nest",
        ));
    }
    Ok(())
}

/// The message a request names, refused unless it is a live message of
/// `room`.
pub(crate) async fn live_message(
    app: &App,
    user: &User,
    room: &str,
    id: Uuid,
) -> Result<store::MessageMeta, ApiError> {
    let meta = store::message_meta(&app.pool, id, user.id)
        .await
        .map_err(db_unavailable)?;
    match meta {
        Some(m) if m.room_id == room && !m.deleted => Ok(m),
        _ => Err(not_found("no such message in this room")),
    }
}

/// `message:edit`: the sender only.
///
/// # Errors
/// `bad_request`, `too_large`, `not_a_member`, `not_found`, `forbidden`,
/// `unavailable`.
pub async fn edit(app: &App, user: &User, req: EditMessage) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    ensure_member(app, user, &req.room).await?;
    validate::text(&req.text)?;
    let meta = live_message(app, user, &req.room, req.id).await?;
    if meta.sender_id != user.id {
        return Err(forbidden("only its sender edits a message"));
    }
    let job = Job::Edit(Edit {
        room: req.room,
        id: req.id,
        by: user.clone(),
        text: req.text,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// `message:delete`: the sender, or the room's owner or an admin.
///
/// # Errors
/// `bad_request`, `not_a_member`, `not_found`, `forbidden`, `unavailable`.
pub async fn delete(app: &App, user: &User, req: DeleteMessage) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    ensure_member(app, user, &req.room).await?;
    let meta = live_message(app, user, &req.room, req.id).await?;
    if meta.sender_id != user.id {
        ensure_manager(app, user, &req.room)
            .await
            .map_err(|_| forbidden("only its sender, the owner or an admin deletes a message"))?;
    }
    let job = Job::Delete(Deletion {
        room: req.room,
        id: req.id,
        by: user.clone(),
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// `reaction:add` / `reaction:remove`: any member, on a live message of
/// the room; one reaction per emoji per user, so adding twice or taking
/// back what is not there changes nothing.
///
/// # Errors
/// `bad_request`, `not_a_member`, `not_found`, `unavailable`.
pub async fn react(app: &App, user: &User, req: React, add: bool) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    ensure_member(app, user, &req.room).await?;
    validate::emoji(&req.emoji)?;
    live_message(app, user, &req.room, req.message_id).await?;
    let job = Job::React(jobs::Reaction {
        room: req.room,
        message_id: req.message_id,
        user: user.clone(),
        emoji: req.emoji,
        add,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// Most members one message names.
const MAX_MENTIONS: usize = 50;

/// The members a message names, each once, in the order given.
///
/// # Errors
/// `bad_request` for more than 50, or for someone who is not a member.
async fn mentioned_members(app: &App, room: &str, ids: Vec<Uuid>) -> Result<Vec<Uuid>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<Uuid> = ids.into_iter().filter(|id| seen.insert(*id)).collect();
    if ids.len() > MAX_MENTIONS {
        return Err(ApiError::bad_request("a message names at most 50 members"));
    }
    for id in &ids {
        if crate::membership::role(app, room, *id).await?.is_none() {
            return Err(ApiError::bad_request(format!(
                "mentions names {id}, who is not a member of this room"
            )));
        }
    }
    Ok(ids)
}

/// `room:notifications`: the user's own level in a room.
///
/// # Errors
/// `bad_request`, `not_a_member`, `unavailable`.
pub async fn set_notifications(
    app: &App,
    user: &User,
    req: shared::protocol::RoomNotifications,
) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    ensure_member(app, user, &req.room).await?;
    let job = Job::Notify(jobs::NotifySetting {
        room: req.room,
        user: user.clone(),
        level: req.level,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// The server API's delete: any message of the room, by the service.
///
/// # Errors
/// `bad_request`, `not_found`, `unavailable`.
pub async fn delete_for_backend(app: &App, room: &str, id: Uuid) -> Result<Empty, ApiError> {
    validate::room_id(room)?;
    let service = User::service();
    live_message(app, &service, room, id).await?;
    let job = Job::Delete(Deletion {
        room: room.to_owned(),
        id,
        by: service,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// `message:read`: the read mark moves forward (persisted through the
/// stream) and the other members hear of it at once (core NATS).
///
/// # Errors
/// `bad_request`, `not_a_member`, `not_found`, `unavailable`.
pub async fn mark_read(app: &App, user: &User, req: MarkRead) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    ensure_member(app, user, &req.room).await?;
    let meta = store::message_meta(&app.pool, req.message_id, user.id)
        .await
        .map_err(db_unavailable)?
        .filter(|m| m.room_id == req.room)
        .ok_or_else(|| not_found("no such message in this room"))?;
    if meta.read_seq.is_some_and(|r| r >= meta.seq) {
        return Ok(Empty {}); // never backwards
    }
    let job = Job::Read(ReadMark {
        room: req.room.clone(),
        user: user.clone(),
        message_id: req.message_id,
        seq: meta.seq,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    let echo = RoomEvent::new(
        event::MESSAGE_READ,
        &req.room,
        ReadEvent {
            room: &req.room,
            user,
            message_id: req.message_id,
        },
    )
    .skipping(user.id);
    publish_event(app, &req.room, &echo).await;
    Ok(Empty {})
}

/// `typing:start` / `typing:stop`: to the other members, over core NATS.
///
/// # Errors
/// `bad_request`, `not_a_member`, `unavailable`.
pub async fn typing(app: &App, user: &User, room: &str, start: bool) -> Result<Empty, ApiError> {
    validate::room_id(room)?;
    ensure_member(app, user, room).await?;
    announce_typing(app, user, room, start).await;
    Ok(Empty {})
}

/// Publishes a typing event without checks (the session's automatic stop).
pub async fn announce_typing(app: &App, user: &User, room: &str, start: bool) {
    let kind = if start {
        event::TYPING_START
    } else {
        event::TYPING_STOP
    };
    let ev = RoomEvent::new(kind, room, RoomMember { room, user }).skipping(user.id);
    publish_event(app, room, &ev).await;
}

/// Makes a connecting user known by id, unless a persister already knows
/// them under this name.
///
/// # Errors
/// `unavailable`.
pub async fn announce_user(app: &App, user: &User) -> Result<(), ApiError> {
    let stored = store::user(&app.pool, user.id)
        .await
        .map_err(db_unavailable)?;
    if stored.as_ref() == Some(user) {
        return Ok(());
    }
    let job = Job::Seen(UserSeen {
        user: user.clone(),
        at: shared::time::now_millis(),
    });
    // One job per profile within the stream's duplicate window.
    let profile = serde_json::to_vec(user).unwrap_or_default();
    let msg_id = Uuid::new_v5(&user.id, &profile);
    publish_job(app, &job, &msg_id.to_string()).await
}

/// `user:update`: a user's own name and picture.
#[derive(Debug, Deserialize)]
pub struct UserUpdate {
    #[serde(default)]
    pub name: Option<String>,
    /// A URL, or `null` to remove the picture.
    #[serde(default)]
    pub avatar_url: Option<serde_json::Value>,
}

/// `user:update`: stores the new profile (a `Seen` job, so the persister
/// keeps it) and tells the members of the user's rooms (`user:updated`).
///
/// # Errors
/// `bad_request`, `unavailable`.
pub async fn update_profile(app: &App, user: &User, req: UserUpdate) -> Result<User, ApiError> {
    let mut next = user.clone();
    if let Some(name) = req.name {
        next.name = Some(validate::display_name(&name)?);
    }
    match req.avatar_url {
        None => {}
        Some(serde_json::Value::Null) => next.avatar_url = None,
        Some(serde_json::Value::String(url)) => {
            validate::avatar_url(&url)?;
            next.avatar_url = Some(url);
        }
        Some(_) => return Err(ApiError::bad_request("avatar_url is a URL or null")),
    }
    announce_user(app, &next).await?;
    app.hub.update_profile(&next);
    let frame = serde_json::json!({ "user": &next });
    for room in app.hub.rooms_of(user.id).unwrap_or_default() {
        let ev = RoomEvent::new(event::USER_UPDATED, &room, &frame);
        publish_event(app, &room, &ev).await;
    }
    Ok(next)
}

/// The profile a connecting user starts with: what their token claims,
/// and for what it does not claim, what they were last seen with (a
/// `user:update`, an earlier token).
///
/// # Errors
/// `unavailable`.
pub async fn profile_at_connect(
    app: &App,
    identity: &crate::auth::Identity,
) -> Result<User, ApiError> {
    let mut user = identity.user.clone();
    if identity.name_claimed && user.avatar_url.is_some() {
        return Ok(user);
    }
    if let Some(known) = crate::membership::user(app, user.id).await? {
        if !identity.name_claimed && known.name.is_some() {
            user.name = known.name;
        }
        if user.avatar_url.is_none() {
            user.avatar_url = known.avatar_url;
        }
    }
    Ok(user)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
}

/// `history:fetch` and `GET /v1/rooms/{room}/messages`.
///
/// # Errors
/// `bad_request`, `not_a_member`, `unavailable`.
pub async fn history(
    app: &App,
    user: &User,
    room: &str,
    q: &HistoryQuery,
) -> Result<HistoryPage, ApiError> {
    validate::room_id(room)?;
    ensure_member(app, user, room).await?;
    let messages = store::history(&app.pool, room, q)
        .await
        .map_err(db_unavailable)?;
    Ok(HistoryPage { messages })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoomList {
    pub rooms: Vec<store::RoomSummary>,
}

/// `GET /v1/rooms`.
///
/// # Errors
/// `unavailable`.
pub async fn rooms(app: &App, user: &User) -> Result<RoomList, ApiError> {
    let rooms = store::room_list(&app.pool, user.id)
        .await
        .map_err(db_unavailable)?;
    Ok(RoomList { rooms })
}
