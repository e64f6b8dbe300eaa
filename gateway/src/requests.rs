//! What each request does, the same for the WebSocket and REST: check,
//! publish a job (or an ephemeral event), answer. Refusals are the
//! contract's errors; nothing is published before every check has passed.

use std::collections::HashSet;
use std::future::Future;

use serde::Serialize;
use shared::events::RoomEvent;
use shared::jobs::{
    self, Deletion, Edit, Invitation, Job, Membership, NewMessage, NewRoom, ReadMark, RoleChange,
    UserSeen,
};
use shared::protocol::{
    event, ApiError, CreateRoom, DeleteMessage, EditMessage, ErrorCode, HistoryQuery, Invite,
    MarkRead, Message, ReadEvent, Role, RoomKind, RoomMember, SendMessage, SetRole, User,
};
use shared::validate;
use uuid::Uuid;

use crate::app::App;
use crate::hub::Conn;
use crate::membership::{self, ensure_manager, ensure_member};
use crate::publish::{self, publish_event, publish_job};
use crate::store;

/// A database failure as the client sees it; the cause is logged here,
/// where it is handled.
pub fn db_unavailable(err: sqlx::Error) -> ApiError {
    tracing::warn!(error = %err, "database read failed");
    ApiError::new(
        ErrorCode::Unavailable,
        "the database is unavailable; try again",
    )
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, what)
}

fn forbidden(what: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, what)
}

#[derive(Debug, Serialize)]
pub struct Empty {}

#[derive(Debug, Serialize)]
pub struct SendAck {
    pub temp_id: Uuid,
}

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
) -> Result<
    (
        Uuid,
        impl Future<Output = Result<SendAck, ApiError>> + Send + 'static,
    ),
    ApiError,
> {
    validate::room_id(room)?;
    ensure_member(app, user, room).await?;
    validate::text(&req.text)?;
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
    Ok((temp_id, async move {
        stored.await?;
        metrics::counter!("gateway_messages_accepted_total").increment(1);
        Ok(SendAck { temp_id })
    }))
}

#[derive(Debug, Serialize)]
pub struct JoinAck {
    pub room: String,
    pub members: Vec<User>,
}

/// `room:join`: a new id becomes a public group room owned by the joiner;
/// private and direct rooms refuse.
///
/// # Errors
/// `bad_request`, `forbidden`, `unavailable`.
pub async fn join(app: &App, user: &User, room: &str) -> Result<JoinAck, ApiError> {
    validate::room_id(room)?;
    let already = app.hub.is_member(user.id, room) == Some(true)
        || membership::role(app, room, user.id).await?.is_some();
    if !already {
        let access = store::room_access(&app.pool, room)
            .await
            .map_err(db_unavailable)?;
        if let Some(access) = access.as_ref().filter(|a| !a.public) {
            let what = if access.kind == "direct" {
                "a direct"
            } else {
                "a private"
            };
            return Err(forbidden(&format!(
                "{what} room can only be entered by invitation"
            )));
        }
        let job = Job::Join(Membership {
            room: room.to_owned(),
            user: user.clone(),
            at: shared::time::now_millis(),
            creates: access.is_none(),
        });
        publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    }
    app.hub.add_member(user.id, room).await;
    let mut members = store::members(&app.pool, room)
        .await
        .map_err(db_unavailable)?;
    // The join may still be a job in the stream.
    if !members.iter().any(|m| m.id == user.id) {
        members.push(user.clone());
    }
    Ok(JoinAck {
        room: room.to_owned(),
        members,
    })
}

