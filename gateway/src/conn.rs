//! One local WebSocket connection as fan-out sees it: its bounded queue,
//! the gate that keeps a sender's own events behind its acks, and how it is
//! closed (a slow reader is cut off rather than allowed to slow its rooms).

use uuid::Uuid;

use crate::outbox::{self, CloseReason, Refused};
use crate::websocket::Frame;

pub type ConnId = u64;

/// Close codes this gateway uses.
pub mod close {
    use super::CloseReason;

    pub const GOING_AWAY: CloseReason = (1001, "closing");
    pub const SERVER_RESTART: CloseReason = (1012, "server restarting; reconnect");
    pub const TRY_AGAIN_LATER: CloseReason = (1013, "service unavailable; try again later");
    pub const TOO_BIG: CloseReason = (1009, "frame too large");
    pub const TOKEN_EXPIRED: CloseReason = (4001, "token expired");
    pub const TOO_SLOW: CloseReason = (4008, "too slow to read events; reconnect and catch up");
    pub const DISCONNECTED: CloseReason = (4003, "disconnected by the application");
}

/// A local connection as the hub sees it: 32 bytes, its queue (with the
/// ack gate and how the connection ends) behind one shared allocation.
#[derive(Clone)]
pub struct Conn {
    pub id: ConnId,
    pub user: Uuid,
    tx: outbox::Sender,
}

impl Conn {
    pub fn new(id: ConnId, user: Uuid, tx: outbox::Sender) -> Self {
        Self { id, user, tx }
    }

    /// Closes the connection with `reason`, after what is queued.
    pub fn close(&self, reason: CloseReason) {
        self.tx.close(reason);
    }

    /// A send with this `temp_id` is about to be published: the
    /// persister can be quicker than a PubAck's way back, and the sender
    /// must get its ack before that message's `message:persisted`.
    pub fn expect_ack(&self, temp_id: Uuid) {
        self.tx.expect_ack(temp_id);
    }

    /// The reply to the send `temp_id` (an ack or an error) is queued: the
    /// events held for it may go.
    pub fn settle(&self, temp_id: Uuid) {
        let settled = self.tx.settle(temp_id);
        self.unless_too_slow(settled);
    }

    /// Queues the connection's own reply (an ack, an error); false once
    /// the connection is ending.
    pub fn reply(&self, frame: Frame) -> bool {
        self.tx.reply(frame).is_ok()
    }

    /// Queues an ephemeral event (typing, presence, a read mark's echo)
    /// unless the connection is falling behind: then it is dropped, so the
    /// room left in the queue goes to messages.
    pub(crate) fn offer_ephemeral(&self, frame: &Frame) {
        let offered = self.tx.offer_ephemeral(frame);
        if offered == Ok(false) {
            metrics::counter!("gateway_ephemeral_dropped_total").increment(1);
        }
        self.unless_too_slow(offered.map(drop));
    }

    /// Queues an event without waiting, unless the ack gate holds it.
    pub(crate) fn offer(&self, frame: &Frame, temp_id: Option<Uuid>) {
        let offered = self.tx.offer(frame, temp_id);
        self.unless_too_slow(offered);
    }

    /// A connection whose queue is full is not keeping up: it is
    /// disconnected rather than allowed to slow the room, and catches up
    /// with history when it reconnects.
    fn unless_too_slow(&self, queued: Result<(), Refused>) {
        if queued != Err(Refused::Full) {
            return;
        }
        metrics::counter!("gateway_slow_disconnects_total").increment(1);
        tracing::info!(conn = self.id, user = %self.user, "disconnecting a connection too slow to read its events");
        self.tx.abort(close::TOO_SLOW);
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
        (Conn::new(1, Uuid::new_v4(), tx), rx)
    }

    fn drain(rx: &outbox::Receiver) -> Vec<Frame> {
        std::iter::from_fn(|| rx.try_recv()).collect()
    }

    #[test]
    fn a_connection_falling_behind_loses_typing_and_presence_before_messages() {
        let (conn, rx) = conn(8);
        for _ in 0..6 {
            conn.offer(&Frame::from_static("message"), None);
        }
        // Six of eight queued: ephemeral events are dropped, messages go on.
        conn.offer_ephemeral(&Frame::from_static("typing"));
        conn.offer(&Frame::from_static("message"), None);
        assert_eq!(rx.ending(), None);
        let got = drain(&rx);
        assert_eq!(got.len(), 7);
        assert!(got.iter().all(|f| *f == "message"));
        // With room again, they flow.
        conn.offer_ephemeral(&Frame::from_static("typing"));
        assert_eq!(drain(&rx), ["typing"]);
        assert!(is_ephemeral("typing:start") && is_ephemeral("presence:offline"));
        assert!(!is_ephemeral("message:persisted") && !is_ephemeral("room:joined"));
    }

    #[test]
    fn a_full_queue_disconnects_the_slow_reader_at_once() {
        let (conn, rx) = conn(2);
        for _ in 0..3 {
            conn.offer(&Frame::from_static("e"), None);
        }
        let ending = rx.ending().expect("ended");
        assert!(ending.abort);
        assert_eq!(ending.reason, close::TOO_SLOW);
        assert!(drain(&rx).is_empty(), "what was queued is dropped");
    }

    #[test]
    fn events_released_by_an_ack_into_a_full_queue_disconnect_the_slow_reader() {
        let (conn, rx) = conn(2);
        let temp_id = Uuid::new_v4();
        conn.expect_ack(temp_id);
        conn.offer(&Frame::from_static("held 1"), Some(temp_id));
        conn.offer(&Frame::from_static("held 2"), None);
        assert!(conn.reply(Frame::from_static("ack")));
        assert!(conn.reply(Frame::from_static("other reply")));
        conn.settle(temp_id);
        assert_eq!(rx.ending().map(|e| e.reason), Some(close::TOO_SLOW));
    }
}
