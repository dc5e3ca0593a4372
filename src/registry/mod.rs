//! [`Registry`]: named sources, the rules that route requests to them, and
//! their buckets, shared by every adapter.
//!
//! The registry owns the map from a request to its bucket set and the
//! runtime changes of policy. Admission itself is the bucket's
//! ([`crate::bucket`]); reading requests and responses is the adapters'.
//! Both adapters call the same two functions: [`Registry::acquire`] before a
//! request and `observe` after its response.
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

#[cfg(feature = "serde")]
pub mod config;
mod hosts;
mod observe;
pub mod rules;
mod source;

pub use hosts::{DEFAULT_MAX_HOSTS, SWEEP_EVERY};
pub use rules::Target;
pub use source::{OnLimit, Scope, Source};

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use crate::clock::{Clock, SharedClock, Timestamp};
use crate::{Error, Policy, SignalConfig};
use hosts::HostTable;
use rules::Router;
use source::Buckets;

/// What the registry does with a request that no rule matches (or that
/// names no host).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownHost {
    /// Send it without limit (the default).
    #[default]
    PassThrough,
    /// Use the named source.
    Default(String),
    /// Refuse it with [`Error::UnknownHost`].
    Reject,
}

/// The routing table and the sources: cheap to clone (an `Arc` inside), and
/// shared by every adapter.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Box<[SourceState]>,
    router: Router,
    unknown: Unknown,
    clock: SharedClock,
    signals: SignalConfig,
}

#[derive(Clone, Copy)]
enum Unknown {
    PassThrough,
    Source(usize),
    Reject,
}

struct SourceState {
    name: Arc<str>,
    scope: Scope,
    on_limit: OnLimit,
    max_in_flight: Option<usize>,
    /// Shared with every bucket set of the source, so that a permit alone
    /// can apply what a response says.
    context: Arc<SourceContext>,
    /// The source-wide set; for a per-host source, the overflow set and
    /// the set that name-based work uses.
    shared: Arc<Buckets>,
    hosts: Option<HostTable>,
}

/// What a bucket set needs to apply server signals: its source's
/// configuration and the registry's signal settings.
pub(crate) struct SourceContext {
    pub config: Mutex<SourceConfig>,
    pub signals: SignalConfig,
}

#[derive(Clone, Debug)]
pub(crate) struct SourceConfig {
    configured: Vec<Policy>,
    factor: f64,
}

impl SourceConfig {
    fn effective(&self) -> Vec<Policy> {
        if self.configured.is_empty() {
            return vec![Policy::unlimited()];
        }
        self.configured
            .iter()
            .map(|p| p.scaled(self.factor).unwrap_or(*p))
            .collect()
    }

    /// The effective limits, each lowered when a server announced a slower
    /// rate: to that rate times `signals.safety`, never below
    /// `signals.floor` of its own rate, and never raised. A server rate at
    /// or above a limit leaves it as it is (a window policy that matches
    /// the server exactly stays exact).
    pub(crate) fn effective_capped(&self, server_rate: f64, signals: &SignalConfig) -> Vec<Policy> {
        self.effective()
            .into_iter()
            .map(|p| {
                let rate = p.tokens_per_second();
                if server_rate >= rate * (1.0 - 1e-9) {
                    return p;
                }
                let lowered = (server_rate * signals.safety).max(rate * signals.floor);
                Policy::new(p.capacity(), lowered).unwrap_or(p)
            })
            .collect()
    }
}

/// Builds a [`Registry`]; see [`Registry::builder`].
#[derive(Default)]
pub struct RegistryBuilder {
    sources: Vec<Source>,
    unknown: UnknownHost,
    clock: Option<SharedClock>,
    max_hosts: Option<usize>,
    signals: SignalConfig,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("sources", &self.sources)
            .field("unknown", &self.unknown)
            .finish()
    }
}

impl RegistryBuilder {
    /// Adds a source.
    pub fn source(mut self, source: Source) -> Self {
        self.sources.push(source);
        self
    }

    /// Adds several sources.
    pub fn sources(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.sources.extend(sources);
        self
    }

