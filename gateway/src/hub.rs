//! This gateway's share of fan-out: which local connections are in which
//! room, one NATS subscription per room that has any, and delivery of each
//! room event to those connections.
//!
//! Membership of local users is kept here too: it is what a send is checked
//! against, without a database round trip. It is loaded from PostgreSQL
//! when a user's first connection opens and updated at once by the joins
//! and leaves this gateway accepts, so a send right after a join passes
//! although the join is still a job in the stream.
//!
//! The lock is a `std` RwLock, never held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use async_nats::Client;
use futures::StreamExt;
use shared::events::RoomEvent;
use shared::subjects::Subjects;
use uuid::Uuid;

use crate::conn::{close, is_ephemeral, Conn, ConnId};
use crate::websocket::{self, Frame};

/// The kind of the internal event, on a user's subject, that closes every
/// connection of that user on every gateway (the server API's disconnect).
pub const DISCONNECT_EVENT: &str = "user:disconnect";

#[derive(Default)]
struct Room {
    conns: HashMap<ConnId, Conn>,
    /// The highest `seq` delivered here: a message whose event a persister
    /// publishes again (it died, or failed, before it could ack) reaches
    /// each connection once. Only repeats are checked against it, so a
    /// room whose seqs start again (a database rebuilt from nothing) is
    /// never silenced.
    last_seq: AtomicI64,
    /// Aborts the room's subscription task when the room is dropped.
    subscription: Option<AbortOnDrop>,
    /// Seen to have more than [`shared::membership::BIG_ROOM`] members:
    /// presence is not pushed through it.
    big: std::sync::atomic::AtomicBool,
}

