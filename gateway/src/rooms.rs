//! Requests that change who is in a room: join, leave, create, invite,
//! roles. Each is decided on the same facts, by the same rules, as the
//! persister will decide its job ([`shared::membership`]), and published
//! under a condition JetStream checks as it stores it ([`Expect`]): the
//! facts the decision rested on are still the last word. So no change the
//! persister would refuse is ever acked, and none grants access anywhere.

use std::collections::HashSet;

use serde::Serialize;
use shared::jobs::{Invitation, Job, Membership, NewRoom, RoleChange};
use shared::protocol::{ApiError, CreateRoom, ErrorCode, Invite, Role, RoomKind, SetRole, User};
use shared::validate;
use uuid::Uuid;

use crate::app::App;
use crate::membership::{self, ensure_member, room_expect};
use crate::publish::{self, publish_expecting, publish_job, Expect};
use crate::requests::Empty;
use crate::store;
use crate::store::db_unavailable;
use shared::membership::BIG_ROOM;

pub(crate) fn forbidden(what: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, what)
}

/// How often a decision is taken again when another change to the same
/// facts got into the stream first.
pub(crate) const ATTEMPTS: usize = 3;

pub(crate) fn overtaken() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "the room changed while this was decided; try again",
    )
}

/// The condition that only one creation of `room` ever gets into the
/// stream: no membership job of the room is there yet.
fn first_of_room(app: &App, room: &str) -> Expect {
    Expect {
        subject: app.subjects.room_memberships(room),
        seq: 0,
    }
}

/// Refuses a user banned from the room, in the words of `who`.
fn refuse_banned(standing: &membership::Standing, who: &str) -> Result<(), ApiError> {
    if standing.banned {
        return Err(forbidden(&format!("{who} banned from this room")));
    }
    Ok(())
}