    /// What to do with requests no rule matches.
    pub fn unknown_hosts(mut self, unknown: UnknownHost) -> Self {
        self.unknown = unknown;
        self
    }

    /// The clock every bucket reads and sleeps on (default [`FastClock`](crate::FastClock));
    /// [`TokioClock`](crate::TokioClock) for paused-time tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(SharedClock::new(clock));
        self
    }

    /// How many per-host bucket sets each per-host source keeps at most
    /// (default [`DEFAULT_MAX_HOSTS`]).
    pub fn max_hosts(mut self, n: usize) -> Self {
        self.max_hosts = Some(n);
        self
    }

    /// How server signals are read and applied (caps, safety factor, floor).
    pub fn signals(mut self, config: SignalConfig) -> Self {
        self.signals = config;
        self
    }

    /// Checks every source and rule and builds the registry.
    pub fn build(self) -> Result<Registry, Error> {
        let clock = self.clock.unwrap_or_default();
        let max_hosts = self.max_hosts.unwrap_or(DEFAULT_MAX_HOSTS);
        if max_hosts == 0 {
            return Err(Error::config(
                "max_hosts",
                "keep at least one host per source",
            ));
        }
        let mut router = Router::default();
        let mut states = Vec::with_capacity(self.sources.len());
        for (i, s) in self.sources.iter().enumerate() {
            let at = || format!("source `{}`", s.name);
            if s.name.trim().is_empty() {
                return Err(Error::config(
                    format!("source #{}", i + 1),
                    "the name is empty",
                ));
            }
            if self.sources[..i].iter().any(|o| o.name == s.name) {
                return Err(Error::config(
                    at(),
                    "the name is used twice; give each source its own",
                ));
            }
            if s.max_in_flight == Some(0) {
                return Err(Error::config(at(), "max_in_flight must be at least 1"));
            }
            if s.path.is_some() && s.hosts.is_empty() {
                return Err(Error::config(
                    at(),
                    "a path prefix needs a host; add `.host(..)`",
                ));
            }
            for h in &s.hosts {
                router.add(h, s.path.as_deref(), i).map_err(|e| match e {
                    Error::InvalidConfig { location, reason } => {
                        Error::config(format!("{} in {}", location, at()), reason)
                    }
                    e => e,
                })?;
            }
            let name: Arc<str> = s.name.as_str().into();
            let config = SourceConfig {
                configured: s.limits.clone(),
                factor: 1.0,
            };
            let policies = config.effective();
            let context = Arc::new(SourceContext {
                config: Mutex::new(config),
                signals: self.signals,
            });
            let shared = Arc::new(Buckets::new(
                name.clone(),
                context.clone(),
                None,
                &policies,
                &clock,
                s.max_in_flight,
            ));
            states.push(SourceState {
                name,
                scope: s.scope,
                on_limit: s.on_limit,
                max_in_flight: s.max_in_flight,
                context,
                shared,
                hosts: (s.scope == Scope::PerHost).then(|| HostTable::new(max_hosts)),
            });
        }
        let unknown = match &self.unknown {
            UnknownHost::PassThrough => Unknown::PassThrough,
            UnknownHost::Reject => Unknown::Reject,
            UnknownHost::Default(name) => match states.iter().position(|s| &*s.name == name) {
                Some(i) => Unknown::Source(i),
                None => {
                    return Err(Error::config(
                        "unknown_hosts",
                        format!(
                            "the default source `{name}` is not registered; registered: [{}]",
                            names(&states).join(", ")
                        ),
                    ))
                }
            },
        };
        Ok(Registry {
            inner: Arc::new(Inner {
                sources: states.into_boxed_slice(),
                router,
                unknown,
                clock,
                signals: self.signals,
            }),
        })
    }
}

fn names(states: &[SourceState]) -> Vec<String> {
    states.iter().map(|s| s.name.to_string()).collect()
}

/// Admission of one request: held until its response arrives, it keeps the
/// source's `max_in_flight` slot and tells `observe` which buckets a server
/// signal belongs to.
#[must_use = "the permit holds the in-flight slot until the response arrives"]
pub struct Permit {
    buckets: Option<Arc<Buckets>>,
    _in_flight: Option<OwnedSemaphorePermit>,
    waited: Duration,
    admitted_at: Timestamp,
}

