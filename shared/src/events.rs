//! Room events between processes: core NATS messages on a room's subject
//! whose payload is the finished wire frame, so a gateway forwards the bytes
//! to its connections without parsing or re-serializing them. What a
//! gateway needs to route an event travels in headers.

use async_nats::HeaderMap;
use bytes::Bytes;
use uuid::Uuid;

/// The event's wire `type`.
pub const TYPE_HEADER: &str = "Chat-Event";
/// A user who must not get this event (the typer, the joiner).
pub const SKIP_USER_HEADER: &str = "Chat-Skip-User";
/// The room of an event sent on a user's subject.
pub const ROOM_HEADER: &str = "Chat-Room";
/// The user a membership event is about.
pub const USER_HEADER: &str = "Chat-User";
/// The `temp_id` of a `message:persisted`, so the sender's gateway can hold
/// the event until the sender has its ack.
pub const TEMP_ID_HEADER: &str = "Chat-Temp-Id";
/// The `seq` of a `message:persisted`.
pub const SEQ_HEADER: &str = "Chat-Seq";
/// Set on a `message:persisted` published again (its persister may have
/// died before publishing it): a gateway that delivered that room's `seq`
/// already drops it.
pub const REPEAT_HEADER: &str = "Chat-Repeat";
/// Set on a membership event of a big room
/// ([`crate::membership::BIG_ROOM`]): gateways apply it and tell no
/// connection.
pub const QUIET_HEADER: &str = "Chat-Quiet";

/// One event for the members of a room.
#[derive(Clone, Debug)]
pub struct RoomEvent {
    pub kind: String,
    pub room: Option<String>,
    pub skip_user: Option<Uuid>,
    pub user: Option<Uuid>,
    pub temp_id: Option<Uuid>,
    pub seq: Option<i64>,
    pub repeat: bool,
    /// Applied by gateways, delivered to nobody (see [`QUIET_HEADER`]).
    pub quiet: bool,
    /// The complete server → client frame.
    pub frame: Bytes,
}

impl RoomEvent {
    /// An event for the members of `room`, built from its wire frame.
    pub fn new<T: serde::Serialize>(kind: &str, room: &str, data: T) -> Self {
        Self {
            kind: kind.to_owned(),
            room: Some(room.to_owned()),
            skip_user: None,
            user: None,
            temp_id: None,
            seq: None,
            repeat: false,
            quiet: false,
            frame: crate::protocol::ServerFrame::new(kind, data)
                .to_json()
                .into(),
        }
    }

    /// Not for this user (the typer, the joiner).
    #[must_use]
    pub fn skipping(mut self, user: Uuid) -> Self {
        self.skip_user = Some(user);
        self
    }

    /// For gateways only, not for connections (see [`QUIET_HEADER`]).
    #[must_use]
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// About this user (membership events).
    #[must_use]
    pub fn about(mut self, user: Uuid) -> Self {
        self.user = Some(user);
        self
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TYPE_HEADER, self.kind.as_str());
        if let Some(r) = &self.room {
            h.insert(ROOM_HEADER, r.as_str());
        }
        if let Some(u) = self.skip_user {
            h.insert(SKIP_USER_HEADER, u.to_string().as_str());
        }
        if let Some(u) = self.user {
            h.insert(USER_HEADER, u.to_string().as_str());
        }
        if let Some(t) = self.temp_id {
            h.insert(TEMP_ID_HEADER, t.to_string().as_str());
        }
        if let Some(s) = self.seq {
            h.insert(SEQ_HEADER, s.to_string().as_str());
        }
        if self.repeat {
            h.insert(REPEAT_HEADER, "1");
        }
        if self.quiet {
            h.insert(QUIET_HEADER, "1");
        }
        h
    }

    /// Reads an event back from a NATS message; `None` for a message that
    /// is not one (no type header).
    pub fn from_nats(msg: &async_nats::Message) -> Option<Self> {
        let headers = msg.headers.as_ref()?;
        let uuid = |name: &str| headers.get(name).and_then(|v| v.as_str().parse().ok());
        Some(Self {
            kind: headers.get(TYPE_HEADER)?.as_str().to_owned(),
            room: headers.get(ROOM_HEADER).map(|v| v.as_str().to_owned()),
            skip_user: uuid(SKIP_USER_HEADER),
            user: uuid(USER_HEADER),
            temp_id: uuid(TEMP_ID_HEADER),
            seq: headers
                .get(SEQ_HEADER)
                .and_then(|v| v.as_str().parse().ok()),
            repeat: headers.get(REPEAT_HEADER).is_some(),
            quiet: headers.get(QUIET_HEADER).is_some(),
            frame: msg.payload.clone(),
        })
    }
}
