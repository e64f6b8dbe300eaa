//! Webhook events: what each outcome becomes, and storing them in the hook
//! stream before the jobs they come from are acked.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::protocol::{Message, RoomMember, User};
use shared::subjects::Subjects;
use uuid::Uuid;

use super::Receiver;
use crate::apply::Outcome;

pub const MESSAGE_PERSISTED: &str = "message.persisted";
pub const MESSAGE_EDITED: &str = "message.edited";
pub const MESSAGE_DELETED: &str = "message.deleted";
pub const MEMBER_JOINED: &str = "room.member_joined";
pub const MEMBER_LEFT: &str = "room.member_left";
pub const NOTIFICATION: &str = "notification";
pub const MESSAGE_FLAGGED: &str = "message.flagged";

/// How long the hook stream keeps an event: beyond the day of retries a
/// receiver is promised, with room for an outage of every persister.
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long the server waits for an event's ack before handing it out
/// again. The deliverer keeps the events it holds with progress acks, and
/// a new holder rewinds the consumer itself, so this only bounds how long
/// a lost ack keeps an event.
pub const ACK_WAIT: Duration = Duration::from_secs(30 * 60);
/// Events handed out and not yet acked, per receiver: what a receiver that
/// is down lets pile up in the deliverer's memory; the rest waits in the
/// stream.
pub const MAX_ACK_PENDING: i64 = 10_000;

/// Names of the events' ids, so every retry and every retelling of one
/// event carries the same id.
const EVENT_ID_NS: Uuid = Uuid::from_u128(0x6b1d_0c2e_8f4a_4e43_9d7a_52a8_91f0_0003);

/// The body of one webhook request.
#[derive(Serialize)]
pub struct HookEvent<T: Serialize> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(with = "shared::time")]
    pub created_at: DateTime<Utc>,
    pub data: T,
}

impl<T: Serialize> HookEvent<T> {
    /// An event whose id is named by its type and `key`.
    pub fn new(kind: &'static str, key: &[u8], created_at: DateTime<Utc>, data: T) -> Self {
        let mut name = Vec::with_capacity(kind.len() + 1 + key.len());
        name.extend_from_slice(kind.as_bytes());
        name.push(b':');
        name.extend_from_slice(key);
        Self {
            id: Uuid::new_v5(&EVENT_ID_NS, &name),
            kind,
            created_at,
            data,
        }
    }

    pub fn to_json(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("an event of plain fields always serializes")
            .into()
    }
}

/// A `notification` event's data.
#[derive(Serialize)]
pub struct Notification<'a> {
    pub room: &'a str,
    pub user: &'a User,
    pub message: &'a Message,
}

/// The notification of `message` for `user`: one per member and message.
pub fn notification(message: &Message, user: &User) -> HookEvent<serde_json::Value> {
    let mut key = message.id.as_bytes().to_vec();
    key.extend_from_slice(user.id.as_bytes());
    let data = Notification {
        room: &message.room,
        user,
        message,
    };
    HookEvent::new(
        NOTIFICATION,
        &key,
        message.created_at,
        serde_json::to_value(data).expect("plain fields"),
    )
}

/// A `message.flagged` event's data.
#[derive(Serialize)]
struct FlagData<'a> {
    message: &'a Message,
    by: &'a User,
    reason: Option<&'a str>,
}

/// An event recorded for a room: its room, its id and its body.
pub struct Recorded {
    pub room: String,
    pub id: Uuid,
    pub body: bytes::Bytes,
}

