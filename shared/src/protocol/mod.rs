//! The wire protocol of `PROTOCOL.md`: frames, requests, events, messages
//! and error codes. Both binaries build their frames from these types so the
//! two can never disagree on a field name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod requests;

pub use requests::*;

/// The contract's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    TooLarge,
    Unauthorized,
    Forbidden,
    NotAMember,
    NotFound,
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status the contract maps each code to.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::UnknownType => 400,
            Self::TooLarge => 413,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::NotAMember => 403,
            Self::NotFound => 404,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
        }
    }
}

/// A refusal as clients see it: a code and a plain message, never an
/// internal cause (that goes to the log where it is handled).
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }
    pub fn not_a_member() -> Self {
        Self::new(ErrorCode::NotAMember, "you are not a member of this room")
    }
    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "the message queue did not store this in time; nothing was stored, try again",
        )
    }
}

/// A user as it appears inside events. `name` is `null` for a user named
/// by id (invited, added to a room) who never connected: the identity
/// provider is the directory, and the name comes with their first token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub name: Option<String>,
    /// An `http(s)` URL of the user's picture, from their token or
    /// `user:update`.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

impl User {
    /// A user known by a token, with its name.
    pub fn named(id: Uuid, name: impl Into<String>) -> Self {
        Self {
            id,
            name: Some(name.into()),
            avatar_url: None,
        }
    }

    /// A user known only by id: nobody has seen them yet.
    pub fn unnamed(id: Uuid) -> Self {
        Self {
            id,
            name: None,
            avatar_url: None,
        }
    }

    /// The name to show or store; empty for a user never seen.
    pub fn name_or_empty(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// The service itself: the author of what the application's backend does
/// through the server API (system messages, rooms it owns, members it adds).
pub const SERVICE: Uuid = Uuid::nil();

impl User {
    /// The service itself, as a job's author.
    pub fn service() -> Self {
        Self::unnamed(SERVICE)
    }

    pub fn is_service(&self) -> bool {
        self.id == SERVICE
    }
}

fn sender_or_null<S: serde::Serializer>(user: &User, s: S) -> Result<S::Ok, S::Error> {
    if user.is_service() {
        s.serialize_none()
    } else {
        user.serialize(s)
    }
}

fn sender_or_service<'de, D: serde::Deserializer<'de>>(d: D) -> Result<User, D::Error> {
    Ok(Option::<User>::deserialize(d)?.unwrap_or_else(User::service))
}

/// A member's role in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn from_stored(s: &str) -> Self {
        match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            _ => Self::Member,
        }
    }

    /// Owners and admins manage members and delete others' messages.
    pub fn manages(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// A group room or a direct room of two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    #[default]
    Group,
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Direct => "direct",
        }
    }
}

/// What a message is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[default]
    Text,
    Emoji,
    Image,
    File,
    /// From the application's backend, with no sender: only the server API
    /// sends these.
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Emoji => "emoji",
            Self::Image => "image",
            Self::File => "file",
            Self::System => "system",
        }
    }

    /// Reads the stored form; unknown values fall back to text rather than
    /// failing a whole history page.
    pub fn from_stored(s: &str) -> Self {
        match s {
            "emoji" => Self::Emoji,
            "image" => Self::Image,
            "file" => Self::File,
            "system" => Self::System,
            _ => Self::Text,
        }
    }
}

/// Attachment metadata, returned exactly as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    pub url: String,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(max_length = 127)]
    pub mime: String,
    #[schema(maximum = 9_007_199_254_740_992_u64)]
    pub size: u64,
}

/// A stored message as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub seq: i64,
    pub room: String,
    /// `null` for a system message (the service itself sent it).
    #[serde(
        serialize_with = "sender_or_null",
        deserialize_with = "sender_or_service"
    )]
    #[schema(value_type = Option<User>)]
    pub sender: User,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub reply_to: Option<Uuid>,
    pub attachments: Vec<Attachment>,
    pub temp_id: Uuid,
    pub client_id: Option<String>,
    #[serde(with = "crate::time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::option")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The members the message names; `[]` when none.
    #[serde(default)]
    pub mentions: Vec<Uuid>,
    /// Who reacted with what: emoji → user ids, in the order they reacted;
    /// `{}` when none.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, Vec<String>>)]
    pub reactions: Reactions,
    /// The root of the thread this message replies in, `null` outside one.
    #[serde(default)]
    pub thread_of: Option<Uuid>,
    /// A root's thread: its replies' count and the last one's time; `null`
    /// without replies.
    #[serde(default)]
    pub thread: Option<Thread>,
}

/// A thread's summary on its root message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Thread {
    pub count: i64,
    #[serde(with = "crate::time")]
    pub last_at: DateTime<Utc>,
}

