//! The store seam with the feature `redis`: a bucket set kept in this
//! process, or in Redis through a [`RedisBucket`], which decides its
//! admissions (one script call each, on Redis's clock) and hears its
//! deferrals and limits. The registry's Redis methods
//! ([`Source::redis`], [`Source::on_store_error`], [`Source::in_process`],
//! [`RegistryBuilder::redis`], [`SourceHandle::redis_bucket`]) live here,
//! beside the choice they make.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::super::buckets::{Buckets, Cost};
use super::super::{RegistryBuilder, Source, SourceHandle};
use crate::clock::{Clock, Timestamp};
use crate::redis::{OnStoreError, RedisBucket, RedisStore};
use crate::sync::Arc;
use crate::{Error, Policy, RateLimited};

/// Where a source keeps its bucket state.
#[derive(Clone, Debug, Default)]
pub(crate) enum StoreChoice {
    /// The registry's store: Redis if the registry has one, else this process.
    #[default]
    Registry,
    /// This process, whatever the registry's store.
    InProcess,
    /// This Redis store.
    Redis(RedisStore),
}

impl PartialEq for StoreChoice {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StoreChoice::Registry, StoreChoice::Registry)
            | (StoreChoice::InProcess, StoreChoice::InProcess) => true,
            (StoreChoice::Redis(a), StoreChoice::Redis(b)) => a.same(b),
            _ => false,
        }
    }
}

/// What a [`Source`] chose: its store, and what it does while that fails.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Choice {
    choice: StoreChoice,
    on_store_error: Option<OnStoreError>,
}

/// The registry's store, for the sources that choose none.
#[derive(Clone, Default)]
pub(crate) struct RegistryStore(Option<RedisStore>);

/// Where a source's sets keep their state: `None`, this process.
#[derive(Default)]
pub(crate) struct SourceStore(Option<crate::redis::SourceStore>);

impl SourceStore {
    /// Where source `s` keeps its sets, given the registry's store; or why
    /// it cannot be kept there.
    pub(crate) fn of(registry: &RegistryStore, s: &Source, shadow: bool) -> Result<Self, Error> {
        store_of(registry.0.as_ref(), s, shadow).map(SourceStore)
    }
}

/// One bucket set's store: `None`, this process; else its bucket in Redis,
/// which decides its admissions.
pub(crate) struct SetStore(Option<RedisBucket>);

/// A set kept in Redis: its admission (the time on the registry's clock
/// and what Redis left), boxed as the store's calls are async fns.
pub(crate) type Wait = Pin<Box<dyn Future<Output = Result<(Timestamp, f64), Error>> + Send>>;

impl SetStore {
    /// The store of a set of `source` (for `host`, if per host) whose
    /// limits follow `policies`.
    pub(crate) fn new(
        source: &SourceStore,
        name: &str,
        host: Option<&str>,
        policies: &[Policy],
    ) -> Self {
        SetStore(source.0.as_ref().map(|s| s.bucket(name, host, policies)))
    }

    /// Whether the store decides the set's admissions (then only
    /// asynchronous calls admit).
    #[inline(always)]
    pub(crate) fn is_shared(&self) -> bool {
        self.0.is_some()
    }

    /// Tells the store of a deferral (in a task; the set holds it already).
    pub(crate) fn defer(&self, wait: Duration) {
        if let Some(remote) = &self.0 {
            remote.defer_in_background(wait);
        }
    }

    /// Tells the store of the set's new limits (in a task).
    pub(crate) fn set_limits(&self, policies: &[Policy]) {
        if let Some(remote) = &self.0 {
            remote.set_policies_in_background(policies);
        }
    }

    /// Whether the store holds nothing the set would lose if dropped, at
    /// `timer` (tokio's now): its fallback full and not owed to Redis.
    pub(crate) fn is_idle_at(&self, timer: tokio::time::Instant) -> bool {
        self.0.as_ref().is_none_or(|r| r.is_idle_at(timer))
    }

    /// The admission of `cost` to `buckets`, when the store decides it: a
    /// future of its time on the registry's clock and what is left.
    pub(crate) fn admission(
        &self,
        buckets: &Arc<Buckets>,
        cost: Cost,
        start: Timestamp,
        max_wait: Duration,
    ) -> Option<Wait> {
        self.0
            .as_ref()
            .map(|_| remote_wait(buckets.clone(), cost, start, max_wait))
    }
}

impl fmt::Debug for SetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_shared() { "redis" } else { "local" })
    }
}

