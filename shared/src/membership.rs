//! Who is a member of a room, decided from the jobs in the stream by the
//! same rules the persister applies to PostgreSQL.
//!
//! The gateway answers "member? which role?" from the last membership job
//! of a user in a room, often before a persister has written it. For that
//! answer to be the persister's, both decide with these rules, and a job
//! the persister would refuse ([`Decision::Refused`]) never counts: the
//! gateway then asks PostgreSQL, which holds what the jobs before it made.
//!
//! The facts a decision needs beyond the job are the room's [`Origin`]:
//! the job that created the room (the first membership job of the room in
//! the stream; only one can be, see the gateway's `publish`), or its row.

/// Members beyond which a room is "big": joins and leaves are not told to
/// the room (only to the member), presence is not pushed through it, and a
/// join's ack lists only this many members. Each join would otherwise cost
/// a frame per member, and a room filling up O(members²).
pub const BIG_ROOM: usize = 100;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::jobs::Job;
use crate::protocol::{Role, RoomKind, SERVICE};

/// What never changes about a room once it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub kind: RoomKind,
    pub public: bool,
    pub owner: Uuid,
    pub at: DateTime<Utc>,
}

impl Origin {
    /// The origin a room-creating job gives its room; `None` for any other
    /// job.
    pub fn of_job(job: &Job) -> Option<Self> {
        match job {
            Job::CreateRoom(r) => Some(Self {
                kind: r.kind,
                public: r.public && r.kind == RoomKind::Group,
                owner: r.owner.id,
                at: r.at,
            }),
            Job::Join(j) if j.creates => Some(Self {
                kind: RoomKind::Group,
                public: true,
                owner: j.user.id,
                at: j.at,
            }),
            _ => None,
        }
    }

    /// Whether an invitation `by` someone `at` a time is one of those the
    /// room was created with: the only way into a direct room.
    pub fn created_with(&self, by: Uuid, at: DateTime<Utc>) -> bool {
        self.owner == by && self.at == at
    }
}

/// What a membership job leaves a user as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A member with this role, or (`None`) not a member.
    Now(Option<Role>),
    /// The persister ignores the job: the user stays as the jobs before it
    /// left them.
    Refused,
}

/// The decision on `job`, the last membership job of `user` in a room
/// whose origin is `origin` (`None` when neither the stream nor the
/// database knows the room yet). `is_origin`: `job` is the job that
/// created the room.
pub fn decide(origin: Option<&Origin>, job: &Job, user: Uuid, is_origin: bool) -> Decision {
    use Decision::{Now, Refused};
    match job {
        Job::CreateRoom(_) if is_origin => Now(Some(Role::Owner)),
        // Somebody else created the room first.
        Job::CreateRoom(_) => Refused,
        Job::Join(j) if j.creates && is_origin => Now(Some(Role::Owner)),
        Job::Join(_) => match origin {
            Some(o) if o.owner == user => Now(Some(Role::Owner)),
            Some(o) if o.public => Now(Some(Role::Member)),
            Some(_) => Refused,
            None => Now(Some(Role::Member)),
        },
        // Nobody takes the owner out of their room.
        Job::Leave(m) if m.by.is_some() && origin.is_some_and(|o| o.owner == user) => Refused,
        Job::Leave(_) | Job::Unban(_) => Now(None),
        Job::Invite(i) => match origin {
            Some(o) if o.kind == RoomKind::Direct || i.creation => {
                if o.created_with(i.by.id, i.at) {
                    Now(Some(Role::Member))
                } else {
                    Refused
                }
            }
            // The inviter's authority was checked against their own last
            // job, which cannot have changed before this one was stored.
            _ => Now(Some(Role::Member)),
        },
        Job::SetRole(r) => match origin {
            Some(o) if r.by.id != SERVICE && o.owner != r.by.id => Refused,
            Some(o) if o.owner == user || r.role == Role::Owner => Refused,
            _ => Now(Some(r.role)),
        },
        _ => Refused,
    }
}

