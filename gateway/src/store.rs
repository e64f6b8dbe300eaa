//! What the gateway reads from PostgreSQL. It never writes: its pool's
//! transactions are read-only and its role only has SELECT.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::protocol::{ApiError, ErrorCode, HistoryQuery, Message, Role, User};
use shared::store::MessageRow;
use sqlx::PgPool;
use uuid::Uuid;

/// A database failure as the client sees it; the cause is logged here,
/// where it is handled.
pub fn db_unavailable(err: sqlx::Error) -> ApiError {
    tracing::warn!(error = %err, "database read failed");
    ApiError::new(
        ErrorCode::Unavailable,
        "the database is unavailable; try again",
    )
}

/// The rooms a user is a member of.
///
/// # Errors
/// Any database error.
pub async fn rooms_of(pool: &PgPool, user: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = $1 ORDER BY room_id")
        .bind(user)
        .fetch_all(pool)
        .await
}

/// Who may join a room.
#[derive(Debug, sqlx::FromRow)]
pub struct RoomAccess {
    pub kind: String,
    pub public: bool,
}

/// # Errors
/// Any database error.
pub async fn room_access(pool: &PgPool, room: &str) -> Result<Option<RoomAccess>, sqlx::Error> {
    sqlx::query_as("SELECT kind, public FROM rooms WHERE id = $1")
        .bind(room)
        .fetch_optional(pool)
        .await
}

/// A room's origin as its row has it (a room whose creation is no longer
/// in the stream). A room made by a replayed message has no owner: nobody
/// owns it.
///
/// # Errors
/// Any database error.
pub async fn origin(
    pool: &PgPool,
    room: &str,
) -> Result<Option<shared::membership::Origin>, sqlx::Error> {
    let row: Option<(String, bool, Option<Uuid>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT kind, public, owner_id, created_at FROM rooms WHERE id = $1")
            .bind(room)
            .fetch_optional(pool)
            .await?;
    Ok(
        row.map(|(kind, public, owner, at)| shared::membership::Origin {
            kind: if kind == "direct" {
                shared::protocol::RoomKind::Direct
            } else {
                shared::protocol::RoomKind::Group
            },
            public,
            owner: owner.unwrap_or_default(),
            at,
        }),
    )
}

/// The stored members of a room, at most `limit`: the owner and admins
/// first, then in the order they joined.
///
/// # Errors
/// Any database error.
pub async fn members(pool: &PgPool, room: &str, limit: usize) -> Result<Vec<User>, sqlx::Error> {
    // The name each was last seen with; a member added by id who never
    // connected has none.
    let rows: Vec<(Uuid, Option<String>, Option<String>)> = sqlx::query_as(
        // The first `limit` members come off `room_members_by_rank` (its
        // expression repeated here as is); only they are looked up.
        "SELECT m.user_id, COALESCE(u.name, m.user_name), u.avatar_url
           FROM (SELECT user_id, user_name, role, joined_at FROM room_members
                  WHERE room_id = $1
                  ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END,
                           joined_at, user_id
                  LIMIT $2) m
           LEFT JOIN users u ON u.id = m.user_id
          ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END,
                   m.joined_at, m.user_id",
    )
    .bind(room)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, avatar_url)| User {
            id,
            name,
            avatar_url,
        })
        .collect())
}

