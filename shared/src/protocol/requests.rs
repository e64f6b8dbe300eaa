//! Client → server: the envelope of every frame, the data of each request,
//! and the request types of the contract.

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{ApiError, Attachment, MessageKind, NotifyLevel, Role, RoomKind};

/// The outer shape of every client frame; `data` is parsed once `type` says
/// what it should be.
///
/// `type` and `ref` are read leniently, so that a frame whose `type` is not
/// a string still gets its error under its `ref`.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<Loose>,
    #[serde(rename = "ref")]
    reference: Option<Loose>,
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
}

/// A field that should be a string, and may be anything.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl Envelope<'_> {
    /// The frame's `ref` when it is a string: what its reply carries.
    pub fn reference(&self) -> Option<&str> {
        match &self.reference {
            Some(Loose::Text(r)) => Some(r),
            _ => None,
        }
    }

    /// # Errors
    /// `bad_request` when `ref` is there but not a string.
    pub fn check_reference(&self) -> Result<(), ApiError> {
        match &self.reference {
            Some(Loose::Other(_)) => Err(ApiError::bad_request("\"ref\" must be a string")),
            _ => Ok(()),
        }
    }

    /// The frame's `type`.
    ///
    /// # Errors
    /// `bad_request` when it is missing or not a string.
    pub fn kind(&self) -> Result<&str, ApiError> {
        match &self.kind {
            Some(Loose::Text(k)) => Ok(k),
            Some(Loose::Other(_)) => Err(ApiError::bad_request("\"type\" must be a string")),
            None => Err(ApiError::bad_request("missing \"type\"")),
        }
    }
}

/// `session:refresh`: a newer token for the open connection.
#[derive(Debug, Deserialize)]
pub struct SessionRefresh {
    pub token: String,
}

/// `room:join`, `room:leave`.
#[derive(Debug, Deserialize)]
pub struct RoomRef {
    pub room: String,
}

/// `message:send` (over REST without `room`, which comes from the path).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendMessage {
    #[serde(default)]
    pub room: Option<String>,
    pub text: String,
    #[serde(default)]
    pub kind: Option<MessageKind>,
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    #[serde(default)]
    pub attachments: Option<Vec<Attachment>>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub deliver_after_s: Option<u64>,
    /// Members the message names (at most 50); their notification level
    /// `mentions` lets it reach them.
    #[serde(default)]
    pub mentions: Option<Vec<Uuid>>,
    /// Makes it a reply in the thread of this message of the room (which
    /// is not itself in a thread).
    #[serde(default)]
    pub thread_of: Option<Uuid>,
}

/// `room:notifications`.
#[derive(Debug, Deserialize)]
pub struct RoomNotifications {
    pub room: String,
    pub level: NotifyLevel,
}

/// `room:create`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateRoom {
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub kind: RoomKind,
    #[serde(default)]
    pub members: Vec<Uuid>,
    #[serde(default)]
    pub public: Option<bool>,
}

/// `room:invite`.
#[derive(Debug, Deserialize)]
pub struct Invite {
    pub room: String,
    pub user: Uuid,
}

/// `room:set_role`.
#[derive(Debug, Deserialize)]
pub struct SetRole {
    pub room: String,
    pub user: Uuid,
    pub role: Role,
}

/// `message:edit`.
#[derive(Debug, Deserialize)]
pub struct EditMessage {
    pub room: String,
    pub id: Uuid,
    pub text: String,
}

/// `reaction:add` and `reaction:remove`.
#[derive(Debug, Deserialize)]
pub struct React {
    pub room: String,
    pub message_id: Uuid,
    pub emoji: String,
}

/// `room:remove`, `room:ban` and `room:unban`: a manager acts on a user.
#[derive(Debug, Deserialize)]
pub struct Moderate {
    pub room: String,
    pub user: Uuid,
    /// `room:ban` only: when the ban ends (none: for good).
    #[serde(default)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// `message:flag`: a member reports a message.
#[derive(Debug, Deserialize)]
pub struct Flag {
    pub room: String,
    pub id: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `message:delete`.
#[derive(Debug, Deserialize)]
pub struct DeleteMessage {
    pub room: String,
    pub id: Uuid,
}

/// `message:read`.
#[derive(Debug, Deserialize)]
pub struct MarkRead {
    pub room: String,
    pub message_id: Uuid,
}

/// `history:fetch` and `GET /v1/rooms/{room}/messages`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    pub room: Option<String>,
    /// Only the replies of this thread.
    #[serde(default)]
    pub thread_of: Option<Uuid>,
    #[serde(default)]
    pub after: Option<i64>,
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `GET /v1/search`.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: Option<String>,
    /// Only this room's messages.
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// The client → server types of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    RoomJoin,
    RoomLeave,
    RoomCreate,
    RoomInvite,
    RoomSetRole,
    MessageSend,
    MessageEdit,
    MessageDelete,
    TypingStart,
    TypingStop,
    MessageRead,
    HistoryFetch,
    MatchRandom,
    MatchCancel,
    SessionRefresh,
    UserUpdate,
    RoomNotifications,
    ReactionAdd,
    ReactionRemove,
    RoomRemove,
    RoomBan,
    RoomUnban,
    MessageFlag,
}

impl RequestType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "room:join" => Self::RoomJoin,
            "room:leave" => Self::RoomLeave,
            "room:create" => Self::RoomCreate,
            "room:invite" => Self::RoomInvite,
            "room:set_role" => Self::RoomSetRole,
            "message:send" => Self::MessageSend,
            "message:edit" => Self::MessageEdit,
            "message:delete" => Self::MessageDelete,
            "typing:start" => Self::TypingStart,
            "typing:stop" => Self::TypingStop,
            "message:read" => Self::MessageRead,
            "history:fetch" => Self::HistoryFetch,
            "match:random" => Self::MatchRandom,
            "match:cancel" => Self::MatchCancel,
            "session:refresh" => Self::SessionRefresh,
            "user:update" => Self::UserUpdate,
            "room:notifications" => Self::RoomNotifications,
            "reaction:add" => Self::ReactionAdd,
            "reaction:remove" => Self::ReactionRemove,
            "room:remove" => Self::RoomRemove,
            "room:ban" => Self::RoomBan,
            "room:unban" => Self::RoomUnban,
            "message:flag" => Self::MessageFlag,
            _ => return None,
        })
    }
}
