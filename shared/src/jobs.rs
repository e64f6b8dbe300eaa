//! Jobs: every change to the database travels through the stream as one of
//! these, so the stream alone can rebuild the database (one writer).
//!
//! A job carries everything the persister needs to write its rows the same
//! way every time: ids and times are decided by the gateway when it accepts
//! the request, never by the persister, so a redelivery or a replay writes
//! the same row again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::{Attachment, MessageKind, Role, RoomKind, User};
use crate::subjects::Subjects;

/// One unit of work for the persister.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Job {
    /// A new message in a room.
    Message(NewMessage),
    /// A user joins a public room; a room that does not exist yet is created
    /// as a public group room owned by this user.
    Join(Membership),
    /// A user leaves a room.
    Leave(Membership),
    /// A room is created with its owner as the first member.
    CreateRoom(NewRoom),
    /// A member is added by an owner or admin (also the other members of a
    /// new room).
    Invite(Invitation),
    /// The owner changes a member's role.
    SetRole(RoleChange),
    /// The sender changes a message's text.
    Edit(Edit),
    /// The sender, an owner or an admin deletes a message.
    Delete(Deletion),
    /// A user's read mark moves forward.
    Read(ReadMark),
    /// A user connected under this name: makes the user known by id (to be
    /// invited, named in a new room) before they have done anything else.
    Seen(UserSeen),
    /// A member's notification level in a room.
    Notify(NotifySetting),
    /// A member adds or takes back a reaction to a message.
    React(Reaction),
    /// An owner or admin lifts a user's ban (on the user's membership
    /// subject: the user stays a non-member).
    Unban(Membership),
    /// A member reports a message (for the application's moderators: a
    /// webhook event, nothing stored).
    Flag(FlagReport),
}

/// A member's report of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagReport {
    pub room: String,
    pub id: Uuid,
    pub by: User,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// A ban that comes with a leave: the user cannot join, be invited or send
/// in the room until `until` (none: for good) or an unban.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanTerm {
    pub until: Option<DateTime<Utc>>,
}

impl BanTerm {
    /// Whether the ban still holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// One user's reaction with one emoji to one message: added, or (`add`
/// false) taken back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub room: String,
    pub message_id: Uuid,
    pub user: User,
    pub emoji: String,
    pub add: bool,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifySetting {
    pub room: String,
    pub user: User,
    pub level: crate::protocol::NotifyLevel,
    pub at: DateTime<Utc>,
}

/// The pseudo-room of user jobs: `@` cannot start a room id, so it never
/// collides with one.
pub const USERS: &str = "@users";

impl Job {
    /// The room this job belongs to.
    pub fn room(&self) -> &str {
        match self {
            Job::Message(m) => &m.room,
            Job::Join(m) | Job::Leave(m) | Job::Unban(m) => &m.room,
            Job::Flag(f) => &f.room,
            Job::CreateRoom(r) => &r.room,
            Job::Invite(i) => &i.room,
            Job::SetRole(r) => &r.room,
            Job::Edit(e) => &e.room,
            Job::Delete(d) => &d.room,
            Job::Read(r) => &r.room,
            Job::Seen(_) => USERS,
            Job::Notify(n) => &n.room,
            Job::React(r) => &r.room,
        }
    }

    /// The subject the job is published on. Every membership job of a user
    /// in a room shares one subject, whose last message is the user's
    /// current membership; the jobs that change messages share the room's
    /// message subject, so they stay in order with the messages.
    pub fn subject(&self, subjects: &Subjects) -> String {
        let room = self.room();
        match self {
            // With the room's messages: a reaction lands after its message
            // and before its deletion.
            Job::Message(_) | Job::Edit(_) | Job::Delete(_) | Job::React(_) | Job::Flag(_) => {
                subjects.job(room, "msg")
            }
            Job::Join(m) | Job::Leave(m) | Job::Unban(m) => subjects.membership(room, &m.user.id),
            Job::CreateRoom(r) => subjects.membership(room, &r.owner.id),
            Job::Invite(i) => subjects.membership(room, &i.user.id),
            Job::SetRole(r) => subjects.membership(room, &r.user.id),
            Job::Read(r) => subjects.job(room, &format!("read.{}", r.user.id)),
            Job::Seen(u) => subjects.user_job(&u.user.id),
            Job::Notify(n) => subjects.job(room, &format!("notify.{}", n.user.id)),
        }
    }

