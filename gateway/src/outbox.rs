//! A connection's queue of frames to write: bounded, one reader (the
//! writer task), any number of senders (the hub's fan-out, the session's
//! replies), and no memory while it is empty.
//!
//! tokio's bounded channel did this job but allocates its first block of
//! 32 slots and its bookkeeping up front: 1.5 KB for every connection,
//! idle or not, the largest part of an idle connection after its tasks.
//! Here the frames sit in a `VecDeque` that allocates when the first frame
//! waits and is given back when a burst has drained.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::websocket::Frame;

/// A queue that has drained keeps its buffer up to this many frames;
/// beyond, the buffer goes back to the allocator.
const KEEP: usize = 8;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity: the reader is not keeping up.
    Full,
    /// The writer is gone: the connection is closing.
    Closed,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// A frame was queued, or the last sender went.
    readable: Notify,
    /// A frame left a full queue, or the reader went.
    writable: Notify,
}

struct State {
    frames: VecDeque<Frame>,
    senders: usize,
    reader_gone: bool,
}

/// The sending side; clones share the queue.
pub struct Sender {
    shared: Arc<Shared>,
}

/// The one reading side.
pub struct Receiver {
    shared: Arc<Shared>,
}

/// A queue of at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            frames: VecDeque::new(),
            senders: 1,
            reader_gone: false,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
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
}

impl Sender {
    /// Queues `frame` now, or says why not.
    pub fn try_send(&self, frame: Frame) -> Result<(), Refused> {
        let mut state = self.shared.state();
        if state.reader_gone {
            return Err(Refused::Closed);
        }
        if state.frames.len() >= self.shared.capacity {
            return Err(Refused::Full);
        }
        state.frames.push_back(frame);
        drop(state);
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues `frame`, waiting while the queue is full; `Err` once the
    /// writer is gone.
    pub async fn send(&self, frame: Frame) -> Result<(), Refused> {
        loop {
            let writable = self.shared.writable.notified();
            tokio::pin!(writable);
            // Registered before the check, so a pop in between wakes it.
            writable.as_mut().enable();
            match self.try_send(frame.clone()) {
                Err(Refused::Full) => writable.await,
                done => return done,
            }
        }
    }

    /// Frames that can be queued now.
    pub fn capacity(&self) -> usize {
        let state = self.shared.state();
        self.shared.capacity.saturating_sub(state.frames.len())
    }

    /// Frames the queue holds at most.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.state();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.readable.notify_one();
        }
    }
}

impl Receiver {
    /// The next frame; `None` once every sender is gone and the queue is
    /// empty.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(frame) = self.pop(&mut state) {
                    return Some(frame);
                }
                if state.senders == 0 {
                    return None;
                }
            }
            // `notify_one` leaves a permit when nobody waits: a frame
            // queued between the check and this wait is not missed.
            self.shared.readable.notified().await;
        }
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Frame> {
        let mut state = self.shared.state();
        self.pop(&mut state)
    }

    fn pop(&self, state: &mut State) -> Option<Frame> {
        let was_full = state.frames.len() >= self.shared.capacity;
        let frame = state.frames.pop_front()?;
        if state.frames.is_empty() && state.frames.capacity() > KEEP {
            state.frames = VecDeque::new();
        }
        if was_full {
            self.shared.writable.notify_one();
        }
        Some(frame)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.reader_gone = true;
        state.frames = VecDeque::new();
        drop(state);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &'static str) -> Frame {
        Frame::from_static(s)
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_the_queue_ends_with_its_last_sender() {
        let (tx, mut rx) = outbox(4);
        let other = tx.clone();
        tx.try_send(f("a")).unwrap();
        other.send(f("b")).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.try_recv().as_deref(), Some("b"));
        drop(other);
        assert_eq!(rx.recv().await, None, "no sender left and nothing queued");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_send_waits_for_room() {
        let (tx, mut rx) = outbox(2);
        tx.try_send(f("1")).unwrap();
        tx.try_send(f("2")).unwrap();
        assert_eq!(tx.try_send(f("3")), Err(Refused::Full));
        assert_eq!(tx.capacity(), 0);
        let waiting = tokio::spawn(async move {
            tx.send(f("3")).await.unwrap();
            tx
        });
        tokio::task::yield_now().await;
        assert_eq!(rx.recv().await.as_deref(), Some("1"));
        let tx = waiting.await.unwrap();
        assert_eq!(rx.try_recv().as_deref(), Some("2"));
        assert_eq!(rx.try_recv().as_deref(), Some("3"));
        assert_eq!(tx.capacity(), 2);
    }

    #[tokio::test]
    async fn a_reader_waits_for_a_frame_and_senders_learn_when_it_is_gone() {
        let (tx, mut rx) = outbox(2);
        let reader = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(f("late")).unwrap();
        assert_eq!(reader.await.unwrap().as_deref(), Some("late"));
        assert_eq!(tx.try_send(f("x")), Err(Refused::Closed));
        assert_eq!(tx.send(f("x")).await, Err(Refused::Closed));
    }

    #[test]
    fn a_drained_queue_gives_its_buffer_back() {
        let (tx, mut rx) = outbox(64);
        for _ in 0..40 {
            tx.try_send(f("e")).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.state().frames.capacity(), 0);
    }
}
