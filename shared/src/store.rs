//! Rows both binaries read.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::protocol::{Attachment, Message, MessageKind, User};

/// The columns of a [`MessageRow`], as a literal for `concat!` (the
/// database driver takes only `'static` SQL).
#[macro_export]
macro_rules! message_columns {
    () => {
        "id, seq, room_id, sender_id, sender_name, sender_avatar, kind, text, reply_to, mentions, \
         attachments, temp_id, client_id, created_at, edited_at, deleted_at, \
         (SELECT COALESCE(jsonb_object_agg(emoji, users), '{}') FROM \
            (SELECT emoji, jsonb_agg(user_id ORDER BY created_at, user_id) AS users \
               FROM message_reactions r WHERE r.message_id = id GROUP BY emoji) x) AS reactions, \
         thread_of, message_thread(id) AS thread"
    };
}

/// A `messages` row as selected with [`message_columns!`].
#[derive(sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub seq: i64,
    pub room_id: String,
    pub sender_id: Uuid,
    pub sender_name: String,
    pub sender_avatar: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub reply_to: Option<Uuid>,
    pub mentions: Vec<Uuid>,
    pub attachments: sqlx::types::Json<Vec<Attachment>>,
    pub temp_id: Uuid,
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub reactions: sqlx::types::Json<crate::protocol::Reactions>,
    pub thread_of: Option<Uuid>,
    pub thread: Option<sqlx::types::Json<crate::protocol::Thread>>,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Message {
            id: r.id,
            seq: r.seq,
            room: r.room_id,
            sender: User {
                id: r.sender_id,
                name: Some(r.sender_name),
                avatar_url: r.sender_avatar,
            },
            kind: MessageKind::from_stored(&r.kind),
            text: r.text,
            reply_to: r.reply_to,
            attachments: r.attachments.0,
            temp_id: r.temp_id,
            client_id: r.client_id,
            created_at: r.created_at,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
            mentions: r.mentions,
            reactions: r.reactions.0,
            thread_of: r.thread_of,
            thread: r.thread.map(|t| t.0),
        }
    }
}
