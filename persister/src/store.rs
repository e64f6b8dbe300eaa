//! The persister's SQL: with `messages` (new messages and their `seq`), the
//! only code in the project that writes PostgreSQL.
//!
//! Every write is idempotent — keyed by ids the gateway chose — so a
//! redelivered job or a replayed stream writes each row once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shared::jobs::{
    Deletion, Edit, Invitation, Membership, NewRoom, NotifySetting, ReadMark, RoleChange,
};
use shared::protocol::{Message, Role, RoomKind, User, SERVICE};
use shared::store::MessageRow;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Creates or updates the schema (idempotent).
///
/// # Errors
/// When PostgreSQL is unreachable or a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../migrations").run(pool).await
}

pub use crate::messages::{insert_messages, Positioned, Seqs, Written};

/// Adds a member. A room that does not exist yet is created as a public
/// group room owned by the joiner. A join of a room that is not public
/// (the gateway refuses those; this guards a replay or a race) changes
/// nothing.
///
/// Returns whether the user became a member now.
///
/// # Errors
/// Any database error.
pub async fn join(tx: &mut PgConnection, m: &Membership) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO rooms (id, kind, public, owner_id, created_at)
         VALUES ($1, 'group', true, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&m.room)
    .bind(m.user.id)
    .bind(m.at)
    .execute(&mut *tx)
    .await?;
    let joined = sqlx::query(
        "INSERT INTO room_members (room_id, user_id, user_name, role, joined_at, read_seq)
         SELECT r.id, $2, $3, CASE WHEN r.owner_id = $2 THEN 'owner' ELSE 'member' END, $4, 0
           FROM rooms r
          WHERE r.id = $1 AND (r.public OR r.owner_id = $2)
            AND NOT EXISTS (SELECT 1 FROM room_bans x
                             WHERE x.room_id = r.id AND x.user_id = $2
                               AND (x.until IS NULL OR x.until > $4))
         ON CONFLICT (room_id, user_id) DO NOTHING",
    )
    .bind(&m.room)
    .bind(m.user.id)
    .bind(&m.user.name)
    .bind(m.at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(joined)
}

/// Whether `user` is a member of `room` whose membership began at `at`
/// (when `at` is given): a redelivered join or invitation that was applied
/// already.
///
/// # Errors
/// Any database error.
pub async fn member_since(
    tx: &mut PgConnection,
    room: &str,
    user: Uuid,
    at: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM room_members
                         WHERE room_id = $1 AND user_id = $2
                           AND ($3::timestamptz IS NULL OR joined_at = $3))",
    )
    .bind(room)
    .bind(user)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
}

/// Removes a member. Returns whether the user was one.
///
/// # Errors
/// Any database error.
pub async fn leave(tx: &mut PgConnection, m: &Membership) -> Result<bool, sqlx::Error> {
    // Nobody takes the owner out (the gateway refuses it; this guards a
    // replay or a race).
    let left = sqlx::query(
        "DELETE FROM room_members
          WHERE room_id = $1 AND user_id = $2 AND ($3 OR role <> 'owner')",
    )
    .bind(&m.room)
    .bind(m.user.id)
    .bind(m.by.is_none())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(left)
}

