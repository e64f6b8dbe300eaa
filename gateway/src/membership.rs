//! Who is a member, with which role — answered without waiting for the
//! persister, and the way the persister will answer.
//!
//! The hub answers for users connected here from memory. Otherwise the
//! freshest answer is the last membership job of that user in that room:
//! every such job is published on one subject, so one JetStream direct get
//! reads it, whether or not a persister has written it yet, and the rules
//! the persister applies ([`shared::membership`]) judge it. PostgreSQL
//! answers when the stream no longer holds one (older than its retention)
//! or holds one the persister refuses.

use std::collections::HashSet;

use async_nats::jetstream::stream::DirectGetErrorKind;
use futures::StreamExt;
use shared::jobs::Job;
use shared::membership::{bans, decide, Decision, Origin};
use shared::protocol::{ApiError, ErrorCode, Role, User};
use uuid::Uuid;

use crate::app::App;
use crate::origins::KnownOrigin;
use crate::publish::Expect;
use crate::store;
use crate::store::db_unavailable;

/// The user's role in the room, `None` if not a member.
///
/// # Errors
/// `unavailable` when neither the stream nor the database can say.
pub async fn role(app: &App, room: &str, user: Uuid) -> Result<Option<Role>, ApiError> {
    Ok(membership(app, room, user).await?.role)
}

/// A user's membership, and the stream job it was read from.
pub struct Standing {
    pub role: Option<Role>,
    /// Banned from the room now (and so not a member).
    pub banned: bool,
    /// What a job decided on this standing must expect to be still the
    /// last on the user's membership subject.
    pub expect: Expect,
}

/// The user's membership as the persister decides it, whether or not it
/// has written the jobs yet: their last membership job in the stream,
/// judged by [`shared::membership::decide`] against the room's origin;
/// PostgreSQL when the stream holds none, or holds one the persister
/// refuses (it then keeps what the jobs before it made).
///
/// # Errors
/// `unavailable`.
pub async fn membership(app: &App, room: &str, user: Uuid) -> Result<Standing, ApiError> {
    let subject = app.subjects.membership(room, &user);
    let last = last_job(app, subject.clone()).await?;
    let seq = last.as_ref().map_or(0, |(_, seq)| *seq);
    let expect = Expect { subject, seq };
    if let Some((job, seq)) = last {
        let origin = origin(app, room).await?;
        let is_origin = origin.as_ref().and_then(|o| o.seq) == Some(seq);
        let facts = origin.as_ref().map(|o| &o.facts);
        if let Decision::Now(role) = decide(facts, &job, user, is_origin) {
            let banned = bans(&job, chrono::Utc::now());
            return Ok(Standing {
                role,
                banned,
                expect,
            });
        }
    }
    let (role, banned) = store::role(&app.pool, room, user)
        .await
        .map_err(db_unavailable)?;
    Ok(Standing {
        role,
        banned,
        expect,
    })
}

/// The condition that no membership job of `room`, of anyone, gets stored
/// after the last one there now: a decision on several users' standings
/// (a manager's and the one they act on) holds when its job is stored.
///
/// # Errors
/// `unavailable`.
pub async fn room_expect(app: &App, room: &str) -> Result<Expect, ApiError> {
    let subject = app.subjects.room_memberships(room);
    let stream = app.stream().await?;
    let last = found(stream.direct_get_last_for_subject(subject.clone()).await)?;
    let seq = last.map_or(0, |msg| msg.sequence);
    Ok(Expect { subject, seq })
}

/// What created `room`: its first membership job in the stream (the one
/// creation that JetStream let through, see `rooms::create_room`), else
/// its row. `None` for a room nobody created yet. Origins never change, so
/// each is looked up once per gateway.
///
/// # Errors
/// `unavailable`.
pub async fn origin(app: &App, room: &str) -> Result<Option<KnownOrigin>, ApiError> {
    if let Some(known) = app.origins.get(room) {
        return Ok(Some(known));
    }
    let first = first_job(app, app.subjects.room_memberships(room)).await?;
    let known = match first.and_then(|(job, seq)| Some((Origin::of_job(&job)?, seq))) {
        Some((facts, seq)) => Some(KnownOrigin {
            facts,
            seq: Some(seq),
        }),
        None => store::origin(&app.pool, room)
            .await
            .map_err(db_unavailable)?
            .map(|facts| KnownOrigin { facts, seq: None }),
    };
    if let Some(k) = &known {
        app.origins.insert(room, k.clone());
    }
    Ok(known)
}

/// The last job on `subject`, with its stream sequence, if the stream
/// holds one.
async fn last_job(app: &App, subject: String) -> Result<Option<(Job, u64)>, ApiError> {
    let stream = app.stream().await?;
    job_of(stream.direct_get_last_for_subject(subject).await)
}

/// The first job on `subject` (wildcards allowed), if the stream holds one.
async fn first_job(app: &App, subject: String) -> Result<Option<(Job, u64)>, ApiError> {
    let stream = app.stream().await?;
    job_of(stream.direct_get_first_for_subject(subject).await)
}

type DirectGot = Result<
    async_nats::jetstream::message::StreamMessage,
    async_nats::jetstream::stream::DirectGetError,
>;

