//! Exponential backoff with full jitter, shared by the retry adapters
//! ([`tower::RetryPolicy`](crate::tower::RetryPolicy), the reqwest
//! `RetryMiddleware` and reqwest-retry's policy). Which failures are
//! retried at all is [`retry`](crate::retry)'s business.
//!
//! The delay before retry `n` (counting from 0) is drawn uniformly from
//! `[0, min(cap, base · 2ⁿ)]` ("full jitter"), so that clients that failed
//! together do not retry together. A server's `Retry-After` always wins over
//! this schedule; the adapters apply it.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The statuses the retry adapters may repeat: 408, 429, 502, 503 and 504.
/// Whether they do depends on the request as well (a POST is not repeated
/// after a 502); [`retry::decide`](crate::retry::decide) has the whole table.
pub fn is_transient(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504)
}

/// How the backoff delay is spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// Uniform in `[0, base · 2ⁿ]` (the default).
    #[default]
    Full,
    /// Exactly `base · 2ⁿ`: for tests and for servers that want regular retries.
    None,
}

/// Exponential backoff: `base · 2^attempt`, capped, with jitter, for at most
/// `max_retries` retries.
///
/// ```
/// use std::time::Duration;
/// use tollgate::backoff::{Backoff, Jitter};
///
/// let b = Backoff::default().jitter(Jitter::None);
/// assert_eq!(b.delay(0), Some(Duration::from_secs(1)));
/// assert_eq!(b.delay(2), Some(Duration::from_secs(4)));
/// assert_eq!(b.delay(3), None); // three retries, then give up
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    max_retries: u32,
    jitter: Jitter,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s (full jitter), at most 3 retries, capped at 60 s.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_retries: 3,
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// The delay unit: retry `n` waits up to `base · 2ⁿ`.
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The longest delay.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// How many retries before giving up (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// How the delay is spread.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The number of retries allowed.
    pub fn retries(&self) -> u32 {
        self.max_retries
    }

    /// The upper bound of the delay before retry `attempt` (from 0):
    /// `min(cap, base · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before retry `attempt` (from 0), or `None` once
    /// `max_retries` retries have been made.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_retries {
            return None;
        }
        let ceiling = self.ceiling(attempt);
        Some(match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => ceiling.mul_f64(random_unit()),
        })
    }
}

/// A uniform number in [0, 1) from a per-thread xorshift generator: jitter
/// needs spread, not cryptographic quality.
fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            let here = &t as *const u64 as u64;
            (t ^ here.rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_within_its_bounds_and_spreads() {
        let b = Backoff::default().max_retries(6);
        for attempt in 0..6 {
            let ceiling = Duration::from_secs(1 << attempt);
            let delays: Vec<_> = (0..2000).map(|_| b.delay(attempt).unwrap()).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            let mean = delays.iter().map(|d| d.as_secs_f64()).sum::<f64>() / 2000.0;
            let half = ceiling.as_secs_f64() / 2.0;
            assert!(
                (mean - half).abs() < half * 0.1,
                "attempt {attempt}: mean {mean}"
            );
        }
        assert_eq!(b.delay(6), None);
    }

    #[test]
    fn the_cap_and_large_attempts_do_not_overflow() {
        let b = Backoff::default()
            .max_retries(u32::MAX)
            .cap(Duration::from_secs(30))
            .jitter(Jitter::None);
        assert_eq!(b.delay(5), Some(Duration::from_secs(30)));
        assert_eq!(b.delay(1000), Some(Duration::from_secs(30)));
        let b = Backoff::default()
            .base(Duration::MAX)
            .cap(Duration::MAX)
            .max_retries(100);
        assert!(b.delay(99).is_some());
    }
}
