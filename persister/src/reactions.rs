//! Reactions: the SQL of adding, taking back and reading them.

use shared::jobs::Reaction;
use shared::protocol::Reactions;
use sqlx::PgConnection;
use uuid::Uuid;

/// Adds or takes back one reaction; true when that changed anything. A
/// message that is not in the room, or is deleted, takes none.
///
/// # Errors
/// Any database error.
pub async fn react(tx: &mut PgConnection, r: &Reaction) -> Result<bool, sqlx::Error> {
    let done = if r.add {
        sqlx::query(
            "INSERT INTO message_reactions (message_id, emoji, user_id, created_at)
             SELECT m.id, $2, $3, $4 FROM messages m
              WHERE m.id = $1 AND m.room_id = $5 AND m.deleted_at IS NULL
             ON CONFLICT DO NOTHING",
        )
        .bind(r.message_id)
        .bind(&r.emoji)
        .bind(r.user.id)
        .bind(r.at)
        .bind(&r.room)
        .execute(&mut *tx)
        .await?
    } else {
        sqlx::query(
            "DELETE FROM message_reactions
              WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
        )
        .bind(r.message_id)
        .bind(&r.emoji)
        .bind(r.user.id)
        .execute(&mut *tx)
        .await?
    };
    Ok(done.rows_affected() == 1)
}

/// A message's reactions as they are now; `None` when it is not a live
/// message of `room`.
///
/// # Errors
/// Any database error.
pub async fn of_message(
    tx: &mut PgConnection,
    room: &str,
    id: Uuid,
) -> Result<Option<Reactions>, sqlx::Error> {
    let row: Option<(sqlx::types::Json<Reactions>,)> = sqlx::query_as(
        "SELECT (SELECT COALESCE(jsonb_object_agg(emoji, users), '{}') FROM
                   (SELECT emoji, jsonb_agg(user_id ORDER BY created_at, user_id) AS users
                      FROM message_reactions r WHERE r.message_id = m.id GROUP BY emoji) x)
           FROM messages m WHERE m.id = $1 AND m.room_id = $2 AND m.deleted_at IS NULL",
    )
    .bind(id)
    .bind(room)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|(r,)| r.0))
}

/// Takes every reaction off a message (it was deleted).
///
/// # Errors
/// Any database error.
pub async fn clear(tx: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM message_reactions WHERE message_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