impl Permit {
    fn pass_through(now: Timestamp) -> Self {
        Permit {
            buckets: None,
            _in_flight: None,
            waited: Duration::ZERO,
            admitted_at: now,
        }
    }

    /// The slot the request was admitted at, on the registry's clock.
    pub fn admitted_at(&self) -> Timestamp {
        self.admitted_at
    }

    /// The source that admitted the request; `None` when it passed through.
    pub fn source(&self) -> Option<&str> {
        self.buckets.as_deref().map(|b| &*b.source)
    }

    /// The host whose own bucket set admitted it (per-host sources only).
    pub fn host(&self) -> Option<&str> {
        self.buckets.as_deref().and_then(|b| b.host.as_deref())
    }

    /// How long the request waited for its slot.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("source", &self.source())
            .field("host", &self.host())
            .field("waited", &self.waited)
            .finish()
    }
}

/// Gives back a pending reservation's tokens if the wait is abandoned.
struct CancelOnDrop<'a> {
    buckets: &'a Buckets,
    tickets: &'a [crate::bucket::Ticket],
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.buckets.cancel(self.tickets);
        }
    }
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

    /// The source a target routes to: `Ok(None)` passes through.
    fn route(&self, target: &Target<'_>) -> Result<Option<usize>, Error> {
        let routed = if target.host().is_empty() {
            None
        } else {
            self.inner.router.route(target)
        };
        match (routed, self.inner.unknown) {
            (Some(i), _) | (None, Unknown::Source(i)) => Ok(Some(i)),
            (None, Unknown::PassThrough) => Ok(None),
            (None, Unknown::Reject) => Err(Error::UnknownHost {
                host: target.host().to_string(),
            }),
        }
    }

    /// The name of the source a target routes to (`None`: pass-through).
    pub fn source_for(&self, target: &Target<'_>) -> Result<Option<&str>, Error> {
        Ok(self.route(target)?.map(|i| &*self.inner.sources[i].name))
    }

    #[inline]
    fn buckets_for(&self, i: usize, host: &str) -> Arc<Buckets> {
        let state = &self.inner.sources[i];
        let Some(table) = &state.hosts else {
            return state.shared.clone();
        };
        if let Some(b) = table.get(host) {
            return b;
        }
        let now = self.inner.clock.now();
        table
            .get_or_insert(host, now, |key| {
                let policies = state
                    .context
                    .config
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .effective_capped(f64::INFINITY, &self.inner.signals);
                Buckets::new(
                    state.name.clone(),
                    state.context.clone(),
                    Some(key),
                    &policies,
                    &self.inner.clock,
                    state.max_in_flight,
                )
            })
            .unwrap_or_else(|| state.shared.clone())
    }

    /// Admits `tokens` for `target` now, or refuses, without a [`Permit`]:
    /// the keyed check for work that needs no response handling. A source's
    /// `max_in_flight` refuses when full but holds no slot (use
    /// [`try_acquire`](Self::try_acquire) to hold one).
    #[inline]
    pub fn check(&self, target: &Target<'_>, tokens: f64) -> Result<(), Error> {
        let Some(i) = self.route(target)? else {
            return Ok(());
        };
        let state = &self.inner.sources[i];
        let take = |b: &Buckets| -> Result<Timestamp, Error> {
            if b.in_flight
                .as_ref()
                .is_some_and(|s| s.available_permits() == 0)
            {
                return Err(in_flight_full(state));
            }
            b.try_take(tokens)
        };
        let result = match &state.hosts {
            None => take(&state.shared),
            Some(table) => match table.with(target.host(), take) {
                Some(r) => r,
                None => take(&self.buckets_for(i, target.host())),
            },
        };
        result.map(|_| ()).map_err(|e| name_refusal(e, &state.name))
    }

    /// For adapters: admits a request now (`Ok(Some)`), or says that it must
    /// wait for its slot (`Ok(None)`: call [`acquire`](Self::acquire)), as its
    /// source's [`OnLimit`] says; a refusal is an error. The fast path of
    /// every adapter: no allocation and no await when the request can go.
    #[inline]
    pub fn try_admit(&self, target: &Target<'_>, tokens: f64) -> Result<Option<Permit>, Error> {
        let Some(i) = self.route(target)? else {
            return Ok(Some(Permit::pass_through(self.inner.clock.now())));
        };
        let buckets = self.buckets_for(i, target.host());
        match self.try_on(i, buckets, tokens) {
            Ok(p) => Ok(Some(p)),
            Err(Error::RateLimited(_) | Error::InFlightFull { .. })
                if self.inner.sources[i].on_limit != OnLimit::Reject =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Admits a request of `tokens` to `target` now, or refuses:
    /// [`Error::RateLimited`] (naming the source) with nothing taken.
    #[inline]
    pub fn try_acquire(&self, target: &Target<'_>, tokens: f64) -> Result<Permit, Error> {
        let Some(i) = self.route(target)? else {
            return Ok(Permit::pass_through(self.inner.clock.now()));
        };
        let buckets = self.buckets_for(i, target.host());
        self.try_on(i, buckets, tokens)
    }

    fn try_on(&self, i: usize, buckets: Arc<Buckets>, tokens: f64) -> Result<Permit, Error> {
        let state = &self.inner.sources[i];
        let in_flight = match &buckets.in_flight {
            None => None,
            Some(sem) => Some(
                sem.clone()
                    .try_acquire_owned()
                    .map_err(|_| in_flight_full(state))?,
            ),
        };
        let admitted_at = buckets
            .try_take(tokens)
            .map_err(|e| name_refusal(e, &state.name))?;
        Ok(Permit {
            admitted_at,
            buckets: Some(buckets),
            _in_flight: in_flight,
            waited: Duration::ZERO,
        })
    }

    /// Admits a request of `tokens` to `target`, waiting for its slot as its
    /// source says ([`OnLimit`]). Dropping the future before the slot gives
    /// the tokens back.
    pub async fn acquire(&self, target: &Target<'_>, tokens: f64) -> Result<Permit, Error> {
        let Some(i) = self.route(target)? else {
            return Ok(Permit::pass_through(self.inner.clock.now()));
        };
        let buckets = self.buckets_for(i, target.host());
        self.acquire_on(i, buckets, tokens).await
    }

    async fn acquire_on(
        &self,
        i: usize,
        buckets: Arc<Buckets>,
        tokens: f64,
    ) -> Result<Permit, Error> {
        let state = &self.inner.sources[i];
        let clock = &self.inner.clock;
        let start = clock.now();
        let max_wait = state.on_limit.max_wait();
        let deadline = start + max_wait;
        // The in-flight slot first: a request must go at its rate slot, not
        // after it, or the window bound would not hold.
        let in_flight = match &buckets.in_flight {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) if max_wait.is_zero() => return Err(in_flight_full(state)),
                Err(_) => {
                    let mut permit = pin!(sem.clone().acquire_owned());
                    let mut timeout = pin!(clock.sleep_until(deadline));
                    let got = poll_fn(|cx| {
                        if let Poll::Ready(p) = permit.as_mut().poll(cx) {
                            return Poll::Ready(p.ok());
                        }
                        if max_wait != Duration::MAX && timeout.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(None);
                        }
                        Poll::Pending
                    })
                    .await;
                    match got {
                        Some(p) => Some(p),
                        None => return Err(in_flight_full(state)),
                    }
                }
            },
        };
        // The common case: admitted at once, no allocation.
        match buckets.try_take(tokens) {
            Ok(now) => {
                return Ok(Permit {
                    buckets: Some(buckets),
                    _in_flight: in_flight,
                    waited: now.saturating_duration_since(start),
                    admitted_at: now,
                });
            }
            Err(Error::RateLimited(_)) => {}
            Err(e) => return Err(e),
        }
        loop {
            let deferral_seen = buckets.deferred_until.load(Ordering::Relaxed);
            let left = if max_wait == Duration::MAX {
                Duration::MAX
            } else {
                deadline.saturating_duration_since(clock.now())
            };
            let taken = buckets
                .reserve(tokens, left)
                .map_err(|e| name_refusal(e, &state.name))?;
            let now = clock.now();
            if taken.slot > now {
                tracing::debug!(
                    source = &*state.name,
                    host = buckets.host.as_deref().unwrap_or(""),
                    tokens,
                    wait_ms = taken.slot.saturating_duration_since(now).as_secs_f64() * 1e3,
                    "waiting for a rate-limit slot"
                );
                let mut guard = CancelOnDrop {
                    buckets: &buckets,
                    tickets: &taken.tickets,
                    armed: true,
                };
                clock.sleep_until(taken.slot).await;
                guard.armed = false;
                // A server deferred this host while the request waited: its
                // slot predates that word, so it queues again behind the
                // deferral. The slot it leaves stays taken (stricter, never
                // looser).
                let deferral = buckets.deferred_until.load(Ordering::Relaxed);
                if deferral != deferral_seen && deferral > clock.now().as_nanos() {
                    continue;
                }
            }
            let at = taken.slot.max(now);
            return Ok(Permit {
                waited: at.saturating_duration_since(start),
                admitted_at: at,
                buckets: Some(buckets),
                _in_flight: in_flight,
            });
        }
    }

    fn index(&self, name: &str) -> Result<usize, Error> {
        self.inner
            .sources
            .iter()
            .position(|s| &*s.name == name)
            .ok_or_else(|| Error::UnknownSource {
                name: name.to_string(),
                known: self.names(),
            })
    }

    /// A source by name, for work that is not an HTTP request. For a
    /// per-host source this is its source-wide bucket set.
    pub fn source(&self, name: &str) -> Result<SourceHandle, Error> {
        Ok(SourceHandle {
            registry: self.clone(),
            index: self.index(name)?,
        })
    }

    /// Replaces the one limit of source `name`, keeping every bucket's level.
    pub fn set_policy(&self, name: &str, policy: Policy) -> Result<(), Error> {
        self.set_limits(name, vec![policy])
    }

    /// Replaces the limits of source `name` (as many as it has), keeping
    /// every bucket's level.
    pub fn set_limits(&self, name: &str, limits: Vec<Policy>) -> Result<(), Error> {
        let i = self.index(name)?;
        let state = &self.inner.sources[i];
        let mut config = state
            .context
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let have = config.configured.len().max(1);
        if limits.len() != have {
            return Err(Error::config(
                format!("source `{name}`"),
                format!("it has {have} limit(s); give exactly {have} policies"),
            ));
        }
        tracing::info!(source = name, from = ?config.configured, to = ?limits, "policy changed");
        config.configured = limits;
        self.apply(state, &config);
        Ok(())
    }

    /// Slows every source to `factor` of its configured rates (burst kept):
    /// `factor` in (0, 1], and 1 restores the configuration. Never faster
    /// than configured.
    pub fn slow_down(&self, factor: f64) -> Result<(), Error> {
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(Error::config(
                "slow_down",
                format!("the factor must be above 0 and at most 1 (never faster than configured), not {factor}"),
            ));
        }
        for state in self.inner.sources.iter() {
            let mut config = state
                .context
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            config.factor = factor;
            tracing::info!(source = &*state.name, factor, "rates scaled");
            self.apply(state, &config);
        }
        Ok(())
    }

    fn apply(&self, state: &SourceState, config: &SourceConfig) {
        let signals = &self.inner.signals;
        let set = |b: &Buckets| b.set_policies(&config.effective_capped(b.server_rate(), signals));
        set(&state.shared);
        if let Some(table) = &state.hosts {
            table.for_each(set);
        }
    }

    /// Per source and per host: limits, tokens available, deferral, in flight.
    pub fn snapshot(&self) -> Vec<SourceSnapshot> {
        let now = self.inner.clock.now();
        self.inner
            .sources
            .iter()
            .map(|state| {
                let config = state
                    .context
                    .config
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let mut buckets = vec![bucket_snapshot(&state.shared, now)];
                if let Some(table) = &state.hosts {
                    table.for_each(|b| buckets.push(bucket_snapshot(b, now)));
                }
                SourceSnapshot {
                    name: state.name.to_string(),
                    scope: state.scope,
                    configured: config.configured.clone(),
                    limits: config.effective(),
                    max_hosts: state.hosts.as_ref().map(|t| t.capacity()),
                    buckets,
                }
            })
            .collect()
    }

    /// How many per-host bucket sets source `name` holds now.
    pub fn host_count(&self, name: &str) -> Result<usize, Error> {
        let i = self.index(name)?;
        Ok(self.inner.sources[i].hosts.as_ref().map_or(0, |t| t.len()))
    }
}

