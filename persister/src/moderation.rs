//! Moderation: the SQL of bans and of reading a flagged message.

use shared::jobs::{FlagReport, Membership};
use shared::protocol::Message;
use sqlx::PgConnection;

use shared::store::MessageRow;

/// Records the ban a leave carries (a later ban replaces an earlier one).
/// Nobody bans the room's owner: such a ban changes nothing.
///
/// # Errors
/// Any database error.
pub async fn ban(tx: &mut PgConnection, m: &Membership) -> Result<(), sqlx::Error> {
    let (Some(term), Some(by)) = (&m.ban, m.by) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO room_bans (room_id, user_id, until, by_id, created_at)
         SELECT r.id, $2, $3, $4, $5 FROM rooms r
          WHERE r.id = $1 AND r.owner_id IS DISTINCT FROM $2
         ON CONFLICT (room_id, user_id)
         DO UPDATE SET until = EXCLUDED.until, by_id = EXCLUDED.by_id,
                       created_at = EXCLUDED.created_at",
    )
    .bind(&m.room)
    .bind(m.user.id)
    .bind(term.until)
    .bind(by)
    .bind(m.at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Lifts a ban; true when there was one.
///
/// # Errors
/// Any database error.
pub async fn unban(tx: &mut PgConnection, m: &Membership) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM room_bans WHERE room_id = $1 AND user_id = $2")
        .bind(&m.room)
        .bind(m.user.id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The message a report is about, if it is a live message of its room.
///
/// # Errors
/// Any database error.
pub async fn flagged(
    tx: &mut PgConnection,
    f: &FlagReport,
) -> Result<Option<Message>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        shared::message_columns!(),
        " FROM messages WHERE id = $1 AND room_id = $2 AND deleted_at IS NULL"
    ))
    .bind(f.id)
    .bind(&f.room)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(Message::from))
}
