//! One local WebSocket connection as fan-out sees it: its bounded queue,
//! the gate that keeps a sender's own events behind its acks, and how it is
//! closed (a slow reader is cut off rather than allowed to slow its rooms).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outbox::{self, Refused};
use crate::websocket::Frame;

pub type ConnId = u64;

/// Close codes this gateway uses.
pub mod close {
    pub const GOING_AWAY: (u16, &str) = (1001, "closing");
    pub const SERVER_RESTART: (u16, &str) = (1012, "server restarting; reconnect");
    pub const TRY_AGAIN_LATER: (u16, &str) = (1013, "service unavailable; try again later");
    pub const TOO_BIG: (u16, &str) = (1009, "frame too large");
    pub const TOKEN_EXPIRED: (u16, &str) = (4001, "token expired");
    pub const TOO_SLOW: (u16, &str) = (4008, "too slow to read events; reconnect and catch up");
    pub const DISCONNECTED: (u16, &str) = (4003, "disconnected by the application");
}

/// How a connection is ended, and why.
#[derive(Clone)]
pub struct Closer {
    /// Stops the reader: no more frames are taken.
    stop: CancellationToken,
    /// Stops the writer at once, dropping what is queued (slow readers).
    abort: CancellationToken,
    reason: Arc<Mutex<Option<(u16, &'static str)>>>,
}

impl Closer {
    /// `parent` is the gateway's shutdown: cancelling it ends every
    /// connection with "server restarting".
    pub fn new(parent: &CancellationToken) -> Self {
        Self {
            stop: parent.child_token(),
            abort: CancellationToken::new(),
            reason: Arc::default(),
        }
    }

