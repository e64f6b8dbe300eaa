//! Every NATS name of a deployment derives from its stream name
//! (`CHAT_STREAM`), so two deployments or two test runs can share one NATS
//! server without seeing each other's jobs or events.

use std::fmt;

/// Rooms are spread over this many partitions; each is written by one
/// persister at a time, which keeps each room's jobs in order. Part of a
/// deployment's data layout: changing it needs the stream drained first.
pub const PARTITIONS: u32 = 8;

/// The partition of a room: FNV-1a of its id.
pub fn partition(room: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in room.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % PARTITIONS
}

/// The names of one deployment: stream, subjects and consumer.
#[derive(Clone, Debug)]
pub struct Subjects {
    stream: String,
}

/// A stream name that cannot be used as a NATS stream name and subject token.
#[derive(Debug, thiserror::Error)]
#[error("CHAT_STREAM must be 1-32 characters of A-Z, a-z, 0-9, '_' or '-', got {0:?}")]
pub struct BadStreamName(pub String);

impl Subjects {
    /// # Errors
    /// When `stream` is not a valid stream name (it becomes a subject token).
    pub fn new(stream: &str) -> Result<Self, BadStreamName> {
        let ok = !stream.is_empty()
            && stream.len() <= 32
            && stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self {
                stream: stream.to_owned(),
            })
        } else {
            Err(BadStreamName(stream.to_owned()))
        }
    }

    /// The JetStream stream holding every job.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject filter covering every job (`<S>.job.>`).
    pub fn jobs_filter(&self) -> String {
        format!("{}.job.>", self.stream)
    }

    /// Where a job is published: `<S>.job.<partition>.<room>.<topic>`.
    /// Room ids and topics are validated to be safe subject tokens before
    /// they reach here.
    pub fn job(&self, room: &str, topic: &str) -> String {
        format!("{}.job.{}.{room}.{topic}", self.stream, partition(room))
    }

    /// Every job of one partition (`<S>.job.<p>.>`).
    pub fn partition_filter(&self, p: u32) -> String {
        format!("{}.job.{p}.>", self.stream)
    }

    /// The durable consumer of one partition.
    pub fn partition_consumer(&self, p: u32) -> String {
        format!("{}_persister_{p}", self.stream)
    }

    /// The KV bucket of partition leases (which persister writes which).
    pub fn leases_bucket(&self) -> String {
        format!("{}_leases", self.stream)
    }

    /// Where a scheduled message waits, as a JetStream schedule, until the
    /// server publishes it to the room's message subject. Outside
    /// [`Self::jobs_filter`]: persisters see the message only when it falls
    /// due.
    pub fn schedule(&self, room: &str, temp_id: &uuid::Uuid) -> String {
        format!("{}.sched.{room}.{temp_id}", self.stream)
    }

    /// Every schedule subject (`<S>.sched.>`).
    pub fn schedules_filter(&self) -> String {
        format!("{}.sched.>", self.stream)
    }

    /// The subject of every membership job of one user in one room: its
    /// last message says whether the user is a member now, even before a
    /// persister has written it.
    pub fn membership(&self, room: &str, user: &uuid::Uuid) -> String {
        self.job(room, &format!("member.{user}"))
    }

    /// Every membership job of one room, of any user
    /// (`<S>.job.<p>.<room>.member.*`): its first is the room's creation.
    pub fn room_memberships(&self, room: &str) -> String {
        self.job(room, "member.*")
    }

    /// Every membership job of one user, in any room
    /// (`<S>.job.*.*.member.<user>`).
    pub fn user_memberships(&self, user: &uuid::Uuid) -> String {
        format!("{}.job.*.*.member.{user}", self.stream)
    }

    /// Where a user's own jobs go; its last message holds the user's
    /// latest name.
    pub fn user_job(&self, user: &uuid::Uuid) -> String {
        self.job(crate::jobs::USERS, &user.to_string())
    }

    /// Core NATS subject of the gateways' presence notices.
    pub fn presence(&self) -> String {
        format!("{}.presence", self.stream)
    }

    /// Where a gateway asks every gateway to take a user out of a room in
    /// memory at once (a removal or a ban, before it is acked).
    pub fn revocations(&self) -> String {
        format!("{}.revoke", self.stream)
    }

    /// The JetStream stream of webhook events, apart from the jobs: it
    /// keeps them only as long as deliveries are retried, and a replay of
    /// the jobs never reads it.
    pub fn hooks_stream(&self) -> String {
        format!("{}_hooks", self.stream)
    }

    /// Where a room's webhook events are recorded: `<S>.hook.<room>`.
    pub fn hook(&self, room: &str) -> String {
        format!("{}.hook.{room}", self.stream)
    }

    /// Every webhook event (`<S>.hook.>`).
    pub fn hooks_filter(&self) -> String {
        format!("{}.hook.>", self.stream)
    }

    /// The durable consumer delivering webhook events to one receiver,
    /// named by `key` (a digest of its URL).
    pub fn hook_consumer(&self, key: &str) -> String {
        format!("{}_hooks_{key}", self.stream)
    }

    /// Core NATS subject carrying a room's events to every gateway.
    pub fn room_events(&self, room: &str) -> String {
        format!("{}.evt.room.{room}", self.stream)
    }

    /// Core NATS subject carrying events for one user (an invitation, a
    /// membership change made from another tab) to the gateways the user
    /// is connected to.
    pub fn user_events(&self, user: &uuid::Uuid) -> String {
        format!("{}.evt.user.{user}", self.stream)
    }

    /// Every user's events: a gateway follows them all on one
    /// subscription and keeps those of its local users.
    pub fn all_user_events(&self) -> String {
        format!("{}.evt.user.*", self.stream)
    }

    /// The user a subject of [`Self::user_events`] is for.
    pub fn user_of_events(&self, subject: &str) -> Option<uuid::Uuid> {
        subject
            .strip_prefix(self.stream.as_str())?
            .strip_prefix(".evt.user.")?
            .parse()
            .ok()
    }
}

impl fmt::Display for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_every_partition_and_always_land_in_the_same_one() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let room = format!("room-{i}");
            assert_eq!(partition(&room), partition(&room));
            seen.insert(partition(&room));
        }
        assert_eq!(seen.len(), PARTITIONS as usize);
        // The FNV-1a 32-bit value of "lobby", computed independently:
        // the layout must not change between builds.
        assert_eq!(partition("lobby"), 0x1c5a_0ed3 % PARTITIONS);
    }

    #[test]
    fn stream_names_that_break_subjects_are_refused() {
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(33)] {
            assert!(Subjects::new(bad).is_err(), "{bad:?} accepted");
        }
        let s = Subjects::new("CHAT_t-1").unwrap();
        let p = partition("lobby");
        assert_eq!(s.job("lobby", "msg"), format!("CHAT_t-1.job.{p}.lobby.msg"));
        let u = uuid::Uuid::nil();
        assert_eq!(
            s.membership("lobby", &u),
            format!("CHAT_t-1.job.{p}.lobby.member.{u}")
        );
        assert_eq!(s.room_events("lobby"), "CHAT_t-1.evt.room.lobby");
    }
}
