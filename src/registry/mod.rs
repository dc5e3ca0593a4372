//! [`Registry`]: named sources, the rules that route requests to them, and
//! their buckets, shared by every adapter.
//!
//! The registry owns the map from a request to its bucket set and the
//! runtime changes of policy. Admission itself is the bucket's
//! ([`crate::bucket`]); reading requests and responses is the adapters'.
//! Both adapters call the same two functions: [`Registry::admit`] (or
//! [`Registry::acquire`]) before a request, and [`Permit::observe`] after its
//! response.
//!
//! ```
//! use tollgate::{presets, Policy, Registry, Source, Target, UnknownHost};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::Error> {
//! let registry = Registry::builder()
//!     .source(presets::musicbrainz())
//!     .source(Source::new("jikan").limit("3/s".parse()?).limit("60/min".parse()?).host("api.jikan.moe"))
//!     .unknown_hosts(UnknownHost::PassThrough)
//!     .build()?;
//! let uri: http::Uri = "https://musicbrainz.org/ws/2/artist".parse().unwrap();
//! let permit = registry.acquire(&Target::from_uri(&uri), 1.0).await?;
//! assert_eq!(permit.source(), Some("musicbrainz"));
//! let _permit = registry.source("jikan")?.acquire(1.0).await?; // non-HTTP work
//! registry.set_policy("musicbrainz", Policy::per_second(0.5)?)?;
//! # Ok(()) }
//! ```
//!
//! # Prices, shadow mode, lanes and metrics
//!
//! **Prices.** An API that prices its calls gets a [`Price`]: a request
//! takes that many tokens by method and path. GitHub's secondary limit (900
//! points a minute, a write costing 5) is part of
//! [`presets::github`](crate::presets::github):
//!
//! ```
//! use std::time::Duration;
//! use tollgate::{Policy, Price, Source};
//!
//! let github = Source::new("github")
//!     .limit("5000/h".parse()?)                                   // counts requests
//!     .priced_limit(Policy::window(900, Duration::from_secs(60))?.burst(5.0)?) // counts points
//!     .price(Price::new().writes(5.0))
//!     .host("api.github.com");
//! # let _ = github;
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! Both adapters pass the request's method; any mix of GETs and writes
//! stays within 900 points in any minute.
//!
//! **Shadow mode.** [`Source::shadow`] (or [`RegistryBuilder::shadow`])
//! measures what a new limit would delay or refuse and enforces nothing:
//! [`Registry::shadow_stats`] and the `tollgate_shadow_*` metrics count the
//! waits and refusals an enforcing source would have had on the same
//! traffic.
//!
//! **Priority lanes.** `Source::lanes(Lanes::new().batch_share(0.1))`
//! serves waiting requests interactive first and batch after, with batch
//! guaranteed 10 % of a saturated source. Mark a request [`Lane::Batch`] in
//! its extensions or with the header `x-tollgate-lane: batch` (the adapters
//! strip it). See [`lanes`].
//!
//! **Metrics** (feature `metrics`), through the `metrics` facade with the
//! source as a label. Install a recorder (any exporter) before building the
//! registry, which registers each source's handles once:
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `tollgate_admitted_total` | counter | `source` | requests admitted |
//! | `tollgate_waited_total` | counter | `source` | admitted after a wait |
//! | `tollgate_wait_seconds` | histogram | `source` | how long each waited |
//! | `tollgate_refused_total` | counter | `source`, `reason` (`rate`, `in_flight`) | refused |
//! | `tollgate_deferred_total` | counter | `source` | deferrals a server asked for |
//! | `tollgate_deferred_seconds` | histogram | `source` | how long each deferral |
//! | `tollgate_lowered_total` | counter | `source` | rates lowered by a server's quota |
//! | `tollgate_learned_rate` | gauge | `source` | a learning source's control rate |
//! | `tollgate_shadow_would_wait_total` | counter | `source` | shadow mode: would have waited |
//! | `tollgate_shadow_would_wait_seconds` | histogram | `source` | shadow mode: how long |
//! | `tollgate_shadow_would_refuse_total` | counter | `source` | shadow mode: would have refused |
//! | `tollgate_in_flight` | gauge | `source` | requests admitted, response not yet seen |
//!
//! # What lives where
//!
//! | file | owns |
//! |---|---|
//! | `builder.rs` | [`RegistryBuilder`]: checking sources and rules, building |
//! | `rules.rs` | host and path rules, [`Target`], routing |
//! | `hostkey.rs` | host names as map keys: inline, hashed with a seeded hasher |
//! | `admission.rs` | routing a request once to its bucket set, and admitting it now: [`Admission`] |
//! | `acquire.rs` | the [`Acquire`] future: waiting for the slot, one function per state |
//! | `take.rs` | taking tokens now (shadow mode, the in-flight slot) and naming refusals, for both |
//! | `context.rs` | what every set of a source shares (`SourceContext`), its limits as configured and in force, a request's cost |
//! | `buckets.rs` | a bucket set: several limits taken together, a server's rate, what it learned ([`crate::learn`]), its store (`store.rs`) |
//! | `hosts.rs` | per-host bucket sets with bounded memory |
//! | `store.rs` | the store seam: a set kept in this process (`store/local.rs`) or in Redis (`store/redis.rs`, with the registry's Redis methods), behind one set of operations |
//! | `permit.rs` | [`Permit`], and applying what a server said ([`Permit::observe`]) |
//! | `control.rs` | runtime changes: [`Registry::set_policy`], [`Registry::slow_down`], [`SourceHandle`] |
//! | `snapshot.rs` | [`Registry::snapshot`] |
//! | `meters.rs` | shadow-mode figures and metrics (feature `metrics`) |
//! | `lanes.rs` | priority lanes: interactive first, batch with a guaranteed share |
//! | `source.rs` | [`Source`], the public description of a source |
//! | `price.rs` | [`Price`]: tokens per request, by method and path |
//! | `config.rs` | TOML configuration (feature `serde`); `config/families.rs` its `[[source.headers]]` tables |
//! | `loom_model/` | loom models of the lane queues and the host table (tests under `--cfg tollgate_loom`; see `src/sync.rs`) |
//!
//! # Lock order
//!
//! Admission takes no lock on its fast path (the read lock of one shard of
//! a per-host table at most). Where locks are taken, they are taken in this order, and
//! never the other way:
//!
//! 1. a source's configuration (`SourceContext::config`): runtime changes
//!    and server rates hold it while they apply limits;
//! 2. its host table's shards, for reading, taken in shard order and held
//!    together, to visit every host set;
//! 3. for a learning source ([`crate::learn`]), a set's learning state: it
//!    is read to apply the limits it adds, and updated by a response under
//!    lock 1 (the host table is not needed then);
//! 4. a bucket's policy lock inside [`TokenBucket::set_policy`](crate::TokenBucket::set_policy);
//!    for a set kept in Redis (feature `redis`), at the same place, its Redis
//!    bucket's limit-set lock and then its fallback buckets' locks. Nothing
//!    awaits under any of them: Redis hears of a change from a task spawned
//!    there.
//!
//! A Redis bucket's last-error lock (its health), its queue of waiting
//! takes (`redis/batch.rs`), what it knows Redis refuses
//! (`redis/refusals.rs`) and a cluster store's map of health per slot are
//! leaves: no other lock is taken under them, and each is released before
//! any await, before a waiting take is answered and before a task is
//! spawned.
//!
//! Step 3 (a set's learning state) may also be taken under a host table
//! shard's *write* lock, by a sweep asking whether a set is idle: it is
//! then the last lock taken, and nothing under it takes another. For a set
//! kept in Redis the sweep also asks its Redis bucket (whether Redis has
//! failed, whether the set owes Redis what its fallback admitted, and when
//! its fallback is full again): atomics only, judged by tokio's now, read
//! before the lock.
//!
//! A source with lanes has one more lock per bucket set, its lane queues'
//! (`lanes.rs`): a leaf, taken with no other lock held; it only moves
//! places and wakers, and wakes the next request after releasing it.
//!
//! A host table shard's *write* lock is a leaf: under it the table touches
//! only that shard's map (and the table's atomic count). A sweep takes the
//! shards' write locks one after another, never two at once. A new host's set is made before the lock is taken (from
//! the configuration read under lock 1, released by then), and the time a
//! sweep judges idleness by is read before it too. A set made from a
//! configuration that changed meanwhile notices by a version number and
//! catches up after the insert.
//!
//! # A server's word is kept
//!
//! A deferral (`Retry-After`) is each bucket's floor and a server's rate is
//! kept beside its buckets, so every policy change applies the
//! configuration capped by it; neither is recomputed away. A set that
//! holds either is never evicted, and a host that leaves the overflow set
//! for a set of its own inherits the overflow set's debt, deferral and
//! rate.