/// A member's notification level; a non-member's changes nothing. Jobs
/// apply in stream order, so the last level set wins.
///
/// # Errors
/// Any database error.
pub async fn set_notify(tx: &mut PgConnection, n: &NotifySetting) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE room_members SET notify = $3 WHERE room_id = $1 AND user_id = $2")
        .bind(&n.room)
        .bind(n.user.id)
        .bind(n.level.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Remembers the latest name of each user of a batch (one statement).
///
/// # Errors
/// Any database error.
pub async fn upsert_users(
    tx: &mut PgConnection,
    users: &HashMap<Uuid, (&User, DateTime<Utc>)>,
) -> Result<(), sqlx::Error> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = users.keys().copied().collect();
    let names: Vec<&str> = ids.iter().map(|id| users[id].0.name_or_empty()).collect();
    let avatars: Vec<Option<&str>> = ids
        .iter()
        .map(|id| users[id].0.avatar_url.as_deref())
        .collect();
    let seen: Vec<DateTime<Utc>> = ids.iter().map(|id| users[id].1).collect();
    sqlx::query(
        "INSERT INTO users AS u (id, name, avatar_url, seen_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
         ON CONFLICT (id) DO UPDATE
            SET name = EXCLUDED.name, avatar_url = EXCLUDED.avatar_url, seen_at = EXCLUDED.seen_at
          WHERE u.seen_at <= EXCLUDED.seen_at",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&avatars)
    .bind(&seen)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Creates a room with its owner as first member. Returns false when the
/// room exists already: a concurrent creation won, and nothing changes —
/// unless this job is the one that created it (a replay after the members
/// were lost), whose owner is then a member again.
///
/// # Errors
/// Any database error.
pub async fn create_room(tx: &mut PgConnection, r: &NewRoom) -> Result<bool, sqlx::Error> {
    let created = sqlx::query(
        "INSERT INTO rooms (id, name, kind, public, owner_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.room)
    .bind(&r.name)
    .bind(r.kind.as_str())
    .bind(r.public && r.kind == RoomKind::Group)
    .bind(r.owner.id)
    .bind(r.at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    sqlx::query(
        "INSERT INTO room_members (room_id, user_id, user_name, role, joined_at)
         SELECT id, $2, $3, 'owner', $4 FROM rooms
          WHERE id = $1 AND owner_id = $2 AND created_at = $4 AND $2 <> $5
         ON CONFLICT DO NOTHING",
    )
    .bind(&r.room)
    .bind(r.owner.id)
    .bind(&r.owner.name)
    .bind(r.at)
    .bind(SERVICE)
    .execute(&mut *tx)
    .await?;
    Ok(created)
}

/// Adds a member on behalf of an owner or admin, by the rules of
/// `shared::membership` (which the gateway applies to the same job before
/// a persister has written anything): one of the members a room was
/// created with counts only if that creation is the room's, and a direct
/// room has no members but those it was created with.
/// Returns whether the user became a member now.
///
/// # Errors
/// Any database error.
pub async fn invite(tx: &mut PgConnection, i: &Invitation) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO room_members (room_id, user_id, user_name, role, joined_at)
         SELECT r.id, $3, $4, 'member', $5 FROM rooms r
          WHERE r.id = $1
            AND CASE WHEN r.kind = 'direct' OR $6
                     THEN r.owner_id = $2 AND r.created_at = $5
                     ELSE $2 = $7 OR EXISTS (SELECT 1 FROM room_members b
                                   WHERE b.room_id = r.id AND b.user_id = $2
                                     AND b.role IN ('owner', 'admin'))
                END
            AND NOT EXISTS (SELECT 1 FROM room_bans x
                             WHERE x.room_id = r.id AND x.user_id = $3
                               AND (x.until IS NULL OR x.until > $5))
         ON CONFLICT (room_id, user_id) DO NOTHING",
    )
    .bind(&i.room)
    .bind(i.by.id)
    .bind(i.user.id)
    .bind(&i.user.name)
    .bind(i.at)
    .bind(i.creation)
    .bind(SERVICE)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(added)
}

/// The room's owner makes a member an admin or back. The owner's own role
/// does not change. Returns whether a role changed.
///
/// # Errors
/// Any database error.
pub async fn set_role(tx: &mut PgConnection, r: &RoleChange) -> Result<bool, sqlx::Error> {
    if r.role == Role::Owner {
        return Ok(false);
    }
    let changed = sqlx::query(
        "UPDATE room_members m SET role = $4
          WHERE m.room_id = $1 AND m.user_id = $3 AND m.role <> 'owner' AND m.role <> $4
            AND ($2 = $5 OR EXISTS (SELECT 1 FROM rooms r WHERE r.id = $1 AND r.owner_id = $2))",
    )
    .bind(&r.room)
    .bind(r.by.id)
    .bind(r.user.id)
    .bind(r.role.as_str())
    .bind(SERVICE)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(changed)
}

/// The sender's new text for a message that is not deleted. An edit older
/// than the one stored (a replay of part of the stream) changes nothing.
/// Returns the message as it is now, if it changed.
///
/// # Errors
/// Any database error.
pub async fn edit(tx: &mut PgConnection, e: &Edit) -> Result<Option<Message>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "UPDATE messages SET text = $4, edited_at = $5, search = $6::tsvector
              WHERE id = $1 AND room_id = $2 AND sender_id = $3 AND deleted_at IS NULL
                AND (edited_at IS NULL OR edited_at < $5)
              RETURNING ",
        shared::message_columns!()
    ))
    .bind(e.id)
    .bind(&e.room)
    .bind(e.by.id)
    .bind(&e.text)
    .bind(e.at)
    .bind(shared::search::vector(&e.room, &e.text))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(Message::from))
}