fn bucket_snapshot(b: &Buckets, now: Timestamp) -> BucketSnapshot {
    let deferred =
        Timestamp::from_nanos(b.deferred_until.load(std::sync::atomic::Ordering::Relaxed));
    let server_rate = b.server_rate();
    BucketSnapshot {
        host: b.host.as_deref().map(str::to_string),
        limits: b.policies(),
        available: b.available(),
        ready_in: b.next_available().saturating_duration_since(now),
        deferred_for: (deferred > now).then(|| deferred.saturating_duration_since(now)),
        server_rate: server_rate.is_finite().then_some(server_rate),
        in_flight: b.in_flight(),
    }
}

fn in_flight_full(state: &SourceState) -> Error {
    Error::InFlightFull {
        source: state.name.to_string(),
        max_in_flight: state.max_in_flight.unwrap_or(0),
    }
}

fn name_refusal(e: Error, name: &Arc<str>) -> Error {
    match e {
        Error::RateLimited(r) => Error::RateLimited(r.with_source(name.clone())),
        e => e,
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.names())
            .finish()
    }
}

/// A source picked by name: acquire from it directly.
#[derive(Clone)]
pub struct SourceHandle {
    registry: Registry,
    index: usize,
}

impl SourceHandle {
    fn state(&self) -> &SourceState {
        &self.registry.inner.sources[self.index]
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.state().name
    }