impl Room {
    fn is_big(&self) -> bool {
        self.big.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the room's connections are to get `event`: not if it is a
    /// message told again that was delivered here already. (One
    /// subscription task per room delivers its events, one by one.)
    fn admits(&self, event: &RoomEvent) -> bool {
        let Some(seq) = event.seq else { return true };
        let delivered = self.last_seq.fetch_max(seq, Ordering::Relaxed) >= seq;
        !(event.repeat && delivered)
    }
}

struct LocalUser {
    /// As the user's latest token or `user:update` has it.
    profile: Arc<shared::protocol::User>,
    rooms: HashSet<String>,
    /// Mostly one: a vector, not a map, which would allocate four slots.
    conns: Vec<Conn>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    users: HashMap<Uuid, LocalUser>,
    /// Users taken out of rooms lately (removed, banned), and when: for
    /// [`REVOKED_FOR`] this gateway's memory does not vouch for them in
    /// those rooms (an event of their membership from before may still
    /// come and add them back), the stream does.
    revoked: HashMap<Uuid, HashMap<String, std::time::Instant>>,
}

/// How long a revocation makes membership checks ask the stream.
const REVOKED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Hub {
    inner: RwLock<Inner>,
    client: Client,
    subjects: Subjects,
    me: Weak<Hub>,
}

impl Hub {
    pub fn new(client: Client, subjects: Subjects) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            inner: RwLock::default(),
            client,
            subjects,
            me: me.clone(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `user` is a member of `room`, if this gateway knows the user
    /// (they have a connection here); `None` otherwise.
    ///
    /// `None` also for a user taken out of the room lately: ask the stream.
    pub fn is_member(&self, user: Uuid, room: &str) -> Option<bool> {
        let inner = self.read();
        let known = inner.users.get(&user).map(|u| u.rooms.contains(room))?;
        // By user, then room: a send's check allocates nothing.
        if known
            && inner
                .revoked
                .get(&user)
                .is_some_and(|r| r.contains_key(room))
        {
            return None;
        }
        Some(known)
    }

    /// Takes `user` out of `room` here at once (a removal or a ban accepted
    /// on any gateway), before any persister has written it.
    pub fn revoke(&self, user: Uuid, room: &str) {
        self.remove_member(user, room);
        let mut inner = self.write();
        let now = std::time::Instant::now();
        inner.revoked.retain(|_, rooms| {
            rooms.retain(|_, at| now.duration_since(*at) < REVOKED_FOR);
            !rooms.is_empty()
        });
        inner
            .revoked
            .entry(user)
            .or_default()
            .insert(room.to_owned(), now);
    }

    /// The rooms of a user connected here, if any.
    pub fn rooms_of(&self, user: Uuid) -> Option<Vec<String>> {
        self.read()
            .users
            .get(&user)
            .map(|u| u.rooms.iter().cloned().collect())
    }

    /// The name of a user connected here.
    pub fn user(&self, id: Uuid) -> Option<shared::protocol::User> {
        self.read().users.get(&id).map(|u| (*u.profile).clone())
    }

    /// A local user's new profile (`user:update`).
    pub fn update_profile(&self, profile: &shared::protocol::User) {
        if let Some(u) = self.write().users.get_mut(&profile.id) {
            u.profile = Arc::new(profile.clone());
        }
    }

    /// Registers a new connection. `stored_rooms` are the user's rooms in
    /// PostgreSQL; when the user already has connections here, the rooms
    /// this gateway knows of (fresher: joins not persisted yet) are kept
    /// too. Returns the user's rooms once the connection receives their
    /// events and the user's own.
    ///
    /// `loaded_at`: when the reading of `stored_rooms` began; a room the
    /// user was taken out of since is dropped from them.
    pub async fn connect(
        &self,
        conn: Conn,
        profile: &Arc<shared::protocol::User>,
        mut stored_rooms: Vec<String>,
        loaded_at: std::time::Instant,
    ) -> (Vec<String>, bool) {
        let (rooms, first) = {
            let mut inner = self.write();
            stored_rooms.retain(|room| {
                inner
                    .revoked
                    .get(&conn.user)
                    .and_then(|r| r.get(room))
                    .is_none_or(|at| *at < loaded_at)
            });
            let first = !inner.users.contains_key(&conn.user);
            let user = inner.users.entry(conn.user).or_insert_with(|| LocalUser {
                profile: Arc::clone(profile),
                rooms: HashSet::new(),
                conns: Vec::new(),
            });
            user.profile = Arc::clone(profile);
            user.rooms.extend(stored_rooms);
            user.conns.push(conn.clone());
            let rooms: Vec<String> = user.rooms.iter().cloned().collect();
            for room in &rooms {
                inner
                    .rooms
                    .entry(room.clone())
                    .or_default()
                    .conns
                    .insert(conn.id, conn.clone());
            }
            (rooms, first)
        };
        self.subscribe(&rooms).await;
        metrics::gauge!("gateway_connections").increment(1.0);
        (rooms, first)
    }

    /// Removes a connection; rooms left without local connections are
    /// unsubscribed, and a user without connections is forgotten. Returns
    /// whether it was the user's last connection here.
    pub fn disconnect(&self, conn: &Conn) -> bool {
        let mut inner = self.write();
        let Some(user) = inner.users.get_mut(&conn.user) else {
            return false;
        };
        user.conns.retain(|c| c.id != conn.id);
        let rooms: Vec<String> = user.rooms.iter().cloned().collect();
        let last = user.conns.is_empty();
        if last {
            inner.users.remove(&conn.user);
        }
        for room in rooms {
            remove_conn(&mut inner, &room, conn.id);
        }
        metrics::gauge!("gateway_connections").decrement(1.0);
        last
    }

    /// Whether the user has a connection here.
    pub fn has_user(&self, user: Uuid) -> bool {
        self.read().users.contains_key(&user)
    }

    /// The local users with a connection in any of `rooms`, found through
    /// the rooms' own entries (not by walking every user here).
    pub fn users_in(&self, rooms: &[String]) -> HashMap<Uuid, shared::protocol::User> {
        let inner = self.read();
        let mut users = HashMap::new();
        for conn in rooms
            .iter()
            .filter_map(|r| inner.rooms.get(r))
            .filter(|entry| !entry.is_big())
            .flat_map(|entry| entry.conns.values())
        {
            if let Some(local) = inner.users.get(&conn.user) {
                users
                    .entry(conn.user)
                    .or_insert_with(|| (*local.profile).clone());
            }
        }
        users
    }

    /// Every local user with their rooms.
    pub fn local_users(&self) -> Vec<(shared::protocol::User, Vec<String>)> {
        self.read()
            .users
            .values()
            .map(|u| ((*u.profile).clone(), u.rooms.iter().cloned().collect()))
            .collect()
    }

    /// Queues an ephemeral `frame` (presence) once to every local
    /// connection in any of `rooms` but the big ones, except the
    /// connections of `skip`.
    /// Returns how many it was offered to.
    pub fn deliver_to_rooms<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a String>,
        skip: Uuid,
        frame: &Frame,
    ) -> usize {
        let inner = self.read();
        let mut sent = HashSet::new();
        for room in rooms {
            if let Some(entry) = inner.rooms.get(room).filter(|e| !e.is_big()) {
                for conn in entry.conns.values() {
                    if conn.user != skip && sent.insert(conn.id) {
                        conn.offer_ephemeral(frame);
                    }
                }
            }
        }
        sent.len()
    }