/// Admits a request to a set kept in Redis, waiting at most `max_wait`
/// from `start`: a deferral this process saw is waited out first (its word
/// to Redis may still be on the way), then one script call takes the slot
/// on Redis's clock, and the wait for it runs on the registry's clock. A
/// deferral that arrives meanwhile sends the request back to the queue (the
/// slot it leaves stays taken: stricter, never looser). Dropped before its
/// slot, the reservation gives its tokens back; dropped while its call is
/// on the way to Redis, what that call takes stays taken (stricter, never
/// looser).
fn remote_wait(buckets: Arc<Buckets>, cost: Cost, start: Timestamp, max_wait: Duration) -> Wait {
    Box::pin(async move {
        let Some(remote) = buckets.store.0.clone() else {
            return Err(buckets.async_only());
        };
        let clock = buckets.clock().clone();
        loop {
            let now = clock.now();
            let left = if max_wait == Duration::MAX {
                Duration::MAX
            } else {
                (start + max_wait).saturating_duration_since(now)
            };
            let floor = buckets.deferred_until();
            if floor > now {
                let wait = floor.saturating_duration_since(now);
                if wait > left {
                    return Err(Error::from(RateLimited::new(wait)));
                }
                clock.sleep_until(floor).await;
                continue;
            }
            let reservation = remote
                .reserve_weighted(|i| buckets.weight(i, cost), left)
                .await?;
            let remaining = reservation.remaining();
            reservation.wait().await;
            if buckets.deferred_until() <= clock.now() {
                return Ok((clock.now(), remaining));
            }
        }
    })
}

/// The Redis store of source `s` (`registry`'s unless it chose its own) and
/// what it does while Redis fails, or `None` to keep it in process; or why
/// it cannot be kept in Redis.
fn store_of(
    registry: Option<&RedisStore>,
    s: &Source,
    shadow: bool,
) -> Result<Option<crate::redis::SourceStore>, Error> {
    let store = match &s.store.choice {
        StoreChoice::Redis(store) => store,
        StoreChoice::Registry => match registry {
            Some(store) => store,
            None => return Ok(None),
        },
        StoreChoice::InProcess => return Ok(None),
    };
    let why = if shadow {
        Some((
            "shadow mode",
            "needs synchronous checks, which a source in Redis cannot make",
        ))
    } else if s.lanes.is_some() {
        Some((
            "lanes",
            "need synchronous checks, which a source in Redis cannot make",
        ))
    } else if s.learn.is_some() {
        Some((
            "learning",
            "is kept in each process, and a source in Redis shares one schedule",
        ))
    } else {
        None
    };
    if let Some((what, why)) = why {
        return Err(Error::config(
            "",
            format!(
                "{what} {why}: keep the source in process (`Source::in_process`), or drop its {what}"
            ),
        ));
    }
    let mode = s
        .store
        .on_store_error
        .unwrap_or_else(|| store.default_on_store_error());
    let mode = RedisStore::check_source(&s.name, mode)?;
    Ok(Some(crate::redis::SourceStore::new(store.clone(), mode)))
}

impl Source {
    /// Keeps this source's buckets in Redis, shared by every process and
    /// machine whose registry names the same source on the same store
    /// (instead of the registry's [`redis`](crate::RegistryBuilder::redis)
    /// store, or this process).
    ///
    /// The source keeps its contract through the registry and every
    /// adapter: each admission is one script call on Redis's clock (all of
    /// the source's limits taken at once), a waiter sleeps on its own timer,
    /// dropping it before its slot gives the tokens back, and a server's
    /// `Retry-After` or lower quota reaches Redis. A per-host source keeps
    /// one Redis bucket per host (or per client key for a server guard).
    /// What stays in each process: `max_in_flight`, and the synchronous
    /// checks, which refuse with
    /// [`ErrorKind::AsyncOnly`](crate::ErrorKind::AsyncOnly). Shadow mode
    /// and lanes need synchronous checks, so a registry refuses to build
    /// them on Redis. See [`redis`](crate::redis).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, store: crate::redis::RedisStore) -> Self {
        self.store.choice = StoreChoice::Redis(store);
        self
    }

    /// What this source does while its Redis store fails, instead of the
    /// store's [`on_store_error`](crate::redis::RedisStoreBuilder::on_store_error).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn on_store_error(mut self, mode: crate::redis::OnStoreError) -> Self {
        self.store.on_store_error = Some(mode);
        self
    }

    /// Keeps this source's buckets in this process even when the registry
    /// has a [`redis`](crate::RegistryBuilder::redis) store.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn in_process(mut self) -> Self {
        self.store.choice = StoreChoice::InProcess;
        self
    }
}

impl RegistryBuilder {
    /// Keeps every source's buckets in Redis (see [`Source::redis`]),
    /// except sources that choose their own store or
    /// [`in_process`](Source::in_process).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, store: crate::redis::RedisStore) -> Self {
        self.store = RegistryStore(Some(store));
        self
    }
}

impl SourceHandle {
    /// The source-wide bucket in Redis, for a source kept there: to ask
    /// Redis what is left ([`RedisBucket::available`](crate::redis::RedisBucket::available)),
    /// which [`available`](Self::available) cannot do synchronously.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_bucket(&self) -> Option<crate::redis::RedisBucket> {
        self.state().shared.store.0.clone()
    }
}