/// A message's reactions: emoji → the users who reacted with it.
pub type Reactions = std::collections::BTreeMap<String, Vec<Uuid>>;

/// Which messages of a room reach a member who is offline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyLevel {
    #[default]
    All,
    Mentions,
    None,
}

impl NotifyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::None => "none",
        }
    }
}

/// `message:reactions` data: a message's reactions as they are now.
#[derive(Debug, Serialize)]
pub struct ReactionsEvent<'a> {
    pub room: &'a str,
    pub message_id: Uuid,
    pub reactions: &'a Reactions,
}

/// A server → client frame. `data` is borrowed so an event can be
/// serialized straight from the value that produced it.
#[derive(Debug, Serialize)]
pub struct ServerFrame<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
    pub data: T,
}

impl<'a, T: Serialize> ServerFrame<'a, T> {
    pub fn new(kind: &'a str, data: T) -> Self {
        Self {
            kind,
            reference: None,
            data,
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a
        // string and no custom serializer returns an error.
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// `message:persisted` data.
#[derive(Debug, Serialize, Deserialize)]
pub struct Persisted<M> {
    pub temp_id: Uuid,
    pub message: M,
}

/// `room:joined` / `room:left` data.
#[derive(Debug, Serialize)]
pub struct RoomMember<'a> {
    pub room: &'a str,
    pub user: &'a User,
}

/// `room:role` data.
#[derive(Debug, Serialize)]
pub struct RoomRole<'a> {
    pub room: &'a str,
    pub user: &'a User,
    pub role: Role,
}

/// `message:deleted` data.
#[derive(Debug, Serialize)]
pub struct Deleted<'a> {
    pub room: &'a str,
    pub id: Uuid,
}

/// `message:read` data.
#[derive(Debug, Serialize)]
pub struct ReadEvent<'a> {
    pub room: &'a str,
    pub user: &'a User,
    pub message_id: Uuid,
}

/// Event type names that go over the wire.
pub mod event {
    pub const MESSAGE_PERSISTED: &str = "message:persisted";
    pub const MESSAGE_EDITED: &str = "message:edited";
    pub const MESSAGE_DELETED: &str = "message:deleted";
    pub const MESSAGE_REACTIONS: &str = "message:reactions";
    pub const MESSAGE_READ: &str = "message:read";
    pub const TYPING_START: &str = "typing:start";
    pub const TYPING_STOP: &str = "typing:stop";
    pub const ROOM_JOINED: &str = "room:joined";
    pub const ROOM_LEFT: &str = "room:left";
    pub const ROOM_ROLE: &str = "room:role";
    pub const USER_UPDATED: &str = "user:updated";
    pub const SESSION_READY: &str = "session:ready";
    pub const ACK: &str = "ack";
    pub const ERROR: &str = "error";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_the_contracts_http_statuses() {
        let pairs = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::UnknownType, 400),
            (ErrorCode::TooLarge, 413),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::NotAMember, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::Unavailable, 503),
        ];
        for (code, status) in pairs {
            assert_eq!(code.http_status(), status, "{code:?}");
        }
        assert_eq!(
            serde_json::to_string(&ErrorCode::NotAMember).unwrap(),
            "\"not_a_member\""
        );
    }

    /// A plain new message of `sender`, as the persister stores it.
    fn message(sender: User, kind: MessageKind, text: &str, created_at: DateTime<Utc>) -> Message {
        Message {
            id: Uuid::nil(),
            seq: 1,
            room: "r".into(),
            sender,
            kind,
            text: Some(text.into()),
            reply_to: None,
            attachments: vec![],
            temp_id: Uuid::nil(),
            client_id: None,
            created_at,
            edited_at: None,
            deleted_at: None,
            mentions: vec![],
            reactions: Reactions::new(),
            thread_of: None,
            thread: None,
        }
    }

    #[test]
    fn messages_serialize_with_millisecond_utc_times() {
        let t = "2026-11-22T10:00:00.123Z".parse().unwrap();
        let sender = User::named(Uuid::from_u128(7), "Brave Otter 42");
        let m = message(sender, MessageKind::Text, "hi", t);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["created_at"], "2026-11-22T10:00:00.123Z");
        assert_eq!(v["edited_at"], serde_json::Value::Null);
        assert_eq!(v["kind"], "text");
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_system_message_has_no_sender_on_the_wire_and_reads_back_as_the_service() {
        let now = crate::time::now_millis();
        let m = message(User::service(), MessageKind::System, "Deploy at 5", now);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["sender"], serde_json::Value::Null);
        assert_eq!(v["kind"], "system");
        assert_eq!(serde_json::from_value::<Message>(v).unwrap(), m);
    }
}
