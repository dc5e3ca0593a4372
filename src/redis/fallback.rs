//! What a [`RedisBucket`](super::RedisBucket) does while Redis fails: the
//! [`OnStoreError`] policy, the health state that switches to it and back,
//! and the local bucket set that stands in for Redis in
//! [`OnStoreError::Local`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::bucket::{reserve_together, Ticket};
use crate::clock::{duration_nanos, Clock, TokioClock};
use crate::{Error, Policy, TokenBucket};

/// What a Redis-backed bucket does when Redis fails (an error, or no answer
/// within the store's timeout).
///
/// While failed, the bucket answers from this policy at once and asks Redis
/// again at most every [`probe_every`](super::RedisStoreBuilder::probe_every);
/// the first answer from Redis switches it back. A tracing warning marks
/// each switch to the fallback, and an info event the way back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Admit every request: availability over the limit.
    FailOpen,
    /// Refuse every request with [`Error::Store`]: the limit over
    /// availability. The default, so that nothing is ever looser than
    /// configured unless asked for.
    #[default]
    FailClosed,
    /// Admit from a bucket in this process with the same limits, each rate
    /// divided by `divide_by` (the number of processes expected to share the
    /// quota, so that together they stay near it; bursts are kept). A
    /// `divide_by` of 1 gives each process the whole quota.
    Local {
        /// The number of processes expected to share the quota (at least 1).
        divide_by: u32,
    },
}

impl OnStoreError {
    pub(super) fn validate(self) -> Result<Self, Error> {
        match self {
            OnStoreError::Local { divide_by: 0 } => Err(Error::config(
                "on_store_error",
                "Local { divide_by: 0 }: divide_by is the number of processes sharing \
                 the quota; give at least 1",
            )),
            other => Ok(other),
        }
    }
}

/// Whether a bucket is on Redis or on its fallback, and when to ask Redis
/// again.
#[derive(Debug)]
pub(super) struct Health {
    failed: AtomicBool,
    /// Nanoseconds after `epoch` at which the next call may probe Redis.
    next_probe: AtomicU64,
    epoch: Instant,
    last_error: Mutex<String>,
}

/// Where one call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Redis,
    Fallback,
}

impl Health {
    pub fn new() -> Health {
        Health {
            failed: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            epoch: Instant::now(),
            last_error: Mutex::new(String::new()),
        }
    }

    fn elapsed(&self) -> u64 {
        duration_nanos(self.epoch.elapsed())
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Redis while healthy; while failed, Redis for one caller per probe
    /// interval and the fallback for everyone else.
    pub fn route(&self, probe_every: Duration) -> Route {
        if !self.is_failed() {
            return Route::Redis;
        }
        let now = self.elapsed();
        let due = self.next_probe.load(Ordering::Acquire);
        if now >= due
            && self
                .next_probe
                .compare_exchange(
                    due,
                    now.saturating_add(duration_nanos(probe_every)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Route::Redis;
        }
        Route::Fallback
    }

    /// Redis answered: back on it if it had failed.
    pub fn answered(&self, bucket: &str) {
        if self.failed.load(Ordering::Relaxed) && self.failed.swap(false, Ordering::AcqRel) {
            tracing::info!(bucket, "Redis answers again; the bucket is back on Redis");
        }
    }

    /// Redis failed with `error`: on the fallback until a probe succeeds.
    pub fn failed(&self, bucket: &str, error: &Error, mode: OnStoreError, probe_every: Duration) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
        self.next_probe.store(
            self.elapsed().saturating_add(duration_nanos(probe_every)),
            Ordering::Release,
        );
        if !self.failed.swap(true, Ordering::AcqRel) {
            let fallback = match mode {
                OnStoreError::FailOpen => "failing open: every request is admitted",
                OnStoreError::FailClosed => "failing closed: every request is refused",
                OnStoreError::Local { .. } => "falling back to a local bucket",
            };
            tracing::warn!(bucket, error = %error, "Redis failed; {fallback} until it answers again");
        }
    }

    /// The error a fail-closed bucket gives while Redis is down.
    pub fn closed_error(&self, bucket: &str) -> Error {
        let last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        Error::Store {
            message: format!(
                "bucket `{bucket}` fails closed while Redis is unavailable ({last}); \
                 wait for Redis, or choose OnStoreError::Local or FailOpen to keep going"
            ),
        }
    }
}

/// The fallback's limits: one local bucket per limit, rates divided by the
/// expected number of processes.
pub(super) struct LocalLimits {
    divide_by: u32,
    clock: TokioClock,
    buckets: RwLock<Arc<[TokenBucket<TokioClock>]>>,
}

/// Tickets taken from every local limit for one slot.
pub(super) struct LocalTaken {
    buckets: Arc<[TokenBucket<TokioClock>]>,
    tickets: Vec<Ticket>,
    /// The slot on the local tokio timer.
    pub deadline: tokio::time::Instant,
}

impl LocalTaken {
    /// Tokens available now in the tightest local limit.
    pub fn available(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b.available())
            .fold(f64::INFINITY, f64::min)
    }

    /// Gives back what the tickets may still give back; returns the fewest
    /// tokens any limit gave back.
    pub fn cancel(&self) -> f64 {
        let mut back = f64::INFINITY;
        for (b, t) in self.buckets.iter().zip(&self.tickets) {
            back = back.min(b.cancel_ticket(t));
        }
        if back.is_finite() {
            back
        } else {
            0.0
        }
    }
}

impl LocalLimits {
    pub fn new(policies: &[Policy], divide_by: u32) -> LocalLimits {
        let clock = TokioClock::new();
        let limits = LocalLimits {
            divide_by: divide_by.max(1),
            clock,
            buckets: RwLock::new(Arc::from(Vec::new())),
        };
        limits.set_policies(policies);
        limits
    }

    fn share(&self, p: &Policy) -> Policy {
        // `scaled` keeps the burst and accepts any factor in (0, 1].
        p.scaled(1.0 / f64::from(self.divide_by)).unwrap_or(*p)
    }

    fn buckets(&self) -> Arc<[TokenBucket<TokioClock>]> {
        self.buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_policies(&self, policies: &[Policy]) {
        let mut buckets = self.buckets.write().unwrap_or_else(|e| e.into_inner());
        if buckets.len() == policies.len() {
            for (b, p) in buckets.iter().zip(policies) {
                b.set_policy(self.share(p));
            }
        } else {
            *buckets = policies
                .iter()
                .map(|p| TokenBucket::with_clock(self.share(p), self.clock))
                .collect();
        }
    }

    /// Takes the latest slot among the limits if within `max_wait`, from
    /// every limit (`weight(i)` tokens from limit `i`) at that slot, or
    /// nothing (as the registry's bucket sets do).
    pub fn reserve(
        &self,
        weight: impl Fn(usize) -> f64,
        max_wait: Duration,
    ) -> Result<LocalTaken, Error> {
        let buckets = self.buckets();
        let (slot, tickets) = reserve_together(|| buckets.iter(), weight, &self.clock, max_wait)?;
        Ok(LocalTaken {
            buckets,
            tickets,
            deadline: self.clock.instant(slot),
        })
    }

    pub fn defer_for(&self, wait: Duration) {
        let until = self.clock.now() + wait;
        for b in self.buckets().iter() {
            b.defer_until(until);
        }
    }

    pub fn available(&self) -> f64 {
        self.buckets()
            .iter()
            .map(|b| b.available())
            .fold(f64::INFINITY, f64::min)
    }
}