    /// Waits for `tokens` as the source says (see [`Registry::acquire`]).
    pub async fn acquire(&self, tokens: f64) -> Result<Permit, Error> {
        let buckets = self.state().shared.clone();
        self.registry.acquire_on(self.index, buckets, tokens).await
    }

    /// Takes `tokens` now or refuses.
    pub fn try_acquire(&self, tokens: f64) -> Result<Permit, Error> {
        let buckets = self.state().shared.clone();
        self.registry.try_on(self.index, buckets, tokens)
    }

    /// Tokens available now in the tightest limit.
    pub fn available(&self) -> f64 {
        self.state().shared.available()
    }

    /// The limits in force (after any slow-down).
    pub fn limits(&self) -> Vec<Policy> {
        self.state()
            .context
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .effective()
    }
}

impl fmt::Debug for SourceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceHandle")
            .field("name", &self.name())
            .finish()
    }
}

/// One source in a [`Registry::snapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SourceSnapshot {
    /// The source's name.
    pub name: String,
    /// One bucket set for the source, or one per host.
    pub scope: Scope,
    /// The limits as configured.
    pub configured: Vec<Policy>,
    /// The limits in force (after any slow-down).
    pub limits: Vec<Policy>,
    /// For a per-host source, how many hosts it keeps at most.
    pub max_hosts: Option<usize>,
    /// The source-wide set first (host `None`), then one per host.
    pub buckets: Vec<BucketSnapshot>,
}

/// One bucket set in a [`SourceSnapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BucketSnapshot {
    /// The host, for a per-host set.
    pub host: Option<String>,
    /// The limits in force for this set (after slow-down and server hints).
    pub limits: Vec<Policy>,
    /// Tokens available now in the tightest limit.
    pub available: f64,
    /// How long until a one-token request could go (zero: now); a server's
    /// deferral shows here.
    pub ready_in: Duration,
    /// How much longer a server's deferral (`Retry-After`, or an exhausted
    /// quota until its reset) lasts, if one is in force.
    pub deferred_for: Option<Duration>,
    /// The rate a server announced for this set, if it did.
    pub server_rate: Option<f64>,
    /// Requests admitted and not yet answered (with `max_in_flight`).
    pub in_flight: usize,
}
