//! The per-connection frame rate limit: a token bucket.

use std::time::Instant;

pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: f64, burst: f64) -> Self {
        Self {
            rate_per_s,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let mut b = TokenBucket::new(100.0, 200.0);
        let t0 = Instant::now();
        b.last = t0;
        let passed = (0..300).filter(|_| b.try_take_at(t0)).count();
        assert_eq!(passed, 200);
        // 100 ms later, 10 more tokens.
        let t1 = t0 + Duration::from_millis(100);
        let passed = (0..50).filter(|_| b.try_take_at(t1)).count();
        assert_eq!(passed, 10);
        // Idle for long: never more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        let passed = (0..1_000).filter(|_| b.try_take_at(t2)).count();
        assert_eq!(passed, 200);
    }
}
