//! Which members a message should reach by push: those with no open
//! connection on any gateway whose level lets it through.

use shared::protocol::{Message, NotifyLevel, User, SERVICE};
use sqlx::PgPool;
use uuid::Uuid;

use crate::online::Online;

/// A member of a room, with their notification level there.
#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: Uuid,
    user_name: Option<String>,
    avatar_url: Option<String>,
    notify: String,
}

/// Whether a member with `level` is told of `message`.
pub fn level_allows(level: NotifyLevel, member: Uuid, message: &Message) -> bool {
    match level {
        NotifyLevel::All => true,
        NotifyLevel::Mentions => message.mentions.contains(&member),
        NotifyLevel::None => false,
    }
}

fn level(stored: &str) -> NotifyLevel {
    match stored {
        "mentions" => NotifyLevel::Mentions,
        "none" => NotifyLevel::None,
        _ => NotifyLevel::All,
    }
}

/// The members to notify of `message`: not its sender, offline everywhere
/// as presence tells now, and whose level allows it. A system message (the
/// service's) has no sender to leave out.
///
/// # Errors
/// Any database error.
pub async fn offline_members(
    pool: &PgPool,
    online: &Online,
    message: &Message,
) -> Result<Vec<User>, sqlx::Error> {
    let members: Vec<MemberRow> = sqlx::query_as(
        "SELECT m.user_id, COALESCE(u.name, m.user_name) AS user_name, u.avatar_url, m.notify
           FROM room_members m LEFT JOIN users u ON u.id = m.user_id
          WHERE m.room_id = $1 AND m.user_id <> $2
          ORDER BY m.user_id",
    )
    .bind(&message.room)
    .bind(message.sender.id)
    .fetch_all(pool)
    .await?;
    Ok(members
        .into_iter()
        .filter(|m| m.user_id != SERVICE)
        .filter(|m| level_allows(level(&m.notify), m.user_id, message))
        .filter(|m| !online.contains(m.user_id))
        .map(|m| User {
            id: m.user_id,
            name: m.user_name,
            avatar_url: m.avatar_url,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_let_through_all_only_mentions_or_nothing() {
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let message: Message = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(), "seq": 1, "room": "r",
            "sender": {"id": Uuid::new_v4(), "name": "Cy"},
            "kind": "text", "text": "hi @Ann", "reply_to": null, "attachments": [],
            "temp_id": Uuid::new_v4(), "client_id": null,
            "created_at": "2026-11-22T10:00:00.123Z", "edited_at": null, "deleted_at": null,
            "mentions": [ann]
        }))
        .unwrap();
        assert!(level_allows(NotifyLevel::All, bob, &message));
        assert!(level_allows(NotifyLevel::Mentions, ann, &message));
        assert!(!level_allows(NotifyLevel::Mentions, bob, &message));
        assert!(!level_allows(NotifyLevel::None, ann, &message));
        assert_eq!(level("mentions"), NotifyLevel::Mentions);
        assert_eq!(level("none"), NotifyLevel::None);
        assert_eq!(level("all"), NotifyLevel::All);
    }
}
