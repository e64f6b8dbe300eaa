//! A connection's queue of frames to write: bounded, read by the
//! connection's own task, written by any number of senders (the hub's
//! fan-out, the session's replies), with no memory while it is empty.
//!
//! The same lock keeps the two other things senders and the connection's
//! task share: the events held back behind sends waiting for their PubAcks
//! (the ack gate), and whether and why the connection is ending. An idle
//! connection so costs one allocation here, not one per concern: tokio's
//! bounded channel alone allocated 1.5 KB up front, and two cancellation
//! tokens and two more mutexes came on top. The frames sit in a `VecDeque`
//! that allocates when the first frame waits and is given back when a
//! burst has drained.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::websocket::Frame;

/// A queue that has drained keeps its buffer up to this many frames;
/// beyond, the buffer goes back to the allocator.
const KEEP: usize = 8;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity: the reader is not keeping up.
    Full,
    /// The connection is ending: nothing more is written.
    Closed,
}

/// A close code and its reason, as the close frame carries them.
pub type CloseReason = (u16, &'static str);

/// How a connection ends, once something ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    pub reason: CloseReason,
    /// Ended at once, dropping what was queued (a slow reader), rather
    /// than after what is queued has been written.
    pub abort: bool,
}

/// What the connection's task is to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Write(Frame),
    /// Stop reading and end the connection; [`Receiver::ending`] says how.
    End,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// A frame was queued, or the connection is to end.
    wake: Notify,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Sends published and not acked yet: a handful at most, in order.
    awaiting: Vec<Uuid>,
    /// Events held until the acks of the sends they follow are queued.
    held: VecDeque<(Frame, Option<Uuid>)>,
    ending: Option<Ending>,
    /// The connection's task while a write waits on the socket: an abort
    /// wakes it.
    writing: Option<Waker>,
    reader_gone: bool,
}

impl State {
    fn awaits(&self, temp_id: Option<Uuid>) -> bool {
        temp_id.is_some_and(|t| self.awaiting.contains(&t))
    }

    fn refuses(&self) -> bool {
        self.reader_gone || self.ending.is_some_and(|e| e.abort)
    }
}

/// The sending side; clones share the queue.
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
}

/// The one reading side, held by the connection's task.
pub struct Receiver {
    shared: Arc<Shared>,
}

/// A queue of at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        capacity: capacity.max(1),
        wake: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves a consistent queue (every
        // change is one push or pop); carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` if there is room (or whatever the queue holds,
    /// unless `bounded`); the caller holds the lock.
    fn push(&self, state: &mut State, frame: Frame, bounded: bool) -> Result<(), Refused> {
        if state.refuses() {
            return Err(Refused::Closed);
        }
        if bounded && state.frames.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.frames.push_back(frame);
        Ok(())
    }

    /// [`Shared::push`] under the lock `state` holds, then wakes the
    /// reader once the lock is let go.
    fn push_and_wake(
        &self,
        mut state: MutexGuard<'_, State>,
        frame: Frame,
        bounded: bool,
    ) -> Result<(), Refused> {
        let pushed = self.push(&mut state, frame, bounded);
        drop(state);
        if pushed.is_ok() {
            self.wake.notify_one();
        }
        pushed
    }

    /// Queues an event unless the ack gate holds it: once one event is
    /// held, every later one is held behind it, so each room's events stay
    /// in `seq` order.
    fn offer(
        &self,
        mut state: MutexGuard<'_, State>,
        frame: &Frame,
        temp_id: Option<Uuid>,
    ) -> Result<(), Refused> {
        if state.held.is_empty() && !state.awaits(temp_id) {
            return self.push_and_wake(state, frame.clone(), true);
        }
        if state.refuses() {
            return Err(Refused::Closed);
        }
        if state.held.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.held.push_back((frame.clone(), temp_id));
        Ok(())
    }
}

impl Sender {
    /// Queues `frame` now, or says why not.
    pub fn try_send(&self, frame: Frame) -> Result<(), Refused> {
        self.shared.push_and_wake(self.shared.state(), frame, true)
    }

    /// Queues an event without waiting, unless the ack gate holds it.
    pub fn offer(&self, frame: &Frame, temp_id: Option<Uuid>) -> Result<(), Refused> {
        self.shared.offer(self.shared.state(), frame, temp_id)
    }

    /// Queues an event that loses nothing when dropped (typing, presence)
    /// unless three quarters of the queue are taken: then it is dropped
    /// (`Ok(false)`), so the room left goes to messages.
    pub fn offer_ephemeral(&self, frame: &Frame) -> Result<bool, Refused> {
        let state = self.shared.state();
        let free = self.shared.capacity.saturating_sub(state.frames.len());
        if free * 4 <= self.shared.capacity {
            return Ok(false);
        }
        self.shared.offer(state, frame, None).map(|()| true)
    }