pub(crate) fn msg_id() -> String {
    Uuid::new_v4().to_string()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JoinAck {
    pub room: String,
    /// Every member: the owner and admins first, then in the order they
    /// joined; in a big room (over 100 members) the first 100 of them.
    pub members: Vec<User>,
    /// Present and true when `members` is cut at 100: the room is big,
    /// and its joins, leaves and presence are not pushed (docs/protocol.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members_truncated: Option<bool>,
}

/// `room:join`: a new id becomes a public group room owned by the joiner;
/// private and direct rooms refuse everyone but their owner.
///
/// # Errors
/// `bad_request`, `forbidden`, `unavailable`.
pub async fn join(app: &App, user: &User, room: &str) -> Result<JoinAck, ApiError> {
    validate::room_id(room)?;
    if app.hub.is_member(user.id, room) != Some(true) {
        publish_join(app, user, room).await?;
    }
    app.hub.add_member(user.id, room).await;
    let mut members = store::members(&app.pool, room, BIG_ROOM + 1)
        .await
        .map_err(db_unavailable)?;
    let big = members.len() > BIG_ROOM;
    if big {
        members.truncate(BIG_ROOM);
        app.hub.mark_big(room);
    } else if !members.iter().any(|m| m.id == user.id) {
        // The join may still be a job in the stream.
        members.push(user.clone());
    }
    Ok(JoinAck {
        room: room.to_owned(),
        members,
        members_truncated: big.then_some(true),
    })
}

/// Publishes the join of a room, creating it when it is new. Two users
/// joining a new room at once both find it new; JetStream stores only the
/// first creation, and the other joins the room it made.
///
/// A member already changes nothing; a banned user is refused, and the
/// join is stored only while the user's last membership job is the one
/// read, so a ban cannot slip in between.
async fn publish_join(app: &App, user: &User, room: &str) -> Result<(), ApiError> {
    for _ in 0..ATTEMPTS {
        let standing = membership::membership(app, room, user.id).await?;
        if standing.role.is_some() {
            return Ok(());
        }
        refuse_banned(&standing, "you are")?;
        let origin = membership::origin(app, room).await?;
        let job = Job::Join(Membership {
            room: room.to_owned(),
            user: user.clone(),
            at: shared::time::now_millis(),
            creates: origin.is_none(),
            by: None,
            ban: None,
        });
        match origin {
            Some(o) if !o.facts.public && o.facts.owner != user.id => {
                let what = match o.facts.kind {
                    RoomKind::Direct => "a direct",
                    RoomKind::Group => "a private",
                };
                return Err(forbidden(&format!(
                    "{what} room can only be entered by invitation"
                )));
            }
            Some(_) => {
                if publish_expecting(app, &job, &msg_id(), standing.expect).await? {
                    return Ok(());
                }
            }
            None => {
                if publish_expecting(app, &job, &msg_id(), first_of_room(app, room)).await? {
                    return Ok(());
                }
            }
        }
    }
    Err(overtaken())
}

/// `room:leave`.
///
/// # Errors
/// `bad_request`, `not_a_member`, `unavailable`.
pub async fn leave(app: &App, user: &User, room: &str) -> Result<Empty, ApiError> {
    validate::room_id(room)?;
    ensure_member(app, user, room).await?;
    let job = Job::Leave(Membership {
        room: room.to_owned(),
        user: user.clone(),
        at: shared::time::now_millis(),
        creates: false,
        by: None,
        ban: None,
    });
    publish_job(app, &job, &msg_id()).await?;
    app.hub.remove_member(user.id, room);
    Ok(Empty {})
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoomAck {
    pub room: String,
}

/// Most members a room can be created with.
const MAX_CREATE_MEMBERS: usize = 1_000;

/// `room:create`: the creator is the owner; the listed users become members
/// wherever they are connected. A direct room has exactly two members and
/// is never public.
///
/// # Errors
/// `bad_request`, `forbidden` (the id is taken), `not_found` (an unknown
/// user), `unavailable`.
pub async fn create_room(app: &App, user: &User, req: CreateRoom) -> Result<RoomAck, ApiError> {
    let room = match req.room {
        Some(r) => r,
        None => format!("r-{}", &Uuid::new_v4().simple().to_string()[..16]),
    };
    validate::room_id(&room)?;
    let name = match req.name.as_deref().map(str::trim) {
        Some("") | None => None,
        Some(n) => Some(validate::display_name(n)?),
    };
    let mut seen = HashSet::from([user.id]);
    let others: Vec<Uuid> = req
        .members
        .into_iter()
        .filter(|id| seen.insert(*id))
        .collect();
    if others.len() > MAX_CREATE_MEMBERS {
        return Err(ApiError::bad_request("at most 1,000 members at creation"));
    }
    // The service creates rooms it is not a member of.
    let peers = if user.is_service() { 2 } else { 1 };
    if req.kind == RoomKind::Direct && others.len() != peers {
        return Err(ApiError::bad_request(
            "a direct room has exactly two members: you and one other user",
        ));
    }
    let taken = || forbidden("a room with this id exists");
    if membership::origin(app, &room).await?.is_some() {
        return Err(taken());
    }
    let members = named_users(app, &others).await?;
    let at = shared::time::now_millis();
    let create = Job::CreateRoom(NewRoom {
        room: room.clone(),
        name,
        kind: req.kind,
        public: req.public.unwrap_or(false) && req.kind == RoomKind::Group,
        owner: user.clone(),
        at,
    });
    // The room and its members are published back to back and their
    // PubAcks awaited together: one round trip, and the jobs lie next to
    // each other in the stream. The room is stored only if it is the
    // room's first membership job; if another creation got there first,
    // the invitations that follow are void, by the persister's rules and
    // the gateway's alike (they name a creation that is not the room's).
    let mut stored = vec![
        publish::start_with(
            app,
            &create,
            &msg_id(),
            None,
            Some(first_of_room(app, &room)),
        )
        .await?,
    ];
    for member in members {
        let invite = Job::Invite(Invitation {
            room: room.clone(),
            by: user.clone(),
            user: member,
            at,
            creation: true,
        });
        stored.push(publish::start_with(app, &invite, &msg_id(), None, None).await?);
    }
    let outcome = futures::future::try_join_all(stored).await?;
    if !outcome[0] {
        return Err(taken());
    }
    app.hub.add_member(user.id, &room).await;
    Ok(RoomAck { room })
}

/// Users by id with their names, in the order given. Any id names a user
/// (the identity provider is the directory): one never seen has no name
/// until their first token gives it.
async fn named_users(app: &App, ids: &[Uuid]) -> Result<Vec<User>, ApiError> {
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        users.push(membership::user_or_unnamed(app, *id).await?);
    }
    Ok(users)
}

/// `room:invite`: an owner or admin adds a member to a group room.
///
/// # Errors
/// `bad_request`, `not_a_member`, `forbidden`, `not_found`, `unavailable`.
pub async fn invite(app: &App, user: &User, req: Invite) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    let mut invitee: Option<User> = None;
    for _ in 0..ATTEMPTS {
        // Read first: stored only while no membership job of the room (the
        // inviter's role, the invitee's ban) came after what is read next.
        let expect = room_expect(app, &req.room).await?;
        let inviter = membership::membership(app, &req.room, user.id).await?;
        match inviter.role {
            None => return Err(ApiError::not_a_member()),
            Some(r) if !r.manages() => {
                return Err(forbidden("only the room's owner or an admin may do this"))
            }
            Some(_) => {}
        }
        let origin = membership::origin(app, &req.room).await?;
        if origin.is_some_and(|o| o.facts.kind == RoomKind::Direct) {
            return Err(forbidden("a direct room keeps its two members"));
        }
        let who = match &invitee {
            Some(u) => u.clone(),
            None => invitee
                .insert(named_users(app, &[req.user]).await?.remove(0))
                .clone(),
        };
        let standing = membership::membership(app, &req.room, who.id).await?;
        if standing.role.is_some() {
            return Ok(Empty {});
        }
        refuse_banned(&standing, "that user is")?;
        let job = Job::Invite(Invitation {
            room: req.room.clone(),
            by: user.clone(),
            user: who,
            at: shared::time::now_millis(),
            creation: false,
        });
        if publish_expecting(app, &job, &msg_id(), expect).await? {
            return Ok(Empty {});
        }
    }
    Err(overtaken())
}