/// The message a direct get found, `None` if there is none.
fn found(
    got: DirectGot,
) -> Result<Option<async_nats::jetstream::message::StreamMessage>, ApiError> {
    match got {
        Ok(msg) => Ok(Some(msg)),
        Err(err) if matches!(err.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(err) => {
            tracing::warn!(error = %err, "a lookup in the stream failed");
            Err(ApiError::unavailable())
        }
    }
}

fn job_of(got: DirectGot) -> Result<Option<(Job, u64)>, ApiError> {
    let Some(msg) = found(got)? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Job>(&msg.payload) {
        Ok(job) => Ok(Some((job, msg.sequence))),
        Err(err) => {
            tracing::warn!(error = %err, "unreadable job in the stream");
            Ok(None)
        }
    }
}

/// A user by id with their latest name: connected here, else from their
/// last `Seen` job, else as a persister last wrote it. `None` for a user
/// nobody has seen.
///
/// # Errors
/// `unavailable`.
pub async fn user(app: &App, id: Uuid) -> Result<Option<User>, ApiError> {
    if let Some(u) = app.hub.user(id) {
        return Ok(Some(u));
    }
    if let Some((Job::Seen(seen), _)) = last_job(app, app.subjects.user_job(&id)).await? {
        return Ok(Some(seen.user));
    }
    store::user(&app.pool, id).await.map_err(db_unavailable)
}

/// A user by id, one nobody has seen included (with no name yet): any UUID
/// names a user.
///
/// # Errors
/// `unavailable`.
pub async fn user_or_unnamed(app: &App, id: Uuid) -> Result<User, ApiError> {
    Ok(user(app, id).await?.unwrap_or(User::unnamed(id)))
}

/// Refuses `user` unless they are a member of `room`. A member this
/// gateway did not know of yet (joined from another gateway, invited) is
/// remembered, so the next check is in memory.
///
/// # Errors
/// `not_a_member`, or `unavailable`.
pub async fn ensure_member(app: &App, user: &User, room: &str) -> Result<(), ApiError> {
    if app.hub.is_member(user.id, room) == Some(true) {
        return Ok(());
    }
    match role(app, room, user.id).await? {
        Some(_) => {
            app.hub.add_member(user.id, room).await;
            Ok(())
        }
        None => Err(ApiError::not_a_member()),
    }
}

/// Refuses unless `user` is an owner or admin of `room`.
///
/// # Errors
/// `not_a_member`, `forbidden`, `unavailable`.
pub async fn ensure_manager(app: &App, user: &User, room: &str) -> Result<Role, ApiError> {
    match role(app, room, user.id).await? {
        None => Err(ApiError::not_a_member()),
        Some(r) if r.manages() => Ok(r),
        Some(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the room's owner or an admin may do this",
        )),
    }
}

/// The rooms `user` is a member of now: PostgreSQL's, corrected by the
/// user's membership jobs the stream holds, which may not be written yet
/// (a room created with them or an invitation acked a moment ago, a leave).
///
/// # Errors
/// `unavailable`.
pub async fn rooms_of(app: &App, user: Uuid) -> Result<Vec<String>, ApiError> {
    let stored: HashSet<String> = store::rooms_of(&app.pool, user)
        .await
        .map_err(db_unavailable)?
        .into_iter()
        .collect();
    let mut rooms = stored.clone();
    for (room, job, seq) in streamed_memberships(app, user).await? {
        let grants = !matches!(job.membership_role(), Some(None));
        let member = match (stored.contains(&room), grants) {
            // Written, or at least not refused so far: PostgreSQL would
            // not list a room whose granting job it refused.
            (true, true) => true,
            // A leave: not written yet, or written already.
            (_, false) => false,
            // Pending, or refused: the rules say which.
            (false, true) => {
                let origin = origin(app, &room).await?;
                let is_origin = origin.as_ref().and_then(|o| o.seq) == Some(seq);
                let facts = origin.as_ref().map(|o| &o.facts);
                matches!(decide(facts, &job, user, is_origin), Decision::Now(Some(_)))
            }
        };
        if member {
            rooms.insert(room);
        } else {
            rooms.remove(&room);
        }
    }
    let mut rooms: Vec<String> = rooms.into_iter().collect();
    rooms.sort();
    Ok(rooms)
}

/// Most rooms one batch direct get answers for (the server's own limit).
const MAX_STREAMED_ROOMS: usize = 1024;

/// The last membership job of `user` in each room the stream holds one
/// for, with its stream sequence: one batched direct get
/// (`multi_last`, NATS 2.11) over `<S>.job.*.*.member.<user>`.
async fn streamed_memberships(app: &App, user: Uuid) -> Result<Vec<(String, Job, u64)>, ApiError> {
    let failed = |what: &str| {
        tracing::warn!(%user, what, "cannot read a user's memberships from the stream");
        ApiError::unavailable()
    };
    let inbox = app.client.new_inbox();
    let mut replies = app
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|_| failed("subscribe"))?;
    let request = serde_json::json!({
        "multi_last": [app.subjects.user_memberships(&user)],
        "batch": MAX_STREAMED_ROOMS,
    });
    app.client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", app.subjects.stream()),
            inbox,
            request.to_string().into(),
        )
        .await
        .map_err(|_| failed("request"))?;
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + shared::nats::JETSTREAM_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, replies.next())
            .await
            .map_err(|_| failed("timeout"))?
            .ok_or_else(|| failed("closed"))?;
        match msg.status.map(u16::from) {
            // The end of the batch, or nothing at all.
            Some(204 | 404) => break,
            Some(_) => return Err(failed("refused")),
            None => {}
        }
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let (Some(subject), Some(seq)) = (header("Nats-Subject"), header("Nats-Sequence")) else {
            continue;
        };
        let room = subject.split('.').nth(3).map(str::to_owned);
        let job = serde_json::from_slice::<Job>(&msg.payload).ok();
        if let (Some(room), Some(job), Ok(seq)) = (room, job, seq.parse()) {
            found.push((room, job, seq));
        }
    }
    Ok(found)
}