    /// Queues the connection's own reply whatever the queue holds: the
    /// connection reads its next frame only while the queue has room
    /// ([`Receiver::has_room`]), so replies stay bounded by that and by
    /// the sends in flight.
    pub fn reply(&self, frame: Frame) -> Result<(), Refused> {
        self.shared.push_and_wake(self.shared.state(), frame, false)
    }

    /// A send with this `temp_id` is about to be published: events that
    /// carry it wait for its ack.
    pub fn expect_ack(&self, temp_id: Uuid) {
        self.shared.state().awaiting.push(temp_id);
    }

    /// The reply to the send `temp_id` (an ack or an error) is queued: the
    /// events held for it go, up to the next one whose own ack is still on
    /// its way.
    pub fn settle(&self, temp_id: Uuid) -> Result<(), Refused> {
        let mut state = self.shared.state();
        state.awaiting.retain(|t| *t != temp_id);
        let mut result = Ok(());
        let mut pushed = false;
        // Pushed under the lock so no new event overtakes them.
        while let Some((_, t)) = state.held.front() {
            if state.awaits(*t) {
                break;
            }
            let Some((frame, _)) = state.held.pop_front() else {
                break;
            };
            result = self.shared.push(&mut state, frame, true);
            if result.is_err() {
                break;
            }
            pushed = true;
        }
        drop(state);
        if pushed {
            self.shared.wake.notify_one();
        }
        result
    }

    /// Frames that can be queued now.
    pub fn capacity(&self) -> usize {
        let state = self.shared.state();
        self.shared.capacity.saturating_sub(state.frames.len())
    }

    /// Ends the connection with `reason` after what is queued has been
    /// written. The first reason given is the one sent.
    pub fn close(&self, reason: CloseReason) {
        self.end(Ending {
            reason,
            abort: false,
        });
    }

    /// Ends the connection with `reason` now, dropping what is queued.
    pub fn abort(&self, reason: CloseReason) {
        self.end(Ending {
            reason,
            abort: true,
        });
    }

    fn end(&self, ending: Ending) {
        let mut state = self.shared.state();
        let reason = state.ending.map_or(ending.reason, |e| e.reason);
        let abort = ending.abort || state.ending.is_some_and(|e| e.abort);
        state.ending = Some(Ending { reason, abort });
        let writing = if abort {
            state.frames = VecDeque::new();
            state.held = VecDeque::new();
            state.writing.take()
        } else {
            None
        };
        drop(state);
        self.shared.wake.notify_one();
        if let Some(task) = writing {
            task.wake();
        }
    }
}

impl Receiver {
    /// The next thing to do: end the connection once something ended it
    /// (frames still queued are left for [`Receiver::try_recv`] after the
    /// connection has left its rooms), else write the next frame, waiting
    /// for one.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut state = self.shared.state();
                if state.ending.is_some() {
                    return Next::End;
                }
                if let Some(frame) = self.pop(&mut state) {
                    return Next::Write(frame);
                }
            }
            // `notify_one` leaves a permit when nobody waits: a frame
            // queued between the check and this wait is not missed.
            self.shared.wake.notified().await;
        }
    }

    /// The next frame if one is queued and the connection was not aborted.
    pub fn try_recv(&self) -> Option<Frame> {
        let mut state = self.shared.state();
        self.pop(&mut state)
    }

    /// Ready once the connection is aborted; else `cx` is woken by an
    /// abort. For a write that waits on the socket.
    pub fn poll_aborted(&self, cx: &Context<'_>) -> Poll<()> {
        let mut state = self.shared.state();
        if state.ending.is_some_and(|e| e.abort) {
            return Poll::Ready(());
        }
        match &mut state.writing {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether something ended the connection, and how.
    pub fn ending(&self) -> Option<Ending> {
        self.shared.state().ending
    }

    /// Whether the queue has room for another frame: the connection reads
    /// its client's next frame only then, so a client that does not read
    /// its replies is not read either.
    pub fn has_room(&self) -> bool {
        self.shared.state().frames.len() < self.shared.capacity
    }

    fn pop(&self, state: &mut State) -> Option<Frame> {
        let frame = state.frames.pop_front()?;
        if state.frames.is_empty() && state.frames.capacity() > KEEP {
            state.frames = VecDeque::new();
        }
        Some(frame)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.reader_gone = true;
        state.frames = VecDeque::new();
        state.held = VecDeque::new();
    }
}

#[cfg(test)]
mod tests;