    /// What the last job on a membership subject says: the user's role,
    /// `None` after a leave. A join that created its room made an owner,
    /// which only the room's first membership job tells (see the gateway's
    /// `membership` module); here a join reads as a member.
    pub fn membership_role(&self) -> Option<Option<Role>> {
        match self {
            Job::Join(_) => Some(Some(Role::Member)),
            Job::Leave(_) | Job::Unban(_) => Some(None),
            Job::CreateRoom(_) => Some(Some(Role::Owner)),
            Job::Invite(_) => Some(Some(Role::Member)),
            Job::SetRole(r) => Some(Some(r.role)),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub id: Uuid,
    pub temp_id: Uuid,
    pub room: String,
    pub sender: User,
    pub kind: MessageKind,
    pub text: String,
    pub reply_to: Option<Uuid>,
    pub attachments: Vec<Attachment>,
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub mentions: Vec<Uuid>,
    /// A reply in this root's thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_of: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub room: String,
    pub user: User,
    pub at: DateTime<Utc>,
    /// Who took the user out (a leave they did not ask for: a manager's
    /// or the server API's removal) or lifted their ban; `None`: the user
    /// themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Uuid>,
    /// A leave that bans the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban: Option<BanTerm>,
    /// The gateway found no such room when it accepted the join.
    #[serde(default)]
    pub creates: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRoom {
    pub room: String,
    pub name: Option<String>,
    pub kind: RoomKind,
    pub public: bool,
    pub owner: User,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub room: String,
    pub by: User,
    pub user: User,
    pub at: DateTime<Utc>,
    /// One of the members the room is created with (`at` is the room's):
    /// void unless that creation is the room's.
    #[serde(default)]
    pub creation: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    pub room: String,
    pub by: User,
    pub user: User,
    pub role: Role,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub room: String,
    pub id: Uuid,
    pub by: User,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub room: String,
    pub id: Uuid,
    pub by: User,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSeen {
    pub user: User,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    pub room: String,
    pub user: User,
    pub message_id: Uuid,
    pub seq: i64,
    pub at: DateTime<Utc>,
}

/// Namespaces for the name-based ids of retried sends.
const TEMP_ID_NS: Uuid = Uuid::from_u128(0x6b1d_0c2e_8f4a_4e43_9d7a_52a8_91f0_0001);
const MESSAGE_ID_NS: Uuid = Uuid::from_u128(0x6b1d_0c2e_8f4a_4e43_9d7a_52a8_91f0_0002);

/// The `(temp_id, id)` of a new message.
///
/// With a `client_id` both are derived from the sender and the client id,
/// so every retry of a send, whenever it comes, carries the same ids: the
/// stream's duplicate window drops quick retries, the messages table's
/// primary key drops late ones, and each retry is acked with the first
/// send's `temp_id` without the gateway remembering anything.
pub fn message_ids(sender: Uuid, client_id: Option<&str>) -> (Uuid, Uuid) {
    match client_id {
        Some(cid) => {
            let mut name = Vec::with_capacity(16 + cid.len());
            name.extend_from_slice(sender.as_bytes());
            name.extend_from_slice(cid.as_bytes());
            let temp_id = Uuid::new_v5(&TEMP_ID_NS, &name);
            (temp_id, Uuid::new_v5(&MESSAGE_ID_NS, temp_id.as_bytes()))
        }
        // v7 ids sort by time, which keeps the primary key index append-only.
        None => (Uuid::new_v4(), Uuid::now_v7()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_with_one_client_id_get_the_same_ids() {
        let user = Uuid::new_v4();
        assert_eq!(message_ids(user, Some("c1")), message_ids(user, Some("c1")));
        assert_ne!(message_ids(user, Some("c1")), message_ids(user, Some("c2")));
        assert_ne!(
            message_ids(user, Some("c1")),
            message_ids(Uuid::new_v4(), Some("c1"))
        );
        assert_ne!(message_ids(user, None), message_ids(user, None));
    }

    fn user() -> User {
        User {
            id: Uuid::nil(),
            name: Some("Ann".into()),
            avatar_url: None,
        }
    }

    #[test]
    fn jobs_round_trip_with_an_op_tag() {
        let job = Job::Join(Membership {
            room: "lobby".into(),
            user: user(),
            at: "2026-11-22T10:00:00.123Z".parse().unwrap(),
            creates: false,
            by: None,
            ban: None,
        });
        let text = serde_json::to_string(&job).unwrap();
        assert!(text.starts_with(r#"{"op":"join""#), "{text}");
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
    }

    #[test]
    fn every_membership_job_of_a_user_shares_one_subject() {
        let s = Subjects::new("S").unwrap();
        let at = crate::time::now_millis();
        let join = Job::Join(Membership {
            room: "r".into(),
            user: user(),
            at,
            creates: false,
            by: None,
            ban: None,
        });
        let role = Job::SetRole(RoleChange {
            room: "r".into(),
            by: user(),
            user: user(),
            role: Role::Admin,
            at,
        });
        assert_eq!(join.subject(&s), role.subject(&s));
        assert_eq!(join.subject(&s), s.membership("r", &Uuid::nil()));
        assert_eq!(role.membership_role(), Some(Some(Role::Admin)));
    }
}