/// The room of a stored message.
///
/// # Errors
/// Any database error.
pub async fn message_room(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room_id FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A page of a room's history in the given order of `seq`, between two
/// optional bounds.
macro_rules! history_page {
    ($order:literal) => {
        concat!(
            "SELECT ",
            shared::message_columns!(),
            " FROM messages
               WHERE room_id = $1 AND ($2::int8 IS NULL OR seq > $2) AND ($3::int8 IS NULL OR seq < $3)
                 AND ($5::uuid IS NULL OR thread_of = $5)
               ORDER BY seq ",
            $order,
            " LIMIT $4"
        )
    };
}

/// The page nearest `after`, read forward.
const HISTORY_ASC: &str = history_page!("ASC");

/// The page nearest `before` (or the end), read backward.
const HISTORY_DESC: &str = history_page!("DESC");

/// A page of history in ascending `seq`: after `after` (the first `limit`
/// after it), before `before` (the last `limit` before it), both (the first
/// `limit` between them), or neither (the latest `limit`).
///
/// # Errors
/// Any database error.
pub async fn history(
    pool: &PgPool,
    room: &str,
    q: &HistoryQuery,
) -> Result<Vec<Message>, sqlx::Error> {
    let limit = shared::validate::history_limit(q.limit);
    // Walking forward from `after` reads ascending; otherwise read the page
    // nearest `before` (or the end) descending and turn it around.
    let ascending = q.after.is_some();
    let sql = if ascending { HISTORY_ASC } else { HISTORY_DESC };
    let rows: Vec<MessageRow> = sqlx::query_as(sql)
        .bind(room)
        .bind(q.after)
        .bind(q.before)
        .bind(limit)
        .bind(q.thread_of)
        .fetch_all(pool)
        .await?;
    let mut messages: Vec<Message> = rows.into_iter().map(Message::from).collect();
    if !ascending {
        messages.reverse();
    }
    Ok(messages)
}

/// A row of `GET /v1/rooms`.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RoomSummary {
    pub id: String,
    pub name: Option<String>,
    #[schema(example = "group")]
    pub kind: String,
    /// Messages from others after the user's read mark.
    pub unread: i64,
    #[serde(with = "shared::time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_message_at: Option<DateTime<Utc>>,
    /// A direct room's other member, for clients to show by name and
    /// presence; absent for group rooms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    /// The user's notification level here: `all`, `mentions` or `none`.
    pub notifications: String,
}

/// The user's rooms with unread counts, most recently active first.
///
/// # Errors
/// Any database error.
pub async fn room_list(pool: &PgPool, user: Uuid) -> Result<Vec<RoomSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.name, r.kind, r.last_message_at,
                (SELECT count(*) FROM messages m
                  WHERE m.room_id = r.id AND m.seq > rm.read_seq
                    AND m.sender_id <> rm.user_id AND m.deleted_at IS NULL) AS unread,
                p.peer_id, p.peer_name, rm.notify AS notifications
           FROM room_members rm JOIN rooms r ON r.id = rm.room_id
           LEFT JOIN LATERAL (
                SELECT o.user_id AS peer_id, u.name AS peer_name
                  FROM room_members o LEFT JOIN users u ON u.id = o.user_id
                 WHERE r.kind = 'direct' AND o.room_id = r.id AND o.user_id <> rm.user_id
                 LIMIT 1) p ON true
          WHERE rm.user_id = $1
          ORDER BY r.last_message_at DESC NULLS LAST, r.id",
    )
    .bind(user)
    .fetch_all(pool)
    .await
}

/// The stored role of a member, and whether the user is banned from the
/// room now.
///
/// # Errors
/// Any database error.
pub async fn role(
    pool: &PgPool,
    room: &str,
    user: Uuid,
) -> Result<(Option<Role>, bool), sqlx::Error> {
    let (role, banned): (Option<String>, bool) = sqlx::query_as(
        "SELECT (SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2),
                EXISTS (SELECT 1 FROM room_bans WHERE room_id = $1 AND user_id = $2
                                                  AND (until IS NULL OR until > now()))",
    )
    .bind(room)
    .bind(user)
    .fetch_one(pool)
    .await?;
    Ok((role.as_deref().map(Role::from_stored), banned))
}

/// What a request about a message needs to know of it.
#[derive(Debug, sqlx::FromRow)]
pub struct MessageMeta {
    pub room_id: String,
    pub sender_id: Uuid,
    pub seq: i64,
    pub deleted: bool,
    /// The root of the thread it is a reply in.
    pub thread_of: Option<Uuid>,
    /// The asking user's read mark in the message's room.
    pub read_seq: Option<i64>,
}

/// # Errors
/// Any database error.
pub async fn message_meta(
    pool: &PgPool,
    id: Uuid,
    user: Uuid,
) -> Result<Option<MessageMeta>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.room_id, m.sender_id, m.seq, m.deleted_at IS NOT NULL AS deleted, m.thread_of,
                rm.read_seq
           FROM messages m
           LEFT JOIN room_members rm ON rm.room_id = m.room_id AND rm.user_id = $2
          WHERE m.id = $1",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await
}

/// A user's name as a persister last saw it.
///
/// # Errors
/// Any database error.
pub async fn user(pool: &PgPool, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT name, avatar_url FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(name, avatar_url)| User {
        id,
        name: Some(name),
        avatar_url,
    }))
}
