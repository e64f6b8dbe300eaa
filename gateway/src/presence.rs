//! Presence across gateways.
//!
//! A user is online from their first open connection on any gateway to
//! their last. Each gateway publishes on `<S>.presence` when a user's first
//! connection opens here and when the last one closes (after a short
//! grace, so a page reload does not flap), and every few seconds a
//! snapshot of all its users, which is also its heartbeat. Every gateway
//! keeps the others' snapshots and decides on its own, for its own
//! connections, when a user turns online or offline: it tells the local
//! connections that share a room with that user. A gateway whose heartbeat
//! stops (killed) is dropped after [`shared::presence::EXPIRY`], and its users turn offline
//! where they are not connected elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use shared::presence::{Change, Entry, Notice, Roster, HEARTBEAT};
use shared::protocol::{ServerFrame, User};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::conn::ConnId;
use crate::hub::Hub;

/// How long a user whose last connection closed stays online, in case they
/// come straight back.
pub const GRACE: Duration = Duration::from_secs(2);

const ONLINE: &str = "presence:online";
const OFFLINE: &str = "presence:offline";

pub struct Presence {
    id: Uuid,
    hub: Arc<Hub>,
    client: async_nats::Client,
    subject: String,
    /// The other gateways' users.
    remotes: Mutex<Roster>,
    /// Users whose last connection here closed less than [`GRACE`] ago,
    /// by the generation of that close: still in this gateway's
    /// snapshots, so a snapshot within the grace does not take them off
    /// other gateways' rosters before the `Offline` notice that carries
    /// their rooms as they are now.
    leaving: Mutex<HashMap<Uuid, (u64, Entry)>>,
    closes: std::sync::atomic::AtomicU64,
    me: Weak<Presence>,
}

#[derive(Serialize)]
struct UserData<'a> {
    user: &'a User,
}

impl Presence {
    /// Starts listening and heartbeating until `stop`.
    pub async fn start(
        hub: Arc<Hub>,
        client: async_nats::Client,
        subject: String,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let presence = Arc::new_cyclic(|me| Self {
            id: Uuid::new_v4(),
            hub,
            client: client.clone(),
            subject: subject.clone(),
            remotes: Mutex::default(),
            leaving: Mutex::default(),
            closes: std::sync::atomic::AtomicU64::new(0),
            me: me.clone(),
        });
        match client.subscribe(subject).await {
            Ok(sub) => {
                tokio::spawn(listen(presence.me.clone(), sub));
            }
            Err(err) => tracing::warn!(error = %err, "presence: cannot subscribe"),
        }
        tokio::spawn(heartbeat(presence.me.clone(), stop));
        presence
    }

    fn remotes(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.remotes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn online_elsewhere(&self, user: Uuid) -> bool {
        self.remotes().contains(user)
    }

    /// This gateway's id in presence notices.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The other gateways heard from lately.
    pub fn gateways(&self) -> Vec<Uuid> {
        self.remotes().gateways().collect()
    }

    /// Whether `user` has an open connection on any gateway.
    pub fn online(&self, user: Uuid) -> bool {
        self.hub.has_user(user) || self.online_elsewhere(user)
    }

    /// A user's first connection here opened.
    pub async fn connected(&self, user: &User, rooms: &[String], conn: ConnId) {
        let entry = Entry {
            user: user.clone(),
            rooms: rooms.to_vec(),
        };
        if !self.online_elsewhere(user.id) {
            self.tell_local(ONLINE, &entry);
        }
        self.greet(user.id, conn, rooms);
        self.publish(&Notice::Online {
            gateway: self.id,
            entry,
        })
        .await;
    }

    /// Another connection of a user already online here opened: it learns
    /// who is online too.
    pub fn greet(&self, user: Uuid, conn: ConnId, rooms: &[String]) {
        let mates = self.online_in(user, rooms);
        self.tell_conn(user, conn, mates.values());
    }

    /// The users other than `user` online in any of `rooms`, here or on
    /// another gateway.
    fn online_in(&self, user: Uuid, rooms: &[String]) -> HashMap<Uuid, User> {
        let mut mates = self.hub.users_in(rooms);
        mates.remove(&user);
        // Big rooms push no presence (`shared::membership::BIG_ROOM`).
        let rooms: HashSet<&String> = rooms.iter().filter(|r| !self.hub.is_big(r)).collect();
        for e in self.remotes().entries() {
            if e.user.id != user && e.rooms.iter().any(|r| rooms.contains(r)) {
                mates.insert(e.user.id, e.user.clone());
            }
        }
        mates
    }

    /// Tells one connection that each of `mates` is online.
    fn tell_conn<'a>(&self, user: Uuid, conn: ConnId, mates: impl Iterator<Item = &'a User>) {
        for mate in mates {
            let frame = ServerFrame::new(ONLINE, UserData { user: mate })
                .to_json()
                .into();
            self.hub.deliver_to_conn(user, conn, &frame);
        }
    }

    /// A user connected here joined `room`: its members, on every gateway,
    /// learn that the user is online (those who knew already hear it again,
    /// which changes nothing).
    pub async fn joined(&self, user: &User, room: &str) {
        let entry = Entry {
            user: user.clone(),
            rooms: vec![room.to_owned()],
        };
        self.tell_local(ONLINE, &entry);
        self.publish(&Notice::Joined {
            gateway: self.id,
            user: user.clone(),
            room: room.to_owned(),
        })
        .await;
    }

