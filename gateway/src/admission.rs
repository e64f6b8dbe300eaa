//! Admission of jobs under overload: beyond what the stack can store in
//! time, a send is refused at once (`unavailable`, "overloaded") instead of
//! queueing for seconds behind the others.
//!
//! The signal is the gateway's own publish latency, from handing a job to
//! the NATS client to its PubAck: it grows when JetStream, the network or
//! this process's CPU cannot keep up, whichever it is. Its moving average
//! is kept per gateway. Below the target, everything is admitted up to a
//! generous bound. Above it, publishes in flight are held to what the stack
//! answered per second times the target (Little's law: that many in flight
//! are answered within about the target at the rate the stack manages), and
//! never fewer than a small floor that keeps the average fresh. The rest
//! are refused, which costs a parse and an error frame: the capacity goes
//! to the sends that were let in, not to a queue.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::protocol::{ApiError, ErrorCode};

/// Publishes always admitted at once, whatever the latency: they keep the
/// average fresh, and an idle gateway can never refuse.
const FLOOR: usize = 64;
/// Publishes in flight at most, however fast they are answered.
const CEILING: usize = 4096;
/// The average's weight of a new sample, as a shift (1/32).
const WEIGHT_SHIFT: u32 = 5;
/// How often the answer rate is taken.
const RATE_WINDOW: Duration = Duration::from_millis(200);

pub struct Admission(Arc<State>);

struct State {
    target_us: u64,
    in_flight: AtomicUsize,
    /// The moving average of publish latency, in microseconds.
    average_us: AtomicU64,
    /// Publishes in flight at most while over the target.
    overloaded_limit: AtomicUsize,
    /// Answers counted since the window began, for the answer rate.
    answers: AtomicU64,
    /// When the window began, in microseconds since `epoch`.
    window_start_us: AtomicU64,
    epoch: Instant,
}

/// A publish let in; dropping it (answered or not) lets the next one in.
pub struct Ticket(Arc<State>);

impl Admission {
    pub fn new(target: Duration) -> Self {
        // Exposed from the start, not only after the first rate window: a
        // scrape right after start finds them.
        metrics::gauge!("gateway_publish_latency_average_seconds").set(0.0);
        metrics::gauge!("gateway_publish_overload_limit").set(FLOOR as f64);
        Self(Arc::new(State {
            target_us: target.as_micros().try_into().unwrap_or(u64::MAX),
            in_flight: AtomicUsize::new(0),
            average_us: AtomicU64::new(0),
            overloaded_limit: AtomicUsize::new(FLOOR),
            answers: AtomicU64::new(0),
            window_start_us: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }

    /// Lets a publish in, or says why not.
    ///
    /// # Errors
    /// `unavailable` (overloaded) when publishes take longer than the
    /// target and the floor is taken, or the ceiling is reached.
    pub fn admit(&self) -> Result<Ticket, ApiError> {
        let state = &self.0;
        let limit = if state.average_us.load(Ordering::Relaxed) > state.target_us {
            state.overloaded_limit.load(Ordering::Relaxed)
        } else {
            CEILING
        };
        let before = state.in_flight.fetch_add(1, Ordering::Relaxed);
        let ticket = Ticket(Arc::clone(state));
        if before >= limit {
            metrics::counter!("gateway_sends_refused_overload_total").increment(1);
            return Err(overloaded());
        }
        Ok(ticket)
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn record(&self, took: Duration) {
        self.0.record(took);
    }
}

impl Ticket {
    /// The publish was answered after `took`; its place is given back.
    pub fn answered(self, took: Duration) {
        self.0.record(took);
    }
}

impl State {
    fn record(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // One writer at a time is not needed: a lost update only delays
        // the average by one sample.
        let old = self.average_us.load(Ordering::Relaxed);
        let new = if sample >= old {
            old + ((sample - old) >> WEIGHT_SHIFT)
        } else {
            old - ((old - sample) >> WEIGHT_SHIFT)
        };
        self.average_us.store(new, Ordering::Relaxed);
        self.count_answer();
    }

    /// Counts an answer; once a window is over, sets the limit under
    /// overload from the rate it saw. Every send's answer comes here, so
    /// it takes no lock: of the answers that find the window over, the one
    /// that moves its start takes the count.
    fn count_answer(&self) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        let now_us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let start_us = self.window_start_us.load(Ordering::Relaxed);
        let elapsed_us = now_us.saturating_sub(start_us);
        if elapsed_us < RATE_WINDOW.as_micros() as u64
            || self
                .window_start_us
                .compare_exchange(start_us, now_us, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let answers = self.answers.swap(0, Ordering::Relaxed);
        let per_s = answers as f64 * 1e6 / elapsed_us as f64;
        let limit = (per_s * self.target_us as f64 / 1e6) as usize;
        let limit = limit.clamp(FLOOR, CEILING);
        self.overloaded_limit.store(limit, Ordering::Relaxed);
        let average = self.average_us.load(Ordering::Relaxed);
        metrics::gauge!("gateway_publish_latency_average_seconds").set(average as f64 / 1e6);
        metrics::gauge!("gateway_publish_overload_limit").set(limit as f64);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The refusal of a send the gateway cannot take now.
pub fn overloaded() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "the service is overloaded; nothing was stored, try again in a moment",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_target_up_to_the_ceiling_is_admitted() {
        let a = Admission::new(Duration::from_millis(250));
        let tickets: Vec<_> = (0..CEILING).map(|_| a.admit().expect("admitted")).collect();
        assert!(a.admit().is_err(), "the ceiling holds");
        drop(tickets);
        assert_eq!(
            a.in_flight(),
            0,
            "refusals and tickets give their place back"
        );
        assert!(a.admit().is_ok());
    }

    #[test]
    fn above_the_target_only_the_floor_is_admitted_until_it_recovers() {
        let a = Admission::new(Duration::from_millis(250));
        for _ in 0..200 {
            a.record(Duration::from_secs(2));
        }
        let tickets: Vec<_> = (0..FLOOR).map(|_| a.admit().expect("the floor")).collect();
        let err = a.admit().err().expect("refused beyond the floor");
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.message.contains("overloaded"), "{}", err.message);
        drop(tickets);
        for _ in 0..400 {
            a.record(Duration::from_millis(5));
        }
        let many: Vec<_> = (0..1000).map(|_| a.admit()).collect();
        assert!(many.iter().all(Result::is_ok), "fast again: all admitted");
    }

    #[test]
    fn under_overload_the_limit_follows_the_answered_rate_times_the_target() {
        let a = Admission::new(Duration::from_millis(250));
        // 2,000 answers within one window, each 1 s late.
        for _ in 0..2000 {
            a.record(Duration::from_secs(1));
        }
        std::thread::sleep(RATE_WINDOW);
        a.record(Duration::from_secs(1));
        let limit = a.0.overloaded_limit.load(Ordering::Relaxed);
        // About 2,000 answers in a little over 0.2 s, times 0.25 s.
        assert!((FLOOR..=2500).contains(&limit) && limit > 1000, "{limit}");
    }
}