/// The webhook event of an outcome; `None` for those webhooks are not told
/// (role changes, reactions).
pub fn event_of(outcome: &Outcome) -> Option<Recorded> {
    let (room, id, body) = match outcome {
        Outcome::Persisted(m) | Outcome::Retold(m) => {
            message_event(MESSAGE_PERSISTED, m, m.id.as_bytes(), m.created_at)
        }
        Outcome::Edited(m) => {
            let at = m.edited_at.unwrap_or(m.created_at);
            let mut key = m.id.as_bytes().to_vec();
            key.extend_from_slice(&at.timestamp_millis().to_be_bytes());
            message_event(MESSAGE_EDITED, m, &key, at)
        }
        Outcome::Deleted(m) => message_event(
            MESSAGE_DELETED,
            m,
            m.id.as_bytes(),
            m.deleted_at.unwrap_or(m.created_at),
        ),
        Outcome::Joined { room, user, at, .. } => member_event(MEMBER_JOINED, room, user, *at),
        Outcome::Left { room, user, at, .. } => member_event(MEMBER_LEFT, room, user, *at),
        Outcome::Flagged {
            message,
            by,
            reason,
            at,
        } => {
            let mut key = message.id.as_bytes().to_vec();
            key.extend_from_slice(by.id.as_bytes());
            key.extend_from_slice(&at.timestamp_millis().to_be_bytes());
            let data = FlagData {
                message,
                by,
                reason: reason.as_deref(),
            };
            let ev = HookEvent::new(MESSAGE_FLAGGED, &key, *at, data);
            (message.room.clone(), ev.id, ev.to_json())
        }
        Outcome::RoleChanged { .. } | Outcome::Reactions { .. } => return None,
    };
    Some(Recorded { room, id, body })
}

fn message_event(
    kind: &'static str,
    m: &Message,
    key: &[u8],
    at: DateTime<Utc>,
) -> (String, Uuid, bytes::Bytes) {
    let ev = HookEvent::new(kind, key, at, m);
    (m.room.clone(), ev.id, ev.to_json())
}

fn member_event(
    kind: &'static str,
    room: &str,
    user: &User,
    at: DateTime<Utc>,
) -> (String, Uuid, bytes::Bytes) {
    let mut key = room.as_bytes().to_vec();
    key.extend_from_slice(user.id.as_bytes());
    key.extend_from_slice(&at.timestamp_millis().to_be_bytes());
    let ev = HookEvent::new(kind, &key, at, RoomMember { room, user });
    (room.to_owned(), ev.id, ev.to_json())
}

/// Stores the webhook events of committed outcomes.
#[derive(Clone)]
pub struct Recorder {
    pub js: jetstream::Context,
    pub subjects: Subjects,
}

impl Recorder {
    /// Stores the events of `outcomes` in order and waits until the server
    /// has every one. An event stored before (a retelling) is dropped by
    /// the stream's duplicate window, or reaches receivers again with its
    /// id, which they deduplicate by.
    ///
    /// # Errors
    /// When the server does not store them; the jobs are then not acked.
    pub async fn record(&self, outcomes: &[Outcome]) -> anyhow::Result<()> {
        let mut acks = Vec::new();
        for ev in outcomes.iter().filter_map(event_of) {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", ev.id.to_string().as_str());
            acks.push(
                self.js
                    .publish_with_headers(self.subjects.hook(&ev.room), headers, ev.body)
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }
}

/// Creates the hook stream and each receiver's consumer when missing. A new
/// receiver's consumer starts with the events after its creation: it is made
/// at start, before this persister records anything.
///
/// # Errors
/// When NATS refuses them.
pub async fn ensure(
    js: &jetstream::Context,
    subjects: &Subjects,
    receivers: &[Receiver],
    replicas: usize,
) -> anyhow::Result<()> {
    let hooks = js
        .get_or_create_stream(stream::Config {
            name: subjects.hooks_stream(),
            subjects: vec![subjects.hooks_filter()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: RETENTION,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    for r in receivers {
        let name = subjects.hook_consumer(&r.key);
        hooks
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subjects.hooks_filter(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                },
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: Uuid::from_u128(7),
            name: Some("Ann".into()),
            avatar_url: None,
        }
    }

    #[test]
    fn an_event_told_again_keeps_its_id_and_each_change_has_its_own() {
        let at: DateTime<Utc> = "2026-11-22T10:00:00.123Z".parse().unwrap();
        let joined = |retold, at| Outcome::Joined {
            room: "r".into(),
            user: user(),
            by_self: true,
            at,
            retold,
            big: false,
        };
        let a = event_of(&joined(false, at)).unwrap();
        let b = event_of(&joined(true, at)).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.body, b.body);
        let later = event_of(&joined(false, at + chrono::Duration::seconds(1))).unwrap();
        assert_ne!(a.id, later.id);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["type"], MEMBER_JOINED);
        assert_eq!(v["created_at"], "2026-11-22T10:00:00.123Z");
        assert_eq!(v["data"]["room"], "r");
        assert_eq!(v["data"]["user"]["name"], "Ann");
        assert_eq!(v["id"], a.id.to_string());
    }
}