    /// Queues `frame` to one connection.
    pub fn deliver_to_conn(&self, user: Uuid, conn: ConnId, frame: &Frame) {
        let inner = self.read();
        if let Some(c) = inner
            .users
            .get(&user)
            .and_then(|u| u.conns.iter().find(|c| c.id == conn))
        {
            c.offer(frame, None);
        }
    }

    /// Makes `user` a member of `room` on this gateway: all of the user's
    /// connections here receive the room's events from now on.
    pub async fn add_member(&self, user: Uuid, room: &str) {
        if self.admit(user, room) {
            self.subscribe(&[room.to_owned()]).await;
        }
    }

    /// Puts a local user's connections in `room`; returns whether the user
    /// is local (and so the room needs a subscription).
    fn admit(&self, user: Uuid, room: &str) -> bool {
        let mut inner = self.write();
        let Some(local) = inner.users.get_mut(&user) else {
            return false;
        };
        local.rooms.insert(room.to_owned());
        let conns = local.conns.clone();
        let entry = inner.rooms.entry(room.to_owned()).or_default();
        for c in conns {
            entry.conns.insert(c.id, c);
        }
        true
    }

    /// Takes `user` out of `room` on this gateway.
    pub fn remove_member(&self, user: Uuid, room: &str) {
        let mut inner = self.write();
        let Some(local) = inner.users.get_mut(&user) else {
            return;
        };
        local.rooms.remove(room);
        let ids: Vec<ConnId> = local.conns.iter().map(|c| c.id).collect();
        for id in ids {
            remove_conn(&mut inner, room, id);
        }
    }