    /// Ends the connection after what is queued has been written.
    pub fn close(&self, reason: (u16, &'static str)) {
        self.set_reason(reason);
        self.stop.cancel();
    }

    /// Ends the connection now, dropping what is queued.
    pub fn abort(&self, reason: (u16, &'static str)) {
        self.set_reason(reason);
        self.stop.cancel();
        self.abort.cancel();
    }

    fn set_reason(&self, reason: (u16, &'static str)) {
        // A poisoned lock only means another thread panicked mid-store of a
        // Copy value; the value is still usable.
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(reason);
    }

    /// The close code and reason to send.
    pub fn reason(&self) -> (u16, &'static str) {
        let r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.unwrap_or(if self.stop.is_cancelled() {
            close::SERVER_RESTART
        } else {
            close::GOING_AWAY
        })
    }

    pub fn stopped(&self) -> &CancellationToken {
        &self.stop
    }

    pub fn aborted(&self) -> &CancellationToken {
        &self.abort
    }
}

/// A local connection as the hub sees it.
#[derive(Clone)]
pub struct Conn {
    pub id: ConnId,
    pub user: Uuid,
    tx: outbox::Sender,
    closer: Closer,
    gate: Arc<Mutex<AckGate>>,
}

/// Holds events back while sends of this connection wait for their
/// PubAcks: the persister can be quicker than a PubAck's way back, and the
/// sender must get its ack before that message's `message:persisted`. Once
/// one event is held, every later one is held behind it, so each room's
/// events stay in `seq` order; an ack lets go of what was held up to the
/// next event whose own ack is still on its way.
#[derive(Default)]
struct AckGate {
    /// Sends published and not acked yet; a handful at most, in order.
    awaiting: Vec<Uuid>,
    held: VecDeque<(Frame, Option<Uuid>)>,
}

impl AckGate {
    fn awaits(&self, temp_id: Option<Uuid>) -> bool {
        temp_id.is_some_and(|t| self.awaiting.contains(&t))
    }
}

impl Conn {
    pub fn new(id: ConnId, user: Uuid, tx: outbox::Sender, closer: Closer) -> Self {
        Self {
            id,
            user,
            tx,
            closer,
            gate: Arc::default(),
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, AckGate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection with `reason`, after what is queued.
    pub fn close(&self, reason: (u16, &'static str)) {
        self.closer.close(reason);
    }

    /// A send with this `temp_id` is about to be published.
    pub fn expect_ack(&self, temp_id: Uuid) {
        self.gate().awaiting.push(temp_id);
    }

    /// The reply to the send `temp_id` (an ack or an error) is queued: the
    /// events held for it may go.
    pub fn settle(&self, temp_id: Uuid) {
        let mut gate = self.gate();
        gate.awaiting.retain(|t| *t != temp_id);
        // Pushed under the gate's lock so no new event overtakes them.
        while let Some((_, t)) = gate.held.front() {
            if gate.awaits(*t) {
                break;
            }
            if let Some((frame, _)) = gate.held.pop_front() {
                self.push(frame);
            }
        }
    }

    /// Queues an ephemeral event (typing, presence, a read mark's echo)
    /// unless the connection is falling behind: then it is dropped, so the
    /// room left in the queue goes to messages.
    pub(crate) fn offer_ephemeral(&self, frame: &Frame) {
        let free = self.tx.capacity();
        if free * 4 <= self.tx.max_capacity() {
            metrics::counter!("gateway_ephemeral_dropped_total").increment(1);
            return;
        }
        self.offer(frame, None);
    }

    /// Queues an event without waiting, unless the ack gate holds it.
    pub(crate) fn offer(&self, frame: &Frame, temp_id: Option<Uuid>) {
        let mut gate = self.gate();
        let hold = !gate.held.is_empty() || gate.awaits(temp_id);
        if !hold {
            self.push(frame.clone());
        } else if gate.held.len() < self.tx.max_capacity() {
            gate.held.push_back((frame.clone(), temp_id));
        } else {
            self.too_slow();
        }
    }

    /// A connection whose queue is full is not keeping up: it is
    /// disconnected rather than allowed to slow the room, and catches up
    /// with history when it reconnects.
    fn push(&self, frame: Frame) {
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(Refused::Full) => self.too_slow(),
            Err(Refused::Closed) => {}
        }
    }

    fn too_slow(&self) {
        metrics::counter!("gateway_slow_disconnects_total").increment(1);
        tracing::info!(conn = self.id, user = %self.user, "disconnecting a connection too slow to read its events");
        self.closer.abort(close::TOO_SLOW);
    }
}

/// Events that lose nothing when dropped: the next one supersedes them.
pub(crate) fn is_ephemeral(kind: &str) -> bool {
    kind.starts_with("typing:") || kind.starts_with("presence:") || kind == "message:read"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(capacity: usize) -> (Conn, outbox::Receiver) {
        let (tx, rx) = outbox::outbox(capacity);
        let closer = Closer::new(&CancellationToken::new());
        (Conn::new(1, Uuid::new_v4(), tx, closer), rx)
    }

    fn drain(rx: &mut outbox::Receiver) -> Vec<Frame> {
        std::iter::from_fn(|| rx.try_recv()).collect()
    }

    #[test]
    fn a_persisted_event_that_beats_its_pub_ack_waits_for_the_ack() {
        let (conn, mut rx) = conn(16);
        let temp_id = Uuid::new_v4();
        conn.expect_ack(temp_id);
        conn.offer(&Frame::from_static("persisted"), Some(temp_id));
        conn.offer(&Frame::from_static("later event"), None);
        assert!(drain(&mut rx).is_empty(), "held until the ack is queued");
        // The session queues the ack, then settles.
        conn.tx.try_send(Frame::from_static("ack")).unwrap();
        conn.settle(temp_id);
        assert_eq!(drain(&mut rx), ["ack", "persisted", "later event"]);
        conn.offer(&Frame::from_static("after"), None);
        assert_eq!(drain(&mut rx), ["after"], "nothing is held once released");
    }

    #[test]
    fn events_of_other_sends_are_not_held() {
        let (conn, mut rx) = conn(16);
        conn.expect_ack(Uuid::new_v4());
        conn.offer(&Frame::from_static("someone else's"), Some(Uuid::new_v4()));
        assert_eq!(drain(&mut rx), ["someone else's"]);
    }

    #[test]
    fn with_sends_in_flight_each_ack_lets_go_of_the_events_up_to_the_next_send() {
        let (conn, mut rx) = conn(16);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        conn.expect_ack(a);
        conn.expect_ack(b);
        conn.offer(&Frame::from_static("a persisted"), Some(a));
        conn.offer(&Frame::from_static("typing"), None);
        conn.offer(&Frame::from_static("b persisted"), Some(b));
        conn.offer(&Frame::from_static("after b"), None);
        assert!(drain(&mut rx).is_empty());
        conn.tx.try_send(Frame::from_static("ack a")).unwrap();
        conn.settle(a);
        assert_eq!(drain(&mut rx), ["ack a", "a persisted", "typing"]);
        conn.tx.try_send(Frame::from_static("ack b")).unwrap();
        conn.settle(b);
        assert_eq!(drain(&mut rx), ["ack b", "b persisted", "after b"]);
    }

    #[test]
    fn a_connection_falling_behind_loses_typing_and_presence_before_messages() {
        let (conn, mut rx) = conn(8);
        for _ in 0..6 {
            conn.offer(&Frame::from_static("message"), None);
        }
        // Six of eight queued: ephemeral events are dropped, messages go on.
        conn.offer_ephemeral(&Frame::from_static("typing"));
        conn.offer(&Frame::from_static("message"), None);
        assert!(!conn.closer.aborted().is_cancelled());
        let got = drain(&mut rx);
        assert_eq!(got.len(), 7);
        assert!(got.iter().all(|f| *f == "message"));
        // With room again, they flow.
        conn.offer_ephemeral(&Frame::from_static("typing"));
        assert_eq!(drain(&mut rx), ["typing"]);
        assert!(is_ephemeral("typing:start") && is_ephemeral("presence:offline"));
        assert!(!is_ephemeral("message:persisted") && !is_ephemeral("room:joined"));
    }

    #[test]
    fn a_full_queue_disconnects_the_slow_reader() {
        let (conn, _rx) = conn(2);
        for _ in 0..3 {
            conn.offer(&Frame::from_static("e"), None);
        }
        assert!(conn.closer.aborted().is_cancelled());
        assert_eq!(conn.closer.reason(), close::TOO_SLOW);
    }
}
