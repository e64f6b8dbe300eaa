//! Presence as gateways tell it to each other on `<S>.presence`, and the
//! roster of who is connected where that any process can keep from it.
//!
//! Gateways publish when a user's first connection opens there and when the
//! last one closes, and every few seconds a snapshot of all their users,
//! which is also their heartbeat. A gateway keeps the roster of the others;
//! a persister keeps one of every gateway to know which members are offline
//! (the `notification` webhook events).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use crate::protocol::User;

/// How often a gateway publishes its snapshot.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A gateway not heard from for this long is gone.
pub const EXPIRY: Duration = Duration::from_secs(15);

/// A user connected to a gateway, with the rooms they are in there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub user: User,
    pub rooms: Vec<String>,
}

/// What gateways tell each other (and anyone listening).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    Online {
        gateway: Uuid,
        entry: Entry,
    },
    Offline {
        gateway: Uuid,
        entry: Entry,
    },
    Snapshot {
        gateway: Uuid,
        users: Vec<Entry>,
    },
    /// A user online on `gateway` joined a room: its members learn the
    /// user is online.
    Joined {
        gateway: Uuid,
        user: User,
        room: String,
    },
    /// A process that just started listening asks every gateway for its
    /// snapshot now, rather than within the next [`HEARTBEAT`].
    Ask,
}

impl Notice {
    /// The gateway the notice comes from; `None` for [`Notice::Ask`].
    pub fn gateway(&self) -> Option<Uuid> {
        match self {
            Notice::Online { gateway, .. }
            | Notice::Offline { gateway, .. }
            | Notice::Snapshot { gateway, .. }
            | Notice::Joined { gateway, .. } => Some(*gateway),
            Notice::Ask => None,
        }
    }
}

struct Remote {
    seen: Instant,
    users: HashMap<Uuid, Entry>,
}

/// Who is connected to which gateway, as their notices tell.
#[derive(Default)]
pub struct Roster {
    gateways: HashMap<Uuid, Remote>,
}

/// A user who arrived at (`true`) or left (`false`) one gateway.
pub type Change = (bool, Entry);

impl Roster {
    /// Applies a notice from `gateway`; returns the users who arrived at or
    /// left that gateway. A [`Notice::Joined`] adds the room to the user's
    /// entry and changes no one's presence.
    pub fn apply(&mut self, notice: Notice) -> Vec<Change> {
        let Some(gateway) = notice.gateway() else {
            return Vec::new();
        };
        let remote = self.gateways.entry(gateway).or_insert_with(|| Remote {
            seen: Instant::now(),
            users: HashMap::new(),
        });
        remote.seen = Instant::now();
        let mut changed = Vec::new();
        match notice {
            Notice::Online { entry, .. } => {
                if remote.users.insert(entry.user.id, entry.clone()).is_none() {
                    changed.push((true, entry));
                }
            }
            Notice::Offline { entry, .. } => {
                if remote.users.remove(&entry.user.id).is_some() {
                    changed.push((false, entry));
                }
            }
            Notice::Snapshot { users, .. } => {
                let fresh: HashMap<Uuid, Entry> =
                    users.into_iter().map(|e| (e.user.id, e)).collect();
                for (id, e) in &remote.users {
                    if !fresh.contains_key(id) {
                        changed.push((false, e.clone()));
                    }
                }
                for (id, e) in &fresh {
                    if !remote.users.contains_key(id) {
                        changed.push((true, e.clone()));
                    }
                }
                remote.users = fresh;
            }
            Notice::Joined { user, room, .. } => {
                if let Some(entry) = remote.users.get_mut(&user.id) {
                    if !entry.rooms.contains(&room) {
                        entry.rooms.push(room);
                    }
                }
            }
            Notice::Ask => {}
        }
        changed
    }

    /// Whether `user` is connected to any gateway but `except`.
    pub fn contains_except(&self, user: Uuid, except: Option<Uuid>) -> bool {
        self.gateways
            .iter()
            .any(|(id, r)| Some(*id) != except && r.users.contains_key(&user))
    }

    /// Every gateway heard from (and not yet expired).
    pub fn gateways(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.gateways.keys().copied()
    }

    /// Whether `user` is connected to any gateway.
    pub fn contains(&self, user: Uuid) -> bool {
        self.contains_except(user, None)
    }

    /// Every entry of every gateway.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.gateways.values().flat_map(|r| r.users.values())
    }

    /// Drops the gateways not heard from within [`EXPIRY`]; returns the
    /// entries they had.
    pub fn expire(&mut self) -> Vec<Entry> {
        let dead: Vec<Uuid> = self
            .gateways
            .iter()
            .filter(|(_, r)| r.seen.elapsed() > EXPIRY)
            .map(|(id, _)| *id)
            .collect();
        dead.iter()
            .filter_map(|id| self.gateways.remove(id))
            .flat_map(|r| r.users.into_values())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Uuid) -> Entry {
        Entry {
            user: User {
                id,
                name: Some("Ann".into()),
                avatar_url: None,
            },
            rooms: vec!["r".into()],
        }
    }

    #[test]
    fn a_user_is_online_while_any_gateway_lists_them() {
        let (g1, g2, ann) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut roster = Roster::default();
        let online = |gateway| Notice::Online {
            gateway,
            entry: entry(ann),
        };
        assert_eq!(roster.apply(online(g1)).len(), 1);
        assert_eq!(roster.apply(online(g2)).len(), 1);
        assert!(roster.contains(ann));
        assert!(roster.contains_except(ann, Some(g1)));
        roster.apply(Notice::Snapshot {
            gateway: g2,
            users: vec![],
        });
        assert!(roster.contains(ann) && !roster.contains_except(ann, Some(g1)));
        let left = roster.apply(Notice::Offline {
            gateway: g1,
            entry: entry(ann),
        });
        assert!(left.len() == 1 && !left[0].0);
        assert!(!roster.contains(ann));
        assert!(roster.apply(Notice::Ask).is_empty());
    }
}