/// `room:leave`.
///
/// # Errors
/// `bad_request`, `not_a_member`, `unavailable`.
pub async fn leave(app: &App, user: &User, room: &str) -> Result<Empty, ApiError> {
    validate::room_id(room)?;
    ensure_member(app, user, room).await?;
    let job = Job::Leave(Membership {
        room: room.to_owned(),
        user: user.clone(),
        at: shared::time::now_millis(),
        creates: false,
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    app.hub.remove_member(user.id, room);
    Ok(Empty {})
}

#[derive(Debug, Serialize)]
pub struct RoomAck {
    pub room: String,
}

/// Most members a room can be created with.
const MAX_CREATE_MEMBERS: usize = 1_000;

/// `room:create`: the creator is the owner; the listed users become members
/// wherever they are connected. A direct room has exactly two members and
/// is never public.
///
/// # Errors
/// `bad_request`, `forbidden` (the id is taken), `not_found` (an unknown
/// user), `unavailable`.
pub async fn create_room(app: &App, user: &User, req: CreateRoom) -> Result<RoomAck, ApiError> {
    let room = match req.room {
        Some(r) => r,
        None => format!("r-{}", &Uuid::new_v4().simple().to_string()[..16]),
    };
    validate::room_id(&room)?;
    let name = match req.name.as_deref().map(str::trim) {
        Some("") | None => None,
        Some(n) => Some(validate::display_name(n)?),
    };
    let mut seen = HashSet::from([user.id]);
    let others: Vec<Uuid> = req
        .members
        .into_iter()
        .filter(|id| seen.insert(*id))
        .collect();
    if others.len() > MAX_CREATE_MEMBERS {
        return Err(ApiError::bad_request("at most 1,000 members at creation"));
    }
    if req.kind == RoomKind::Direct && others.len() != 1 {
        return Err(ApiError::bad_request(
            "a direct room has exactly two members: you and one other user",
        ));
    }
    let taken = store::room_access(&app.pool, &room)
        .await
        .map_err(db_unavailable)?
        .is_some()
        || membership::role(app, &room, user.id).await?.is_some();
    if taken {
        return Err(forbidden("a room with this id exists"));
    }
    let members = named_users(app, &others).await?;
    let at = shared::time::now_millis();
    let create = Job::CreateRoom(NewRoom {
        room: room.clone(),
        name,
        kind: req.kind,
        public: req.public.unwrap_or(false) && req.kind == RoomKind::Group,
        owner: user.clone(),
        at,
    });
    // The room and its members are published back to back and their
    // PubAcks awaited together: one round trip, and the jobs lie next to
    // each other in the stream (an invitation stored without its room is
    // refused by the persister, so a partial failure adds no one).
    let mut stored = vec![publish::start(app, &create, &Uuid::new_v4().to_string(), None).await?];
    for member in members {
        let invite = Job::Invite(Invitation {
            room: room.clone(),
            by: user.clone(),
            user: member,
            at,
        });
        stored.push(publish::start(app, &invite, &Uuid::new_v4().to_string(), None).await?);
    }
    futures::future::try_join_all(stored).await?;
    app.hub.add_member(user.id, &room).await;
    Ok(RoomAck { room })
}

/// Users by id with their names, in the order given.
async fn named_users(app: &App, ids: &[Uuid]) -> Result<Vec<User>, ApiError> {
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        match membership::user(app, *id).await? {
            Some(u) => users.push(u),
            None => return Err(not_found(&format!("no user {id}"))),
        }
    }
    Ok(users)
}

/// Makes a connecting user known by id, unless a persister already knows
/// them under this name.
///
/// # Errors
/// `unavailable`.
pub async fn announce_user(app: &App, user: &User) -> Result<(), ApiError> {
    let stored = store::user_name(&app.pool, user.id)
        .await
        .map_err(db_unavailable)?;
    if stored.as_deref() == Some(user.name.as_str()) {
        return Ok(());
    }
    let job = Job::Seen(UserSeen {
        user: user.clone(),
        at: shared::time::now_millis(),
    });
    // One job per name within the stream's duplicate window.
    let msg_id = Uuid::new_v5(&user.id, user.name.as_bytes());
    publish_job(app, &job, &msg_id.to_string()).await
}

/// `room:invite`: an owner or admin adds a member to a group room.
///
/// # Errors
/// `bad_request`, `not_a_member`, `forbidden`, `not_found`, `unavailable`.
pub async fn invite(app: &App, user: &User, req: Invite) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    ensure_manager(app, user, &req.room).await?;
    let access = store::room_access(&app.pool, &req.room)
        .await
        .map_err(db_unavailable)?;
    if access.is_some_and(|a| a.kind == "direct") {
        return Err(forbidden("a direct room keeps its two members"));
    }
    let invitee = named_users(app, &[req.user]).await?.remove(0);
    if membership::role(app, &req.room, invitee.id)
        .await?
        .is_some()
    {
        return Ok(Empty {});
    }
    let job = Job::Invite(Invitation {
        room: req.room,
        by: user.clone(),
        user: invitee,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// `room:set_role`: the owner makes a member an admin or back.
///
/// # Errors
/// `bad_request`, `not_a_member`, `forbidden`, `not_found`, `unavailable`.
pub async fn set_role(app: &App, user: &User, req: SetRole) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    if req.role == Role::Owner {
        return Err(ApiError::bad_request("role is \"admin\" or \"member\""));
    }
    match membership::role(app, &req.room, user.id).await? {
        None => return Err(ApiError::not_a_member()),
        Some(Role::Owner) => {}
        Some(_) => return Err(forbidden("only the room's owner changes roles")),
    }
    match membership::role(app, &req.room, req.user).await? {
        None => return Err(not_found("that user is not a member of this room")),
        Some(Role::Owner) => return Err(forbidden("the owner's role does not change")),
        Some(current) if current == req.role => return Ok(Empty {}),
        Some(_) => {}
    }
    let target = named_users(app, &[req.user]).await?.remove(0);
    let job = Job::SetRole(RoleChange {
        room: req.room,
        by: user.clone(),
        user: target,
        role: req.role,
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &Uuid::new_v4().to_string()).await?;
    Ok(Empty {})
}

/// The message a request names, refused unless it is a live message of
/// `room`.
async fn live_message(
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

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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
