//! [`RedisBucket`]: the token bucket contract of
//! [`TokenBucket`](crate::TokenBucket), for every limit of one source at
//! once, with its state in Redis and its fallback beside it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::batch::{Batch, Turn};
use super::connection::Connection;
use super::fallback::{Debt, Health, LocalLimits, OnStoreError, Owed, Route};
use super::refusals::Refusals;
use super::reservation::{RedisAdmission, RedisReservation};
use super::script::{self, Limit, LimitSet, Op, TakeRequest};
use super::take::Alone;
use crate::clock::duration_nanos;
use crate::sync::RwLock;
use crate::{Error, Policy, RateLimited};

/// A bucket (one or several limits of one source) whose state lives in
/// Redis, shared by every process that names it; from
/// [`RedisStore::bucket`](super::RedisStore::bucket).
///
/// It keeps [`TokenBucket`](crate::TokenBucket)'s contract: exact refusals,
/// reservations in FIFO order within a longest wait, refunds of the last
/// reservation only, deferrals that never move earlier, policy changes that
/// keep the level; with several limits a request waits for the latest slot
/// among them and takes from all or none. Every decision is made by one
/// script call on Redis's clock; a waiter sleeps on its own tokio timer for
/// the difference between its slot and Redis's now. A request Redis's last
/// answers prove it would refuse is refused here, without a call, until
/// the slot they name (see [refusals without a round
/// trip](super#refusals-without-a-round-trip)).
///
/// Each call waits at most the store's timeout; when Redis fails the
/// bucket follows its [`OnStoreError`] and returns to Redis by itself.
///
/// Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct RedisBucket {
    pub(super) inner: Arc<BucketInner>,
}

pub(super) struct BucketInner {
    pub store: Arc<Connection>,
    pub name: Arc<str>,
    set: RwLock<Arc<LimitSet>>,
    pub on_store_error: OnStoreError,
    /// Shared by every bucket of a registry source, so that they fail over
    /// and come back together.
    pub health: Arc<Health>,
    pub local: LocalLimits,
    /// What Redis's last answers prove it refuses, to refuse it here.
    pub refusals: Arc<Refusals>,
    /// Takes waiting for the call on the way, to go together in the next.
    pub batch: Batch,
}

fn effective(policies: &[Policy]) -> &[Policy] {
    const UNLIMITED: &[Policy] = &[Policy::unlimited()];
    if policies.is_empty() {
        UNLIMITED
    } else {
        policies
    }
}

impl BucketInner {
    fn set(&self) -> Arc<LimitSet> {
        self.set.read().clone()
    }
}

impl RedisBucket {
    pub(super) fn new(
        store: Arc<Connection>,
        name: &str,
        policies: &[Policy],
        on_store_error: OnStoreError,
        health: Arc<Health>,
    ) -> RedisBucket {
        let policies = effective(policies);
        let divide_by = match on_store_error {
            OnStoreError::Local { divide_by } => divide_by,
            _ => 1,
        };
        let set = LimitSet {
            keys: store.keys(name, policies.len()),
            limits: policies.iter().map(|p| Limit::new(*p)).collect(),
        };
        RedisBucket {
            inner: Arc::new(BucketInner {
                store,
                name: name.into(),
                set: RwLock::new(Arc::new(set)),
                on_store_error,
                health,
                local: LocalLimits::new(policies, divide_by),
                refusals: Arc::new(Refusals::new()),
                batch: Batch::default(),
            }),
        }
    }

    /// The bucket's name (its hash tag in Redis).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Redis keys of its limits, in the order of its policies.
    pub fn keys(&self) -> Vec<String> {
        self.inner.set().keys.clone()
    }

    /// The policies in force, as given.
    pub fn policies(&self) -> Vec<Policy> {
        self.inner.set().limits.iter().map(|l| l.policy).collect()
    }

    /// What the bucket does while Redis fails.
    pub fn on_store_error(&self) -> OnStoreError {
        self.inner.on_store_error
    }

