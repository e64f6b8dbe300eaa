//! Who is a member, with which role — answered without waiting for the
//! persister.
//!
//! The hub answers for users connected here from memory. Otherwise the
//! freshest answer is the last membership job of that user in that room:
//! every such job is published on one subject, so one JetStream direct get
//! reads it, whether or not a persister has written it yet. Only when the
//! stream no longer holds one (older than its retention) does PostgreSQL
//! answer.

use async_nats::jetstream::stream::DirectGetErrorKind;
use shared::jobs::Job;
use shared::protocol::{ApiError, ErrorCode, Role, User};
use uuid::Uuid;

use crate::app::App;
use crate::requests::db_unavailable;
use crate::store;

/// The user's role in the room, `None` if not a member.
///
/// # Errors
/// `unavailable` when neither the stream nor the database can say.
pub async fn role(app: &App, room: &str, user: Uuid) -> Result<Option<Role>, ApiError> {
    if let Some(from_stream) = stream_role(app, room, user).await? {
        return Ok(from_stream);
    }
    store::role(&app.pool, room, user)
        .await
        .map_err(db_unavailable)
}

/// The last job on `subject`, if the stream holds one.
async fn last_job(app: &App, subject: String) -> Result<Option<Job>, ApiError> {
    let stream = app.stream().await?;
    job_of(stream.direct_get_last_for_subject(subject).await)
}

/// The first job on `subject` (wildcards allowed), if the stream holds one.
async fn first_job(app: &App, subject: String) -> Result<Option<Job>, ApiError> {
    let stream = app.stream().await?;
    job_of(stream.direct_get_first_for_subject(subject).await)
}

fn job_of(
    got: Result<
        async_nats::jetstream::message::StreamMessage,
        async_nats::jetstream::stream::DirectGetError,
    >,
) -> Result<Option<Job>, ApiError> {
    match got {
        Ok(msg) => match serde_json::from_slice::<Job>(&msg.payload) {
            Ok(job) => Ok(Some(job)),
            Err(err) => {
                tracing::warn!(error = %err, "unreadable job in the stream");
                Ok(None)
            }
        },
        Err(err) if matches!(err.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(err) => {
            tracing::warn!(error = %err, "a lookup in the stream failed");
            Err(ApiError::unavailable())
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
    if let Some(Job::Seen(seen)) = last_job(app, app.subjects.user_job(&id)).await? {
        return Ok(Some(seen.user));
    }
    let name = store::user_name(&app.pool, id)
        .await
        .map_err(db_unavailable)?;
    Ok(name.map(|name| User { id, name }))
}

/// What the last membership job says: `Some(role)` or `Some(None)` after a
/// leave; `None` when the stream holds no membership job for the pair.
async fn stream_role(app: &App, room: &str, user: Uuid) -> Result<Option<Option<Role>>, ApiError> {
    match last_job(app, app.subjects.membership(room, &user)).await? {
        Some(Job::Join(join)) if join.creates => {
            // Two users may each have joined a room that did not exist yet;
            // as the persister does, the first membership job in stream
            // order made the room and its owner.
            let first = first_job(app, app.subjects.job(room, "member.*")).await?;
            let owner = matches!(first, Some(Job::Join(j)) if j.user.id == user);
            Ok(Some(Some(if owner { Role::Owner } else { Role::Member })))
        }
        other => Ok(other.and_then(|j| j.membership_role())),
    }
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
