//! What a [`RedisBucket`](super::RedisBucket) does while Redis fails: the
//! [`OnStoreError`] policy, the health state that switches to it and back,
//! and the local bucket set that stands in for Redis in
//! [`OnStoreError::Local`].

use std::time::{Duration, Instant};

use crate::bucket::{reserve_together, Ticket};
use crate::clock::{duration_nanos, Clock, Timestamp, TokioClock};
use crate::error::Cause;
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, RwLock};
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
    /// Refuse every request with [`ErrorKind::Store`](crate::ErrorKind::Store): the limit over
    /// availability. The default, so that nothing is ever looser than
    /// configured unless asked for.
    #[default]
    FailClosed,
    /// Admit from a bucket in this process with the same limits, each rate
    /// divided by `divide_by` (the number of processes expected to share the
    /// quota, so that together they stay near it; bursts are kept). A
    /// `divide_by` of 1 gives each process the whole quota. What it admits
    /// is charged to Redis when Redis answers again; the
    /// [module docs](super#around-an-outage-on-a-local-fallback) give the
    /// bound around an outage.
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
    /// The last store error's message, and its cause for the fail-closed
    /// error to keep.
    last_error: Mutex<(String, Option<Cause>)>,
}

/// Where one call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Redis,
    Fallback,
}

impl Health {
    pub(super) fn new() -> Health {
        Health {
            failed: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            epoch: Instant::now(),
            last_error: Mutex::new((String::new(), None)),
        }
    }

    fn elapsed(&self) -> u64 {
        duration_nanos(self.epoch.elapsed())
    }

    pub(super) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Redis while healthy; while failed, Redis for one caller per probe
    /// interval and the fallback for everyone else.
    pub(super) fn route(&self, probe_every: Duration) -> Route {
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
    pub(super) fn answered(&self, bucket: &str) {
        if self.failed.load(Ordering::Relaxed) && self.failed.swap(false, Ordering::AcqRel) {
            tracing::info!(bucket, "Redis answers again; the bucket is back on Redis");
        }
    }

    /// Redis failed with `error`: on the fallback until a probe succeeds.
    pub(super) fn failed(
        &self,
        bucket: &str,
        error: &Error,
        mode: OnStoreError,
        probe_every: Duration,
    ) {
        // The message alone: the fail-closed error quotes it inside its own,
        // and keeps its cause.
        let message = error
            .store_message()
            .map_or_else(|| error.to_string(), str::to_string);
        *self.last_error.lock() = (message, error.cause().cloned());
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
            let error = error.detail();
            tracing::warn!(bucket, error = %error, "Redis failed; {fallback} until it answers again");
        }
    }

    /// The error a fail-closed bucket gives while Redis is down.
    pub(super) fn closed_error(&self, bucket: &str) -> Error {
        let last = self.last_error.lock();
        let error = Error::store(format!(
            "bucket `{bucket}` fails closed while Redis is unavailable ({}); \
             wait for Redis, or choose OnStoreError::Local or FailOpen to keep going",
            last.0
        ));
        match &last.1 {
            Some(cause) => error.with_cause(cause.clone()),
            None => error,
        }
    }
}

/// What the fallback admitted while Redis failed: owed to the shared bucket
/// in Redis, and charged to it by the first call that reaches Redis again.
#[derive(Default)]
pub(super) struct Owed {
    debt: Mutex<Debt>,
    /// A debt is recorded and not yet charged (or its charge is in flight).
    pending: AtomicBool,
    /// Held while a charge is in flight: calls wait for it, so that none
    /// takes from Redis before the debt is there.
    pub charging: tokio::sync::Mutex<()>,
}

/// Tokens owed, per limit, and since when.
#[derive(Debug, Default)]
pub(super) struct Debt {
    /// When the first token of the debt was taken, on the local timer.
    pub since: Option<tokio::time::Instant>,
    /// Tokens per limit.
    pub tokens: Vec<f64>,
}