/// `room:set_role`: the owner makes a member an admin or back.
///
/// # Errors
/// `bad_request`, `not_a_member`, `forbidden`, `not_found`, `unavailable`.
pub async fn set_role(app: &App, user: &User, req: SetRole) -> Result<Empty, ApiError> {
    validate::room_id(&req.room)?;
    if req.role == Role::Owner {
        return Err(ApiError::bad_request("role is \"admin\" or \"member\""));
    }
    match membership::role(app, &req.room, user.id).await? {
        None => return Err(ApiError::not_a_member()),
        Some(Role::Owner) => {}
        Some(_) => return Err(forbidden("only the room's owner changes roles")),
    }
    let target = named_users(app, &[req.user]).await?.remove(0);
    for _ in 0..ATTEMPTS {
        let standing = membership::membership(app, &req.room, req.user).await?;
        match standing.role {
            None => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    "that user is not a member of this room",
                ))
            }
            Some(Role::Owner) => return Err(forbidden("the owner's role does not change")),
            Some(current) if current == req.role => return Ok(Empty {}),
            Some(_) => {}
        }
        let job = Job::SetRole(RoleChange {
            room: req.room.clone(),
            by: user.clone(),
            user: target.clone(),
            role: req.role,
            at: shared::time::now_millis(),
        });
        // Stored only while the member is still what was just read.
        if publish_expecting(app, &job, &msg_id(), standing.expect).await? {
            return Ok(Empty {});
        }
    }
    Err(overtaken())
}

/// The server API adding `user` to `room`, or setting their role: the
/// service needs no role of its own. A direct room keeps its members.
///
/// # Errors
/// `bad_request`, `forbidden`, `not_found` (no such room), `unavailable`.
pub async fn put_member_for_backend(
    app: &App,
    room: &str,
    user: Uuid,
    role: Option<Role>,
) -> Result<Empty, ApiError> {
    validate::room_id(room)?;
    if role == Some(Role::Owner) {
        return Err(ApiError::bad_request("role is \"admin\" or \"member\""));
    }
    let Some(origin) = membership::origin(app, room).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such room"));
    };
    let member = named_users(app, &[user]).await?.remove(0);
    let service = User::service();
    let standing = membership::membership(app, room, user).await?;
    if standing.role.is_none() {
        refuse_banned(&standing, "that user is")?;
        if origin.facts.kind == RoomKind::Direct {
            return Err(forbidden("a direct room keeps its two members"));
        }
        let job = Job::Invite(Invitation {
            room: room.to_owned(),
            by: service.clone(),
            user: member.clone(),
            at: shared::time::now_millis(),
            creation: false,
        });
        publish_job(app, &job, &msg_id()).await?;
    }
    let wanted = role.unwrap_or(Role::Member);
    let current = standing.role.unwrap_or(Role::Member);
    if current == Role::Owner && role.is_some() {
        return Err(forbidden("the owner's role does not change"));
    }
    if current != wanted {
        let job = Job::SetRole(RoleChange {
            room: room.to_owned(),
            by: service,
            user: member,
            role: wanted,
            at: shared::time::now_millis(),
        });
        // After an invitation just published, the invitation is the last
        // membership job; otherwise the one read.
        publish_job(app, &job, &msg_id()).await?;
    }
    Ok(Empty {})
}

/// The server API taking `user` out of `room`: every member, the removed
/// one included, gets `room:left`.
///
/// # Errors
/// `bad_request`, `not_found` (not a member), `unavailable`.
pub async fn remove_member_for_backend(
    app: &App,
    room: &str,
    user: Uuid,
) -> Result<Empty, ApiError> {
    validate::room_id(room)?;
    if membership::role(app, room, user).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "that user is not a member of this room",
        ));
    }
    let member = named_users(app, &[user]).await?.remove(0);
    let job = Job::Leave(Membership {
        room: room.to_owned(),
        user: member,
        at: shared::time::now_millis(),
        creates: false,
        by: Some(shared::protocol::SERVICE),
        ban: None,
    });
    publish_job(app, &job, &msg_id()).await?;
    Ok(Empty {})
}