mod acquire;
mod admission;
mod buckets;
mod builder;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
mod context;
mod control;
mod hostkey;
mod hosts;
pub mod lanes;
#[cfg(all(test, tollgate_loom))]
mod loom_model;
mod meters;
mod permit;
mod price;
pub mod rules;
mod snapshot;
mod source;
mod store;
mod take;

pub use acquire::Acquire;
pub use admission::Admission;
pub use builder::{RegistryBuilder, UnknownHost};
pub use control::SourceHandle;
pub use hosts::DEFAULT_MAX_HOSTS;
pub use lanes::{Lane, Lanes};
pub use meters::ShadowStats;
pub use permit::Permit;
pub use price::Price;
pub use rules::Target;
pub use snapshot::{BucketSnapshot, SourceSnapshot};
pub use source::{OnLimit, Scope, Source};

use crate::sync::Arc;
use std::fmt;

use crate::clock::SharedClock;
use crate::Error;
use buckets::{Buckets, SourceContext};
use hosts::HostTable;
use rules::Router;

/// The routing table and the sources: cheap to clone (an `Arc` inside), and
/// shared by every adapter.
///
/// Build one with [`Registry::builder`], clone it into every adapter, and
/// ask it directly for work that is not an HTTP request:
///
/// ```
/// use tollgate::{OnLimit, Registry, Source, Target};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tollgate::Error> {
/// let registry = Registry::builder()
///     .source(Source::new("api").limit("2/s".parse()?).host("api.example.com"))
///     .source(Source::new("search").limit("1/s".parse()?).host("search.example.com")
///         .on_limit(OnLimit::Reject))
///     .build()?;
///
/// // Wait mode (the default): the third request waits for its slot.
/// let api = Target::new("api.example.com", Some(443), "/items");
/// for _ in 0..3 {
///     let _permit = registry.acquire(&api, 1.0).await?;
/// }
///
/// // Reject mode: the second request is refused, with the exact wait.
/// let search = Target::new("search.example.com", Some(443), "/");
/// let _permit = registry.acquire(&search, 1.0).await?;
/// let refused = registry.acquire(&search, 1.0).await.unwrap_err();
/// assert!(refused.as_rate_limited().is_some_and(|r| r.retry_after() > std::time::Duration::ZERO));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Box<[SourceState]>,
    router: Router,
    unknown: Unknown,
    clock: SharedClock,
    /// The same clock, as the sets hold it (see [`buckets::SetClock`]).
    set_clock: buckets::SetClock,
    /// Whether any source has lanes (adapters then read and strip the lane
    /// header; otherwise they need not look).
    #[cfg_attr(not(any(feature = "tower", feature = "reqwest")), allow(dead_code))]
    has_lanes: bool,
}