    /// Whether the bucket answers from its [`OnStoreError`] fallback now
    /// (Redis failed and has not answered since).
    pub fn is_on_fallback(&self) -> bool {
        self.inner.health.is_failed()
    }

    /// Runs `call` on Redis unless the bucket is on its fallback and no
    /// probe is due; `None` means the fallback decides.
    pub(super) async fn on_redis<T, F>(&self, call: impl FnOnce() -> F) -> Option<T>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let inner = &self.inner;
        let probe_every = inner.store.probe_every;
        if inner.health.route(probe_every) == Route::Fallback {
            return None;
        }
        let answer = match self.settle().await {
            Ok(()) => call().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(v) => {
                inner.health.answered(&inner.name);
                Some(v)
            }
            Err(e) => {
                inner
                    .health
                    .failed(&inner.name, &e, inner.on_store_error, probe_every);
                None
            }
        }
    }

    /// Charges Redis with what the local fallback admitted while Redis
    /// failed, if it admitted anything: one call carrying the tokens per
    /// limit and how long ago the first was taken. Calls wait for a charge
    /// in flight, so that none takes from Redis before the debt is there.
    async fn settle(&self) -> Result<(), Error> {
        let owed = &self.inner.local.owed;
        if !owed.is_pending() {
            return Ok(());
        }
        let _charging = owed.charging.lock().await;
        let Some(debt) = owed.take() else {
            owed.settled();
            return Ok(());
        };
        // Owed again unless the charge is known to have landed (this future
        // may be dropped while it waits for Redis).
        let mut unpaid = Unpaid {
            owed,
            debt: Some(debt),
        };
        let debt = unpaid.debt.as_ref().expect("just set");
        let set = self.inner.set();
        let costs = set.debt_costs(&debt.tokens);
        let since = debt.since.map_or(0, |t| duration_nanos(t.elapsed()));
        let op = Op::Charge {
            since,
            costs: &costs,
        };
        let reply = self.inner.store.eval(&set.keys, &set.limits, &op).await?;
        script::now("charge", &reply)?;
        unpaid.debt = None;
        owed.settled();
        Ok(())
    }

    /// Whether a registry's sweep may drop the set this bucket belongs to
    /// at `at` (tokio's now, read before the sweep's lock): Redis has not
    /// failed, nothing is owed to it, and the fallback is full, so a fresh
    /// bucket would be the same. Reads atomics only.
    pub(crate) fn is_idle_at(&self, at: tokio::time::Instant) -> bool {
        let inner = &self.inner;
        !inner.health.is_failed() && !inner.local.owed.is_pending() && inner.local.is_full_by(at)
    }

    /// Takes `tokens` from every limit now, or refuses with the exact wait
    /// on Redis's clock ([`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited));
    /// nothing is taken on refusal. The [`RedisAdmission`] says when, on Redis's clock. A refusal
    /// is remembered until its slot: until then the same request is refused
    /// without asking Redis (see [refusals without a round
    /// trip](super#refusals-without-a-round-trip)).
    ///
    /// Errors also, by [`ErrorKind`](crate::ErrorKind):
    /// [`InvalidTokens`](crate::ErrorKind::InvalidTokens) and
    /// [`InsufficientCapacity`](crate::ErrorKind::InsufficientCapacity)
    /// (checked before Redis is asked), and [`Store`](crate::ErrorKind::Store)
    /// when Redis fails and the bucket fails closed.
    pub async fn try_acquire(&self, tokens: f64) -> Result<RedisAdmission, Error> {
        Ok(self.reserve(tokens, Duration::ZERO).await?.commit())
    }

    /// Takes the next slot for `tokens` in FIFO order (the latest among the
    /// limits) if it comes within `max_wait` of Redis's now; otherwise
    /// refuses with the exact wait and takes nothing. When Redis's last
    /// answers prove the slot lies beyond `max_wait`, it refuses without
    /// asking Redis.
    ///
    /// The [`RedisReservation`] carries the slot and Redis's `TIME` when it
    /// was taken; [`wait`](RedisReservation::wait) sleeps for the
    /// difference on the local tokio timer, so no clock has to agree with
    /// Redis's. Dropped before its slot, it gives the tokens back if no
    /// later reservation was made.
    pub async fn reserve(
        &self,
        tokens: f64,
        max_wait: Duration,
    ) -> Result<RedisReservation, Error> {
        self.reserve_weighted(|_| tokens, max_wait).await
    }

    /// [`reserve`](Self::reserve) for a request that weighs `weight(i)` in
    /// limit `i` (a registry source with a [`Price`](crate::Price)).
    pub(crate) async fn reserve_weighted(
        &self,
        weight: impl Fn(usize) -> f64,
        max_wait: Duration,
    ) -> Result<RedisReservation, Error> {
        let inner = &self.inner;
        let set = inner.set();
        let costs = set.costs(&weight)?;
        // Redis refused as much until a slot still to come: refuse here.
        if let Some(wait) = inner.refusals.refuses(&set, &costs, max_wait) {
            return Err(Error::from(RateLimited::new(wait)));
        }
        let request = TakeRequest {
            max_wait: duration_nanos(max_wait),
            costs,
        };
        let answer = match inner.batch.join(&set, &request) {
            Turn::Alone => {
                let _alone = Alone(self);
                self.take_alone(set, &request).await
            }
            Turn::Wait(answer) => match answer.await {
                Ok(answer) => answer,
                // Whoever was to send it went away: alone, then.
                Err(_) => self.take_alone(set, &request).await,
            },
        };
        match answer {
            Some(answer) => answer,
            None => self.fallback_reserve(weight, max_wait),
        }
    }

    fn fallback_reserve(
        &self,
        weight: impl Fn(usize) -> f64,
        max_wait: Duration,
    ) -> Result<RedisReservation, Error> {
        let inner = &self.inner;
        match inner.on_store_error {
            OnStoreError::FailOpen => Ok(RedisReservation::open(inner.name.clone())),
            OnStoreError::FailClosed => Err(inner.health.closed_error(&inner.name)),
            OnStoreError::Local { .. } => {
                let taken = inner.local.reserve(weight, max_wait)?;
                Ok(RedisReservation::local(inner.name.clone(), taken))
            }
        }
    }

    /// Waits for `tokens`: reserves the next slot and sleeps until it.
    /// Dropping the future before the slot gives the tokens back (as
    /// dropping the reservation does).
    pub async fn acquire(&self, tokens: f64) -> Result<RedisAdmission, Error> {
        Ok(self.reserve(tokens, Duration::MAX).await?.wait().await)
    }

    /// No one-token request is admitted until `wait` from now on Redis's
    /// clock, and one is then; after that the bucket refills at its rate.
    /// A later deferral is never moved earlier, and no policy change lowers
    /// it. This is what a server's `Retry-After` does. A wait longer than
    /// 100 years counts as 100 years (see the [module docs](super)).
    ///
    /// The local fallback is deferred too, so the deferral holds while
    /// Redis fails (except when failing open).
    pub async fn defer_for(&self, wait: Duration) -> Result<(), Error> {
        self.inner.local.defer_for(wait);
        self.inner.refusals.clear();
        self.defer_remote(wait).await
    }

    /// [`defer_for`](Self::defer_for) from synchronous code (a registry
    /// applying a response's `Retry-After`): the fallback is deferred now,
    /// Redis in a task on the current tokio runtime (none: Redis is not
    /// told, and this process still holds the deferral in the registry's
    /// own buckets).
    pub(crate) fn defer_in_background(&self, wait: Duration) {
        self.inner.local.defer_for(wait);
        self.inner.refusals.clear();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let bucket = self.clone();
            runtime.spawn(async move {
                if let Err(e) = bucket.defer_remote(wait).await {
                    tracing::debug!(bucket = bucket.name(), error = %e, "could not defer in Redis");
                }
            });
        }
    }

    async fn defer_remote(&self, wait: Duration) -> Result<(), Error> {
        let inner = &self.inner;
        let set = inner.set();
        let op = Op::Defer {
            wait: duration_nanos(wait),
        };
        let store = &inner.store;
        let answer = self
            .on_redis(|| async {
                let reply = store.eval(&set.keys, &set.limits, &op).await?;
                script::now("defer", &reply)
            })
            .await;
        // Refusals read before the deferral landed name slots before it.
        inner.refusals.clear();
        match (answer, inner.on_store_error) {
            (Some(_), _) | (None, OnStoreError::FailOpen | OnStoreError::Local { .. }) => Ok(()),
            (None, _) => Err(inner.health.closed_error(&inner.name)),
        }
    }

    /// Tokens available now in the tightest limit, without taking any
    /// (infinite when unlimited and not deferred; infinite too while
    /// failing open).
    pub async fn available(&self) -> Result<f64, Error> {
        let inner = &self.inner;
        let set = inner.set();
        let store = &inner.store;
        let answer = self
            .on_redis(|| async {
                let reply = store.eval(&set.keys, &set.limits, &Op::Peek).await?;
                script::tokens(&reply)
            })
            .await;
        match (answer, inner.on_store_error) {
            (Some(tokens), _) => Ok(tokens),
            (None, OnStoreError::FailOpen) => Ok(f64::INFINITY),
            (None, OnStoreError::Local { .. }) => Ok(inner.local.available()),
            (None, _) => Err(inner.health.closed_error(&inner.name)),
        }
    }

    /// Changes the policies, keeping each limit's token count (clamped to
    /// the new capacity); pending reservations keep their slots, and a
    /// deferral is never lowered. With a different number of policies the
    /// limits are matched by position (extra keys expire by themselves).
    ///
    /// The change is in force at once in this process. Redis rescales the
    /// stored state now, or, if it cannot be reached, at the next call that
    /// reaches it; so this never fails for a store error.
    pub async fn set_policies(&self, policies: &[Policy]) -> Result<(), Error> {
        let set = self.replace_policies(policies);
        self.sync(set).await;
        Ok(())
    }

    /// [`set_policies`](Self::set_policies) from synchronous code (a
    /// registry applying a policy change under its configuration lock): in
    /// force in this process at once; Redis rescales in a task on the
    /// current tokio runtime, or at the next call that reaches it.
    pub(crate) fn set_policies_in_background(&self, policies: &[Policy]) {
        let set = self.replace_policies(policies);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let bucket = self.clone();
            runtime.spawn(async move { bucket.sync(set).await });
        }
    }

    fn replace_policies(&self, policies: &[Policy]) -> Arc<LimitSet> {
        let inner = &self.inner;
        let policies = effective(policies);
        let set = Arc::new(LimitSet {
            keys: inner.store.keys(&inner.name, policies.len()),
            limits: policies.iter().map(|p| Limit::new(*p)).collect(),
        });
        *inner.set.write() = set.clone();
        inner.refusals.clear();
        inner.local.set_policies(policies);
        set
    }

    async fn sync(&self, set: Arc<LimitSet>) {
        let inner = &self.inner;
        let store = &inner.store;
        self.on_redis(|| async {
            let reply = store.eval(&set.keys, &set.limits, &Op::Sync).await?;
            script::now("sync", &reply)
        })
        .await;
        // Answers read before Redis rescaled were under the old limits.
        inner.refusals.clear();
    }
}

/// A debt taken out to be charged: given back to the ledger when dropped
/// before the charge is known to have landed.
struct Unpaid<'a> {
    owed: &'a Owed,
    debt: Option<Debt>,
}

impl Drop for Unpaid<'_> {
    fn drop(&mut self) {
        if let Some(debt) = self.debt.take() {
            self.owed.restore(debt);
        }
    }
}

impl fmt::Debug for RedisBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBucket")
            .field("name", &self.inner.name)
            .field("policies", &self.policies())
            .field("on_store_error", &self.inner.on_store_error)
            .field("on_fallback", &self.is_on_fallback())
            .finish_non_exhaustive()
    }
}