impl Owed {
    fn debt(&self) -> MutexGuard<'_, Debt> {
        self.debt.lock()
    }

    /// Whether anything is owed (or being charged). One atomic load.
    pub(super) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Records `weight(i)` tokens of limit `i` (of `n`) taken now.
    fn add(&self, n: usize, weight: impl Fn(usize) -> f64) {
        let mut debt = self.debt();
        debt.since.get_or_insert_with(tokio::time::Instant::now);
        let len = n.max(debt.tokens.len());
        debt.tokens.resize(len, 0.0);
        for (i, t) in debt.tokens.iter_mut().enumerate().take(n) {
            *t += weight(i);
        }
        self.pending.store(true, Ordering::Release);
    }

    /// Tokens of limit `i` given back by a local reservation.
    fn give_back(&self, i: usize, tokens: f64) {
        if let Some(t) = self.debt().tokens.get_mut(i) {
            *t = (*t - tokens).max(0.0);
        }
    }

    /// The debt to charge, leaving nothing owed here (but still pending
    /// until [`settled`](Self::settled)); `None` when nothing is owed.
    pub(super) fn take(&self) -> Option<Debt> {
        let mut debt = self.debt();
        if debt.tokens.iter().all(|&t| t <= 0.0) {
            *debt = Debt::default();
            return None;
        }
        Some(std::mem::take(&mut *debt))
    }

    /// A charge landed (or there was nothing to charge): not pending unless
    /// more was owed meanwhile.
    pub(super) fn settled(&self) {
        let debt = self.debt();
        if debt.tokens.iter().all(|&t| t <= 0.0) {
            self.pending.store(false, Ordering::Release);
        }
    }

    /// A charge failed (or may not have landed): owed again.
    pub(super) fn restore(&self, back: Debt) {
        let mut debt = self.debt();
        debt.since = match (debt.since, back.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let len = back.tokens.len().max(debt.tokens.len());
        debt.tokens.resize(len, 0.0);
        for (t, b) in debt.tokens.iter_mut().zip(back.tokens) {
            *t += b;
        }
        self.pending.store(true, Ordering::Release);
    }
}

/// The fallback's limits: one local bucket per limit, rates divided by the
/// expected number of processes.
pub(super) struct LocalLimits {
    divide_by: u32,
    clock: TokioClock,
    buckets: RwLock<std::sync::Arc<[TokenBucket<TokioClock>]>>,
    /// When every local bucket is full again (nanoseconds on `clock`) as far
    /// as the takes and deferrals so far go: from then on the fallback is
    /// the same as a fresh one. An atomic, so that a registry's sweep reads
    /// it under its table's lock without taking another.
    full_at: AtomicU64,
    pub owed: Arc<Owed>,
}

/// Tickets taken from every local limit for one slot.
pub(super) struct LocalTaken {
    buckets: std::sync::Arc<[TokenBucket<TokioClock>]>,
    owed: Arc<Owed>,
    tickets: Vec<Ticket>,
    /// The slot on the local tokio timer.
    pub deadline: tokio::time::Instant,
}

impl LocalTaken {
    /// Tokens available now in the tightest local limit.
    pub(super) fn available(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b.available())
            .fold(f64::INFINITY, f64::min)
    }

    /// Gives back what the tickets may still give back; returns the fewest
    /// tokens any limit gave back.
    pub(super) fn cancel(&self) -> f64 {
        let mut back = f64::INFINITY;
        for (i, (b, t)) in self.buckets.iter().zip(&self.tickets).enumerate() {
            let given = b.cancel_ticket(t);
            self.owed.give_back(i, given);
            back = back.min(given);
        }
        if back.is_finite() {
            back
        } else {
            0.0
        }
    }
}

impl LocalLimits {
    pub(super) fn new(policies: &[Policy], divide_by: u32) -> LocalLimits {
        let clock = TokioClock::new();
        let limits = LocalLimits {
            divide_by: divide_by.max(1),
            clock,
            buckets: RwLock::new(std::sync::Arc::from(Vec::new())),
            full_at: AtomicU64::new(0),
            owed: Arc::new(Owed::default()),
        };
        limits.set_policies(policies);
        limits
    }

