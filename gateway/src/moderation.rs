//! Moderation: an owner or admin takes a user out of a room
//! (`room:remove`), bans (`room:ban`) and unbans them (`room:unban`); any
//! member reports a message (`message:flag`).
//!
//! A removal or a ban is a leave on the user's membership subject, so every
//! check that reads the stream sees it from its ack; before the ack every
//! gateway also drops the user from the room in memory ([`revoke`]). From
//! then on the user's sends, history, joins and invitations are refused on
//! every gateway, whether or not a persister has written it.

use chrono::Utc;
use shared::jobs::{BanTerm, FlagReport, Job, Membership};
use shared::protocol::{ApiError, ErrorCode, Flag, Moderate, Role, RoomKind, User};
use shared::validate;

use crate::app::App;
use crate::membership::{self, ensure_member, room_expect};
use crate::publish::{publish_expecting, publish_job};
use crate::requests::{live_message, Empty};
use crate::revoke;
use crate::rooms::{forbidden, msg_id, overtaken, ATTEMPTS};

/// Longest reason a report may give, in characters.
const MAX_REASON: usize = 500;

/// `room:remove`: the member may come back to a public room.
///
/// # Errors
/// `bad_request`, `not_a_member`, `forbidden`, `not_found` (not a member),
/// `unavailable`.
pub async fn remove(app: &App, by: &User, req: Moderate) -> Result<Empty, ApiError> {
    take_out(app, by, req, None).await
}

/// `room:ban`: as a removal, and the user cannot come back until `until`
/// (none: for good) or an unban. A user who is not a member can be banned.
///
/// # Errors
/// As [`remove`]; `bad_request` for an `until` that has passed.
pub async fn ban(app: &App, by: &User, req: Moderate) -> Result<Empty, ApiError> {
    if req.until.is_some_and(|until| until <= Utc::now()) {
        return Err(ApiError::bad_request("until must be in the future"));
    }
    let term = BanTerm { until: req.until };
    take_out(app, by, req, Some(term)).await
}

/// Whom `role` may take out: the owner anyone but themselves, an admin
/// plain members (and users who are not members).
fn may_take_out(role: Role, target: Option<Role>) -> Result<(), ApiError> {
    match (role, target) {
        (_, Some(Role::Owner)) => Err(forbidden("nobody removes or bans the room's owner")),
        (Role::Admin, Some(Role::Admin)) => {
            Err(forbidden("only the room's owner removes or bans an admin"))
        }
        _ => Ok(()),
    }
}

/// The manager's role, refused unless they manage the room.
fn manager(role: Option<Role>) -> Result<Role, ApiError> {
    match role {
        None => Err(ApiError::not_a_member()),
        Some(r) if r.manages() => Ok(r),
        Some(_) => Err(forbidden("only the room's owner or an admin may do this")),
    }
}

/// The membership job data of a manager's act on `user`.
async fn acted_on(
    app: &App,
    room: &str,
    user: uuid::Uuid,
    by: &User,
    ban: Option<BanTerm>,
) -> Result<Membership, ApiError> {
    Ok(Membership {
        room: room.to_owned(),
        user: membership::user_or_unnamed(app, user).await?,
        at: shared::time::now_millis(),
        creates: false,
        by: Some(by.id),
        ban,
    })
}

async fn take_out(
    app: &App,
    by: &User,
    req: Moderate,
    ban: Option<BanTerm>,
) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    if req.user == by.id {
        return Err(ApiError::bad_request(
            "you cannot remove or ban yourself; leave the room instead",
        ));
    }
    let room = req.room.as_str();
    for _ in 0..ATTEMPTS {
        // Read first: the job is stored only while no membership job of
        // the room came after what is read next (the manager's role, the
        // target's).
        let expect = room_expect(app, room).await?;
        let role = manager(membership::membership(app, room, by.id).await?.role)?;
        if membership::origin(app, room)
            .await?
            .is_some_and(|o| o.facts.kind == RoomKind::Direct)
        {
            return Err(forbidden("a direct room keeps its two members"));
        }
        let target = membership::membership(app, room, req.user).await?;
        may_take_out(role, target.role)?;
        if target.role.is_none() && ban.is_none() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "that user is not a member of this room",
            ));
        }
        let job = Job::Leave(acted_on(app, room, req.user, by, ban.clone()).await?);
        if publish_expecting(app, &job, &msg_id(), expect).await? {
            revoke::everywhere(app, room, req.user).await;
            return Ok(Empty {});
        }
    }
    Err(overtaken())
}

/// `room:unban`: the user may join or be invited again (they stay out
/// until then). Unbanning someone not banned changes nothing.
///
/// # Errors
/// `bad_request`, `not_a_member`, `forbidden`, `unavailable`.
pub async fn unban(app: &App, by: &User, req: Moderate) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    let room = req.room.as_str();
    for _ in 0..ATTEMPTS {
        let expect = room_expect(app, room).await?;
        manager(membership::membership(app, room, by.id).await?.role)?;
        if !membership::membership(app, room, req.user).await?.banned {
            return Ok(Empty {});
        }
        let job = Job::Unban(acted_on(app, room, req.user, by, None).await?);
        if publish_expecting(app, &job, &msg_id(), expect).await? {
            return Ok(Empty {});
        }
    }
    Err(overtaken())
}

/// `message:flag`: a member reports a live message of the room; the
/// application hears of it as a `message.flagged` webhook event.
///
/// # Errors
/// `bad_request`, `not_a_member`, `not_found`, `unavailable`.
pub async fn flag(app: &App, by: &User, req: Flag) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    if req
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(ApiError::bad_request(format!(
            "reason is at most {MAX_REASON} characters"
        )));
    }
    ensure_member(app, by, &req.room).await?;
    live_message(app, by, &req.room, req.id).await?;
    let job = Job::Flag(FlagReport {
        room: req.room,
        id: req.id,
        by: by.clone(),
        reason: req.reason.filter(|r| !r.trim().is_empty()),
        at: shared::time::now_millis(),
    });
    publish_job(app, &job, &msg_id()).await?;
    Ok(Empty {})
}