#[derive(Clone, Copy)]
enum Unknown {
    PassThrough,
    Source(usize),
    Reject,
}

struct SourceState {
    scope: Scope,
    /// Shared with every bucket set of the source, so that a permit alone
    /// can apply what a response says.
    context: Arc<SourceContext>,
    /// The source-wide set; for a per-host source, the overflow set and
    /// the set that name-based work uses.
    shared: Arc<Buckets>,
    /// Boxed: most sources have none, and a source's state then fits in
    /// half a cache line.
    hosts: Option<Box<HostTable>>,
}

impl SourceState {
    fn name(&self) -> &str {
        &self.context.name
    }
}

fn names(states: &[SourceState]) -> Vec<String> {
    states.iter().map(|s| s.name().to_string()).collect()
}

impl Registry {
    /// A builder with no sources, passing unknown hosts through.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The clock the registry's buckets share.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The source names, in the order they were added.
    pub fn names(&self) -> Vec<String> {
        names(&self.inner.sources)
    }

    fn index(&self, name: &str) -> Result<usize, Error> {
        self.inner
            .sources
            .iter()
            .position(|s| s.name() == name)
            .ok_or_else(|| Error::unknown_source(name, self.names()))
    }

    /// What source `name` would have delayed or refused in shadow mode
    /// ([`Source::shadow`]); all zero for a source that enforces.
    pub fn shadow_stats(&self, name: &str) -> Result<ShadowStats, Error> {
        let i = self.index(name)?;
        Ok(self.inner.sources[i].context.meters.shadow.stats())
    }

    /// Whether any source has [`Lanes`]: adapters read a request's lane
    /// (and strip the lane header) only then.
    #[cfg_attr(not(any(feature = "tower", feature = "reqwest")), allow(dead_code))]
    pub(crate) fn has_lanes(&self) -> bool {
        self.inner.has_lanes
    }

    /// How many per-host bucket sets source `name` holds now.
    pub fn host_count(&self, name: &str) -> Result<usize, Error> {
        let i = self.index(name)?;
        Ok(self.inner.sources[i].hosts.as_ref().map_or(0, |t| t.len()))
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.names())
            .finish_non_exhaustive()
    }
}