    /// A connection that just joined `room` learns which of its members
    /// are online (anywhere): the stored `members`, and those whose own
    /// join is still on its way to the database.
    pub fn greet_members(&self, user: Uuid, conn: ConnId, room: &str, members: &[User]) {
        let mut mates = self.online_in(user, &[room.to_owned()]);
        for m in members {
            if m.id != user && self.online(m.id) {
                mates.entry(m.id).or_insert_with(|| m.clone());
            }
        }
        self.tell_conn(user, conn, mates.values());
    }

    /// A user's last connection here closed: after the grace, if they did
    /// not come back, they are offline here.
    pub fn disconnected(&self, user: User, rooms: Vec<String>) {
        let Some(me) = self.me.upgrade() else { return };
        let entry = Entry { user, rooms };
        let close = self
            .closes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.leaving().insert(entry.user.id, (close, entry.clone()));
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            {
                let mut leaving = me.leaving();
                if leaving
                    .get(&entry.user.id)
                    .is_some_and(|(c, _)| *c == close)
                {
                    leaving.remove(&entry.user.id);
                }
            }
            if me.hub.has_user(entry.user.id) {
                return;
            }
            if !me.online_elsewhere(entry.user.id) {
                me.tell_local(OFFLINE, &entry);
            }
            me.publish(&Notice::Offline {
                gateway: me.id,
                entry,
            })
            .await;
        });
    }

    /// Tells the local connections sharing a room with the user.
    fn tell_local(&self, kind: &str, entry: &Entry) {
        let frame = ServerFrame::new(kind, UserData { user: &entry.user })
            .to_json()
            .into();
        self.hub
            .deliver_to_rooms(&entry.rooms, entry.user.id, &frame);
    }

    async fn publish(&self, notice: &Notice) {
        let Ok(payload) = serde_json::to_vec(notice) else {
            return;
        };
        if let Err(err) = self
            .client
            .publish(self.subject.clone(), payload.into())
            .await
        {
            tracing::debug!(error = %err, "presence notice not published");
        }
    }

    /// Applies another gateway's notice, telling local connections of
    /// every user it turns online or offline. A process that asks gets
    /// this gateway's snapshot at once.
    async fn on_notice(&self, notice: Notice) {
        let Some(gateway) = notice.gateway() else {
            self.snapshot().await;
            return;
        };
        if gateway == self.id {
            return;
        }
        let joined = match &notice {
            Notice::Joined { user, room, .. } => Some(Entry {
                user: user.clone(),
                rooms: vec![room.clone()],
            }),
            _ => None,
        };
        let changed = self.remotes().apply(notice);
        match joined {
            // Another gateway's user joined a room: told to the room's
            // local members.
            Some(entry) => self.tell_local(ONLINE, &entry),
            None => self.announce(changed, Some(gateway)),
        }
    }

    /// For each user that arrived at (`true`) or left (`false`) gateway
    /// `from`: tells local connections if that changed whether the user is
    /// online anywhere.
    fn announce(&self, changed: Vec<Change>, from: Option<Uuid>) {
        for (arrived, entry) in changed {
            if arrived {
                if !self.online_without(entry.user.id, from) {
                    self.tell_local(ONLINE, &entry);
                }
            } else if !self.online(entry.user.id) {
                self.tell_local(OFFLINE, &entry);
            }
        }
    }

    /// Whether the user is online here or on a gateway other than `except`.
    fn online_without(&self, user: Uuid, except: Option<Uuid>) -> bool {
        self.hub.has_user(user) || self.remotes().contains_except(user, except)
    }

    /// Drops gateways not heard from within [`shared::presence::EXPIRY`].
    fn expire(&self) {
        let gone = self.remotes().expire();
        if gone.is_empty() {
            return;
        }
        tracing::info!(users = gone.len(), "presence: a gateway went silent");
        self.announce(gone.into_iter().map(|e| (false, e)).collect(), None);
    }

    fn leaving(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (u64, Entry)>> {
        self.leaving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This gateway's users, those in their grace included.
    async fn snapshot(&self) {
        let mut users: HashMap<Uuid, Entry> = self
            .hub
            .local_users()
            .into_iter()
            .map(|(user, rooms)| (user.id, Entry { user, rooms }))
            .collect();
        for (id, (_, entry)) in self.leaving().iter() {
            users.entry(*id).or_insert_with(|| entry.clone());
        }
        let users = users.into_values().collect();
        self.publish(&Notice::Snapshot {
            gateway: self.id,
            users,
        })
        .await;
    }
}

async fn listen(presence: Weak<Presence>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(p) = presence.upgrade() else { return };
        match serde_json::from_slice::<Notice>(&msg.payload) {
            Ok(notice) => p.on_notice(notice).await,
            Err(err) => tracing::debug!(error = %err, "presence: unreadable notice"),
        }
    }
}

async fn heartbeat(presence: Weak<Presence>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(p) = presence.upgrade() else { return };
        p.snapshot().await;
        p.expire();
    }
}
