//! Applying a batch of jobs: one transaction for the whole batch, and the
//! events to publish once it has committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shared::jobs::Job;
use shared::protocol::{Message, Role, User};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::{self, Positioned};

/// A job read from the stream, with its stream sequence.
pub struct StreamJob {
    pub job: Job,
    pub stream_seq: u64,
    /// Delivered before, to a persister that may have written it and then
    /// died, or failed to publish its events: a message found written
    /// already has its event published again, so no gateway misses it.
    pub redelivered: bool,
}

/// What happened, to tell the gateways after the commit.
#[derive(Debug)]
pub enum Outcome {
    Persisted(Message),
    /// A message stored before, by a persister that may have died or failed
    /// before publishing its event: published again, marked as a repeat.
    Retold(Message),
    /// A user became a member. A user who joined by themselves learns it
    /// from their ack (`by_self`); an invited one from this event.
    Joined {
        room: String,
        user: User,
        by_self: bool,
        /// When the job was accepted: names the change for good.
        at: DateTime<Utc>,
        /// A redelivered job found applied already: told to webhooks
        /// again (they may have missed it), never to gateways (a second
        /// "joined" would show).
        retold: bool,
        /// The room is big ([`shared::membership::BIG_ROOM`]): told to the
        /// member, not to the room.
        big: bool,
    },
    /// A member left, or (`by_self` false) was taken out.
    Left {
        room: String,
        user: User,
        by_self: bool,
        at: DateTime<Utc>,
        /// As for [`Outcome::Joined`].
        retold: bool,
        big: bool,
    },
    RoleChanged {
        room: String,
        user: User,
        role: Role,
    },
    Edited(Message),
    /// The message as the deletion left it.
    Deleted(Message),
    /// A message's reactions as they are now.
    Reactions {
        room: String,
        message_id: Uuid,
        reactions: shared::protocol::Reactions,
    },
    /// A member reported a message: told to webhooks only.
    Flagged {
        message: Message,
        by: User,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
}

impl Outcome {
    /// Whether gateways are told: everything but a membership change told
    /// again for webhooks only.
    pub fn for_gateways(&self) -> bool {
        !matches!(
            self,
            Outcome::Joined { retold: true, .. } | Outcome::Left { retold: true, .. }
        )
    }
}

/// Writes every job of the batch in one transaction, in stream order.
///
/// Consecutive messages are written together (one multi-row insert per
/// run); any other job between them is applied where it stands, so a
/// message sent after a join lands after it and an edit after its message.
///
/// # Errors
/// Any database error; nothing of the batch is then written.
pub async fn apply(
    pool: &PgPool,
    batch: &[StreamJob],
    seqs: store::Seqs,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    store::upsert_users(&mut tx, &users_of(batch)).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut run: Vec<Positioned<'_>> = Vec::new();
    for item in batch {
        if let Job::Message(m) = &item.job {
            run.push(Positioned {
                job: m,
                stream_seq: item.stream_seq,
                redelivered: item.redelivered,
            });
            continue;
        }
        if !run.is_empty() {
            write_run(&mut tx, &run, seqs, &mut outcomes).await?;
            run.clear();
        }
        if let Some(outcome) = apply_one(&mut tx, item).await? {
            outcomes.push(outcome);
        }
    }
    if !run.is_empty() {
        write_run(&mut tx, &run, seqs, &mut outcomes).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Writes a run of consecutive messages in one insert.
async fn write_run(
    tx: &mut sqlx::PgConnection,
    run: &[Positioned<'_>],
    seqs: store::Seqs,
    outcomes: &mut Vec<Outcome>,
) -> Result<(), sqlx::Error> {
    let written = store::insert_messages(tx, run, seqs).await?;
    outcomes.extend(written.before.into_iter().map(Outcome::Retold));
    outcomes.extend(written.now.into_iter().map(Outcome::Persisted));
    Ok(())
}

/// Applies a job other than a message; `None` when it changed nothing
/// (a repeat, a refused change). A redelivered edit or delete found applied
/// already is told again, as a message is; a membership change only to
/// webhooks (a second "joined" would show in clients, whose members see
/// it in the room list anyway).
async fn apply_one(
    tx: &mut sqlx::PgConnection,
    item: &StreamJob,
) -> Result<Option<Outcome>, sqlx::Error> {
    let again = item.redelivered;
    let outcome = match &item.job {
        Job::Message(_) => None,
        Job::Join(m) => {
            let now = store::join(tx, m).await?;
            joined(tx, (&m.room, &m.user, m.at), true, now, again).await?
        }
        Job::Leave(m) => {
            let now = store::leave(tx, m).await?;
            crate::moderation::ban(tx, m).await?;
            let retold =
                !now && again && !store::member_since(tx, &m.room, m.user.id, None).await?;
            if now || retold {
                Some(Outcome::Left {
                    room: m.room.clone(),
                    user: m.user.clone(),
                    by_self: m.by.is_none(),
                    at: m.at,
                    retold,
                    big: store::is_big(tx, &m.room).await?,
                })
            } else {
                None
            }
        }
        Job::CreateRoom(r) => {
            store::create_room(tx, r).await?;
            None
        }
        Job::Invite(i) => {
            let now = store::invite(tx, i).await?;
            joined(tx, (&i.room, &i.user, i.at), false, now, again).await?
        }
        Job::SetRole(r) => store::set_role(tx, r).await?.then(|| Outcome::RoleChanged {
            room: r.room.clone(),
            user: r.user.clone(),
            role: r.role,
        }),
        Job::Edit(e) => match store::edit(tx, e).await? {
            Some(m) => Some(Outcome::Edited(m)),
            None if again => store::edited_by(tx, e).await?.map(Outcome::Edited),
            None => None,
        },
        Job::Delete(d) => match store::delete(tx, d).await? {
            Some(mut m) => {
                crate::reactions::clear(tx, m.id).await?;
                m.reactions.clear();
                Some(Outcome::Deleted(m))
            }
            None if again => store::deleted_by(tx, d).await?.map(Outcome::Deleted),
            None => None,
        },
        // A reaction that changed nothing (a repeat) is told again only
        // when redelivered: its first telling may have been lost.
        Job::React(r) => {
            let changed = crate::reactions::react(tx, r).await?;
            if changed || again {
                crate::reactions::of_message(tx, &r.room, r.message_id)
                    .await?
                    .map(|reactions| Outcome::Reactions {
                        room: r.room.clone(),
                        message_id: r.message_id,
                        reactions,
                    })
            } else {
                None
            }
        }
        Job::Read(r) => {
            store::mark_read(tx, r).await?;
            None
        }
        Job::Unban(m) => {
            crate::moderation::unban(tx, m).await?;
            None
        }
        // Told every time it is applied: a report is an event, not a row,
        // and a receiver drops a repeat by its id.
        Job::Flag(f) => crate::moderation::flagged(tx, f)
            .await?
            .map(|message| Outcome::Flagged {
                message,
                by: f.by.clone(),
                reason: f.reason.clone(),
                at: f.at,
            }),
        // Written with every user of the batch by `upsert_users`.
        Job::Seen(_) => None,
        Job::Notify(n) => {
            store::set_notify(tx, n).await?;
            None
        }
    };
    Ok(outcome)
}

/// The outcome of a join or an invitation of `user` at `at`: it made them
/// a member `now`, or it did before and, redelivered (`again`), is told
/// again (their membership began at `at`, so it was this job's).
async fn joined(
    tx: &mut sqlx::PgConnection,
    (room, user, at): (&str, &User, DateTime<Utc>),
    by_self: bool,
    now: bool,
    again: bool,
) -> Result<Option<Outcome>, sqlx::Error> {
    let retold = !now && again && store::member_since(tx, room, user.id, Some(at)).await?;
    if !(now || retold) {
        return Ok(None);
    }
    Ok(Some(Outcome::Joined {
        room: room.to_owned(),
        user: user.clone(),
        by_self,
        at,
        retold,
        big: store::is_big(tx, room).await?,
    }))
}

/// Every user a batch names, as their latest job has them.
fn users_of(batch: &[StreamJob]) -> HashMap<Uuid, (&User, DateTime<Utc>)> {
    let mut users: HashMap<Uuid, (&User, DateTime<Utc>)> = HashMap::new();
    for item in batch {
        let named: Vec<(&User, DateTime<Utc>)> = match &item.job {
            Job::Message(m) => vec![(&m.sender, m.created_at)],
            Job::Join(m) | Job::Leave(m) | Job::Unban(m) => vec![(&m.user, m.at)],
            Job::Flag(f) => vec![(&f.by, f.at)],
            Job::CreateRoom(r) => vec![(&r.owner, r.at)],
            Job::Invite(i) => vec![(&i.by, i.at), (&i.user, i.at)],
            Job::SetRole(r) => vec![(&r.by, r.at), (&r.user, r.at)],
            Job::Edit(e) => vec![(&e.by, e.at)],
            Job::Delete(d) => vec![(&d.by, d.at)],
            Job::Read(r) => vec![(&r.user, r.at)],
            Job::Seen(u) => vec![(&u.user, u.at)],
            Job::Notify(n) => vec![(&n.user, n.at)],
            Job::React(r) => vec![(&r.user, r.at)],
        };
        // A user named by id who never connected has no name to keep.
        for (user, at) in named {
            if user.name.is_none() {
                continue;
            }
            let entry = users.entry(user.id).or_insert((user, at));
            if at >= entry.1 {
                *entry = (user, at);
            }
        }
    }
    users
}