/// The message as `e` left it, if `e` is its latest edit (a redelivered
/// edit, applied already).
///
/// # Errors
/// Any database error.
pub async fn edited_by(tx: &mut PgConnection, e: &Edit) -> Result<Option<Message>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        shared::message_columns!(),
        " FROM messages
               WHERE id = $1 AND room_id = $2 AND sender_id = $3 AND edited_at = $4
                 AND deleted_at IS NULL"
    ))
    .bind(e.id)
    .bind(&e.room)
    .bind(e.by.id)
    .bind(e.at)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(Message::from))
}

/// The message as `d` left it, if `d` is what deleted it (a redelivered
/// delete, applied already).
///
/// # Errors
/// Any database error.
pub async fn deleted_by(
    tx: &mut PgConnection,
    d: &Deletion,
) -> Result<Option<Message>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        shared::message_columns!(),
        " FROM messages WHERE id = $1 AND room_id = $2 AND deleted_at = $3"
    ))
    .bind(d.id)
    .bind(&d.room)
    .bind(d.at)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(Message::from))
}

/// Deletes a message for its sender, or for the room's owner or an admin:
/// the row stays (id and seq), its text and attachments go. Returns the
/// message as it is now, if it was deleted now.
///
/// # Errors
/// Any database error.
pub async fn delete(tx: &mut PgConnection, d: &Deletion) -> Result<Option<Message>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "UPDATE messages m SET text = NULL, attachments = '[]', search = NULL, deleted_at = $4
          WHERE m.id = $1 AND m.room_id = $2 AND m.deleted_at IS NULL
            AND ($3 = $5 OR m.sender_id = $3 OR EXISTS (
                 SELECT 1 FROM room_members a
                  WHERE a.room_id = $2 AND a.user_id = $3 AND a.role IN ('owner', 'admin')))
          RETURNING ",
        shared::message_columns!()
    ))
    .bind(d.id)
    .bind(&d.room)
    .bind(d.by.id)
    .bind(d.at)
    .bind(SERVICE)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(Message::from))
}

/// Moves a read mark forward, never back.
///
/// # Errors
/// Any database error.
pub async fn mark_read(tx: &mut PgConnection, r: &ReadMark) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE room_members SET read_seq = $3
          WHERE room_id = $1 AND user_id = $2 AND read_seq < $3",
    )
    .bind(&r.room)
    .bind(r.user.id)
    .bind(r.seq)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Whether `room` has more than [`shared::membership::BIG_ROOM`] members;
/// counts no further than that.
///
/// # Errors
/// Any database error.
pub async fn is_big(tx: &mut sqlx::PgConnection, room: &str) -> Result<bool, sqlx::Error> {
    let limit = i64::try_from(shared::membership::BIG_ROOM).unwrap_or(i64::MAX) + 1;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM room_members WHERE room_id = $1 LIMIT $2) m",
    )
    .bind(room)
    .bind(limit)
    .fetch_one(&mut *tx)
    .await?;
    Ok(n >= limit)
}