    /// Subscribes to the events of each room that has local connections
    /// and no subscription yet, and returns once NATS has the
    /// subscriptions, so no event published afterwards is missed.
    async fn subscribe(&self, rooms: &[String]) {
        let missing: Vec<&String> = {
            let inner = self.read();
            rooms
                .iter()
                .filter(|r| {
                    inner
                        .rooms
                        .get(*r)
                        .is_some_and(|e| e.subscription.is_none())
                })
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let mut subs = Vec::with_capacity(missing.len());
        for room in missing {
            match self.client.subscribe(self.subjects.room_events(room)).await {
                Ok(sub) => subs.push((room, sub)),
                Err(err) => {
                    tracing::warn!(room = %room, error = %err, "cannot subscribe to room events")
                }
            }
        }
        if let Err(err) = self.client.flush().await {
            tracing::warn!(error = %err, "flushing room subscriptions");
        }
        let mut inner = self.write();
        for (room, sub) in subs {
            // The room may have emptied meanwhile, or another call may have
            // subscribed first: then this subscription is dropped (and so
            // unsubscribed) here.
            if let Some(entry) = inner.rooms.get_mut(room) {
                if entry.subscription.is_none() && !entry.conns.is_empty() {
                    let task = tokio::spawn(forward(self.me.clone(), room.clone(), sub));
                    entry.subscription = Some(AbortOnDrop(task.abort_handle()));
                }
            }
        }
    }

    /// Follows every user's own events (invitations, membership changes
    /// made on other gateways) on one subscription for the whole gateway,
    /// keeping those of local users. One subscription rather than one per
    /// user keeps an idle connection small; these events are rare.
    ///
    /// # Errors
    /// When NATS refuses the subscription.
    pub async fn follow_users(&self) -> Result<(), async_nats::SubscribeError> {
        let sub = self
            .client
            .subscribe(self.subjects.all_user_events())
            .await?;
        tokio::spawn(forward_users(self.me.clone(), sub));
        Ok(())
    }

    /// An event on a user's subject: a membership change is applied here
    /// first (so the user's connections get the room's events from now on),
    /// then the frame goes to the user's connections unless it skips them.
    async fn on_user_event(&self, user: Uuid, event: &RoomEvent) {
        if event.kind == DISCONNECT_EVENT {
            if let Some(local) = self.read().users.get(&user) {
                for conn in &local.conns {
                    conn.close(close::DISCONNECTED);
                }
            }
            return;
        }
        if event.user == Some(user) {
            if let Some(room) = event.room.as_deref() {
                if self.apply_membership(user, room, &event.kind) {
                    self.subscribe(&[room.to_owned()]).await;
                }
            }
        }
        if event.skip_user == Some(user) {
            return;
        }
        let Some(frame) = websocket::frame(event.frame.clone()) else {
            return;
        };
        let inner = self.read();
        if let Some(local) = inner.users.get(&user) {
            for conn in &local.conns {
                conn.offer(&frame, event.temp_id);
            }
        }
    }

    /// Applies a membership event about local user `user` in `room`;
    /// returns whether the room now needs a subscription.
    fn apply_membership(&self, user: Uuid, room: &str, kind: &str) -> bool {
        match kind {
            shared::protocol::event::ROOM_JOINED => self.admit(user, room),
            shared::protocol::event::ROOM_LEFT => {
                self.remove_member(user, room);
                false
            }
            _ => false,
        }
    }

    /// Hands one event to every local connection in the room but the
    /// skipped user's. The frame's bytes are checked once and shared, not
    /// copied.
    ///
    /// A membership change of a local user seen here, on the room's own
    /// subject, is applied before anything after it in the room is
    /// delivered: the same change also comes on the user's subject, but
    /// that is another subscription, and a message right after the join
    /// could overtake it. (The room is subscribed already: this is its
    /// subscription.)
    fn deliver(&self, room: &str, event: &RoomEvent) {
        if let Some(user) = event.user {
            self.apply_membership(user, room, &event.kind);
        }
        if event.quiet {
            self.mark_big(room);
            return;
        }
        let Some(frame) = websocket::frame(event.frame.clone()) else {
            return;
        };
        let inner = self.read();
        let Some(entry) = inner.rooms.get(room) else {
            return;
        };
        if !entry.admits(event) {
            metrics::counter!("gateway_events_repeated_total").increment(1);
            return;
        }
        let mut n = 0u64;
        let ephemeral = is_ephemeral(&event.kind);
        for conn in entry.conns.values() {
            if Some(conn.user) != event.skip_user {
                if ephemeral {
                    conn.offer_ephemeral(&frame);
                } else {
                    conn.offer(&frame, event.temp_id);
                }
                n += 1;
            }
        }
        metrics::counter!("gateway_events_delivered_total").increment(n);
    }

    /// Whether `room` was seen to be big here.
    pub fn is_big(&self, room: &str) -> bool {
        self.read().rooms.get(room).is_some_and(Room::is_big)
    }

    /// Notes that `room` is big: no presence is pushed through it here.
    pub fn mark_big(&self, room: &str) {
        if let Some(entry) = self.read().rooms.get(room) {
            entry.big.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Closes every local connection with `reason` (the gateway is
    /// stopping), after what each has queued.
    pub fn close_all(&self, reason: crate::outbox::CloseReason) {
        for conn in self.read().users.values().flat_map(|u| &u.conns) {
            conn.close(reason);
        }
    }

    /// Connections open on this gateway.
    pub fn connection_count(&self) -> usize {
        self.read().users.values().map(|u| u.conns.len()).sum()
    }
}

fn remove_conn(inner: &mut Inner, room: &str, id: ConnId) {
    if let Some(entry) = inner.rooms.get_mut(room) {
        entry.conns.remove(&id);
        if entry.conns.is_empty() {
            // Dropping the entry aborts its subscription task.
            inner.rooms.remove(room);
        }
    }
}

/// Forwards users' events from NATS to the hub, for the users connected
/// here.
async fn forward_users(hub: Weak<Hub>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(hub) = hub.upgrade() else { return };
        let Some(user) = hub.subjects.user_of_events(&msg.subject) else {
            continue;
        };
        if !hub.has_user(user) {
            continue;
        }
        if let Some(event) = RoomEvent::from_nats(&msg) {
            hub.on_user_event(user, &event).await;
        }
    }
}

/// Forwards a room's events from NATS to its local connections.
async fn forward(hub: Weak<Hub>, room: String, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(hub) = hub.upgrade() else { return };
        match RoomEvent::from_nats(&msg) {
            Some(event) => hub.deliver(&room, &event),
            None => {
                tracing::debug!(subject = %msg.subject, "ignoring a message without an event type")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_told_again_is_delivered_once_and_fresh_ones_always() {
        let room = Room::default();
        let message = |seq: i64, repeat: bool| {
            let mut ev = RoomEvent::new("message:persisted", "r", serde_json::json!({}));
            ev.seq = Some(seq);
            ev.repeat = repeat;
            ev
        };
        assert!(room.admits(&message(1, false)));
        assert!(room.admits(&message(2, false)));
        assert!(!room.admits(&message(1, true)), "delivered already");
        assert!(!room.admits(&message(2, true)), "delivered already");
        assert!(room.admits(&message(3, true)), "missed: told now");
        assert!(
            room.admits(&message(1, false)),
            "seqs that start again (a database rebuilt from nothing) still go out"
        );
        let typing = RoomEvent::new("typing:start", "r", serde_json::json!({}));
        assert!(room.admits(&typing));
    }
}