/// Whether `job`, the last membership job of a user in a room, bans them
/// at `now`. Any later membership job of theirs (an unban, a join once the
/// ban ended) ends it.
pub fn bans(job: &Job, now: DateTime<Utc>) -> bool {
    matches!(job, Job::Leave(m) if m.ban.as_ref().is_some_and(|b| b.holds_at(now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Invitation, Membership, NewRoom};
    use crate::protocol::User;

    fn user(name: &str) -> User {
        User {
            id: Uuid::new_v4(),
            name: Some(name.into()),
            avatar_url: None,
        }
    }

    fn direct(owner: &User, at: DateTime<Utc>) -> Job {
        Job::CreateRoom(NewRoom {
            room: "d".into(),
            name: None,
            kind: RoomKind::Direct,
            public: false,
            owner: owner.clone(),
            at,
        })
    }

    fn invite(by: &User, who: &User, at: DateTime<Utc>, creation: bool) -> Job {
        Job::Invite(Invitation {
            room: "d".into(),
            by: by.clone(),
            user: who.clone(),
            at,
            creation,
        })
    }

    #[test]
    fn a_direct_room_admits_only_those_it_was_created_with() {
        let (ann, bob, cat) = (user("Ann"), user("Bob"), user("Cat"));
        let at = crate::time::now_millis();
        let origin = Origin::of_job(&direct(&ann, at)).unwrap();
        let o = Some(&origin);
        assert_eq!(
            decide(o, &invite(&ann, &bob, at, true), bob.id, false),
            Decision::Now(Some(Role::Member))
        );
        let later = at + chrono::Duration::milliseconds(3);
        assert_eq!(
            decide(o, &invite(&ann, &cat, later, false), cat.id, false),
            Decision::Refused
        );
        assert_eq!(
            decide(o, &invite(&bob, &cat, at, true), cat.id, false),
            Decision::Refused
        );
    }

    #[test]
    fn the_second_creator_of_a_room_gets_nothing() {
        let (ann, bob) = (user("Ann"), user("Bob"));
        let at = crate::time::now_millis();
        let first = Origin::of_job(&direct(&ann, at)).unwrap();
        let theirs = direct(&bob, at);
        assert_eq!(
            decide(Some(&first), &theirs, bob.id, false),
            Decision::Refused
        );
        assert_eq!(
            decide(Some(&first), &invite(&bob, &ann, at, true), ann.id, false),
            Decision::Refused,
            "the loser's invitations are void"
        );
        let join = Job::Join(Membership {
            room: "d".into(),
            user: bob.clone(),
            at,
            creates: false,
            by: None,
            ban: None,
        });
        assert_eq!(
            decide(Some(&first), &join, bob.id, false),
            Decision::Refused,
            "not public"
        );
    }

    #[test]
    fn a_ban_holds_until_its_end_and_nobody_takes_the_owner_out() {
        let (ann, bob) = (user("Ann"), user("Bob"));
        let at = crate::time::now_millis();
        let origin = Origin::of_job(&direct(&ann, at)).unwrap();
        let out = |who: &User, until: Option<DateTime<Utc>>| {
            Job::Leave(Membership {
                room: "d".into(),
                user: who.clone(),
                at,
                creates: false,
                by: Some(ann.id),
                ban: Some(crate::jobs::BanTerm { until }),
            })
        };
        let later = at + chrono::Duration::seconds(60);
        assert!(bans(&out(&bob, None), later));
        assert!(bans(&out(&bob, Some(later)), at));
        assert!(!bans(&out(&bob, Some(later)), later), "ended");
        assert_eq!(
            decide(Some(&origin), &out(&bob, None), bob.id, false),
            Decision::Now(None)
        );
        assert_eq!(
            decide(Some(&origin), &out(&ann, None), ann.id, false),
            Decision::Refused,
            "the owner stays"
        );
    }
}