    fn share(&self, p: &Policy) -> Policy {
        // `scaled` keeps the burst and accepts any factor in (0, 1].
        p.scaled(1.0 / f64::from(self.divide_by)).unwrap_or(*p)
    }

    fn buckets(&self) -> std::sync::Arc<[TokenBucket<TokioClock>]> {
        self.buckets.read().clone()
    }

    pub(super) fn set_policies(&self, policies: &[Policy]) {
        let mut buckets = self.buckets.write();
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
        self.note_full_at(&buckets);
    }

    fn note_full_at(&self, buckets: &[TokenBucket<TokioClock>]) {
        let at = buckets.iter().map(|b| b.full_at().as_nanos()).max();
        self.full_at.fetch_max(at.unwrap_or(0), Ordering::AcqRel);
    }

    /// Whether the fallback is full (and not deferred) at `at`, a time read
    /// before: then it is the same as a fresh one. Reads one atomic.
    pub(super) fn is_full_by(&self, at: tokio::time::Instant) -> bool {
        self.clock
            .instant(Timestamp::from_nanos(self.full_at.load(Ordering::Acquire)))
            <= at
    }

    /// Takes the latest slot among the limits if within `max_wait`, from
    /// every limit (`weight(i)` tokens from limit `i`) at that slot, or
    /// nothing (as the registry's bucket sets do).
    pub(super) fn reserve(
        &self,
        weight: impl Fn(usize) -> f64,
        max_wait: Duration,
    ) -> Result<LocalTaken, Error> {
        let buckets = self.buckets();
        let (slot, tickets) = reserve_together(|| buckets.iter(), &weight, &self.clock, max_wait)?;
        self.note_full_at(&buckets);
        self.owed.add(buckets.len(), &weight);
        Ok(LocalTaken {
            owed: self.owed.clone(),
            buckets,
            tickets,
            deadline: self.clock.instant(slot),
        })
    }

    pub(super) fn defer_for(&self, wait: Duration) {
        let until = self.clock.now() + wait;
        let buckets = self.buckets();
        for b in buckets.iter() {
            b.defer_until(until);
        }
        self.note_full_at(&buckets);
    }

    pub(super) fn available(&self) -> f64 {
        self.buckets()
            .iter()
            .map(|b| b.available())
            .fold(f64::INFINITY, f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debt_is_pending_until_a_charge_of_all_of_it_lands() {
        let owed = Owed::default();
        assert!(!owed.is_pending() && owed.take().is_none());
        owed.add(2, |i| [1.0, 2.0][i]);
        owed.add(2, |_| 1.0);
        owed.give_back(1, 0.5);
        assert!(owed.is_pending());
        let debt = owed.take().unwrap();
        assert_eq!(debt.tokens, vec![2.0, 2.5]);
        assert!(debt.since.is_some());
        // Admitted while the charge is in flight: still owed after it.
        owed.add(2, |_| 1.0);
        owed.settled();
        assert!(owed.is_pending());
        // A charge that failed is owed again, with the earlier start.
        owed.restore(debt);
        let again = owed.take().unwrap();
        assert_eq!(again.tokens, vec![3.0, 3.5]);
        owed.settled();
        assert!(!owed.is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_is_full_again_once_what_it_took_refills() {
        let local = LocalLimits::new(&["2/s".parse().unwrap()], 2);
        let t0 = tokio::time::Instant::now();
        assert!(local.is_full_by(t0));
        let taken = local.reserve(|_| 1.0, Duration::ZERO).unwrap();
        assert!(!local.is_full_by(t0));
        // One token at 1/s (2/s divided by 2).
        assert!(!local.is_full_by(t0 + Duration::from_millis(999)));
        assert!(local.is_full_by(t0 + Duration::from_secs(1)));
        drop(taken);
        local.defer_for(Duration::from_secs(5));
        assert!(!local.is_full_by(t0 + Duration::from_secs(4)));
        assert!(local.is_full_by(t0 + Duration::from_secs(5)));
    }
}
