//! [`Source`]: a named set of limits and the rules that route requests to
//! it; and the bucket sets that enforce them.
//!
//! A source may carry several limits at once (Jikan allows 3/s *and*
//! 60/min). A request then waits for the latest slot among them and takes
//! from all of them at that slot; a refusal or a cancel takes from none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::bucket::Ticket;
use crate::clock::{duration_nanos, Clock, SharedClock, Timestamp};
use crate::{Error, Policy, RateLimited, TokenBucket};

/// What a source does with a request that has to wait for its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnLimit {
    /// Wait for the slot, or refuse with [`RateLimited`] if it lies further
    /// than `max_wait` (when set). The default, with no `max_wait`.
    Wait {
        /// The longest wait accepted; `None` waits as long as it takes.
        max_wait: Option<Duration>,
    },
    /// Refuse at once with [`RateLimited`] instead of waiting.
    Reject,
}

impl Default for OnLimit {
    fn default() -> Self {
        OnLimit::Wait { max_wait: None }
    }
}

impl OnLimit {
    pub(crate) fn max_wait(self) -> Duration {
        match self {
            OnLimit::Wait { max_wait } => max_wait.unwrap_or(Duration::MAX),
            OnLimit::Reject => Duration::ZERO,
        }
    }
}

/// Whether the hosts a source matches share one bucket set or get one each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// One bucket set for every host the source matches (the default).
    #[default]
    PerSource,
    /// One bucket set per matched host (idle, full ones are evicted).
    PerHost,
}

/// A named source: its limits, the hosts (and path) routed to it, and how
/// it behaves at its limit. Checked when the registry is built.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{OnLimit, Policy, Source};
///
/// let jikan = Source::new("jikan")
///     .limit("3/s".parse()?)
///     .limit("60/min".parse()?)
///     .host("api.jikan.moe");
/// let search = Source::new("github-search")
///     .limit(Policy::per_minute(30.0)?)
///     .host("api.github.com")
///     .path("/search")
///     .max_in_flight(4)
///     .on_limit(OnLimit::Wait { max_wait: Some(Duration::from_secs(10)) });
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub(crate) name: String,
    pub(crate) limits: Vec<Policy>,
    pub(crate) hosts: Vec<String>,
    pub(crate) path: Option<String>,
    pub(crate) scope: Scope,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) on_limit: OnLimit,
}

impl Source {
    /// A source with no limits (unlimited until one is added) and no rules.
    pub fn new(name: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            limits: Vec::new(),
            hosts: Vec::new(),
            path: None,
            scope: Scope::PerSource,
            max_in_flight: None,
            on_limit: OnLimit::default(),
        }
    }

    /// Adds a limit; every limit applies at once.
    pub fn limit(mut self, policy: Policy) -> Self {
        self.limits.push(policy);
        self
    }

    /// Routes a host pattern here: `api.example.com`, `*.example.com`, `*`,
    /// each with an optional `:port`. See [`rules`](crate::registry::rules).
    pub fn host(mut self, pattern: impl Into<String>) -> Self {
        self.hosts.push(pattern.into());
        self
    }

    /// Routes only paths under `prefix` (on segment boundaries) of this
    /// source's hosts.
    pub fn path(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(prefix.into());
        self
    }

    /// One bucket set per matched host instead of one for the source.
    pub fn per_host(mut self) -> Self {
        self.scope = Scope::PerHost;
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// At most `n` requests in flight at once (held from admission until the
    /// response arrives); per bucket set.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// What to do at the limit: wait (the default) or reject.
    pub fn on_limit(mut self, on_limit: OnLimit) -> Self {
        self.on_limit = on_limit;
        self
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limits as configured.
    pub fn limits(&self) -> &[Policy] {
        &self.limits
    }

    /// The host patterns routed here.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The path prefix, if any.
    pub fn path_prefix(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The scope.
    pub fn scope_mode(&self) -> Scope {
        self.scope
    }

    /// What the source does at its limit.
    pub fn on_limit_mode(&self) -> OnLimit {
        self.on_limit
    }

    /// The in-flight cap, if any.
    pub fn in_flight_cap(&self) -> Option<usize> {
        self.max_in_flight
    }
}

/// The buckets of one source for one host (or for the whole source).
pub(crate) struct Buckets {
    pub source: Arc<str>,
    pub context: Arc<super::SourceContext>,
    pub host: Option<Arc<str>>,
    /// The rate a server announced for this set (f64 bits; infinite: none).
    pub server_rate: AtomicU64,
    /// The latest deferral a server asked for (nanoseconds on the clock).
    pub deferred_until: AtomicU64,
    /// The first limit inline (most sources have one), the rest behind it.
    first: TokenBucket<SharedClock>,
    rest: Box<[TokenBucket<SharedClock>]>,
    pub in_flight: Option<Arc<Semaphore>>,
    in_flight_max: usize,
}

/// Tickets taken from every limit of a bucket set, all for one slot.
pub(crate) struct Taken {
    pub slot: Timestamp,
    pub tickets: Vec<Ticket>,
}

impl Buckets {
    pub fn new(
        source: Arc<str>,
        context: Arc<super::SourceContext>,
        host: Option<Arc<str>>,
        policies: &[Policy],
        clock: &SharedClock,
        max_in_flight: Option<usize>,
    ) -> Self {
        let policies: &[Policy] = if policies.is_empty() {
            &[Policy::unlimited()]
        } else {
            policies
        };
        let bucket = |p: &Policy| TokenBucket::with_clock(*p, clock.clone());
        Buckets {
            source,
            context,
            host,
            server_rate: AtomicU64::new(f64::INFINITY.to_bits()),
            deferred_until: AtomicU64::new(0),
            first: bucket(&policies[0]),
            rest: policies[1..].iter().map(bucket).collect(),
            in_flight: max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            in_flight_max: max_in_flight.unwrap_or(0),
        }
    }

    pub fn clock(&self) -> &SharedClock {
        self.first.clock()
    }

    fn limits(&self) -> impl Iterator<Item = &TokenBucket<SharedClock>> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// Takes `tokens` from every limit now, or from none; returns the time
    /// of admission.
    #[inline]
    pub fn try_take(&self, tokens: f64) -> Result<Timestamp, Error> {
        if self.rest.is_empty() {
            return self.first.try_acquire_now(tokens);
        }
        Ok(self.reserve(tokens, Duration::ZERO)?.slot)
    }

    /// Takes the latest slot among all limits, if within `max_wait`, from
    /// every limit at that slot; otherwise takes nothing.
    pub fn reserve(&self, tokens: f64, max_wait: Duration) -> Result<Taken, Error> {
        if self.rest.is_empty() {
            let t = self.first.reserve_ticket(tokens, None, max_wait)?;
            return Ok(Taken {
                slot: t.slot(),
                tickets: vec![t],
            });
        }
        let max_wait_ns = duration_nanos(max_wait);
        'retry: loop {
            let now = self.clock().now();
            let mut slot = now;
            for b in self.limits() {
                slot = slot.max(b.peek_slot(tokens, now)?);
            }
            let wait = slot.as_nanos() - now.as_nanos();
            if wait > max_wait_ns {
                return Err(Error::RateLimited(RateLimited::from_nanos(wait)));
            }
            let mut tickets = Vec::with_capacity(1 + self.rest.len());
            for b in self.limits() {
                match b.reserve_ticket(tokens, Some(slot), Duration::MAX) {
                    Ok(t) if t.slot() == slot => tickets.push(t),
                    other => {
                        // Another caller moved a bucket between the look and
                        // the take: undo and look again.
                        if let Ok(t) = other {
                            b.rollback_ticket(&t);
                        }
                        for (b, t) in self.limits().zip(&tickets) {
                            b.rollback_ticket(t);
                        }
                        continue 'retry;
                    }
                }
            }
            return Ok(Taken { slot, tickets });
        }
    }

    /// Gives back what a pending multi-limit reservation may still give back.
    pub fn cancel(&self, tickets: &[Ticket]) {
        for (b, t) in self.limits().zip(tickets) {
            b.cancel_ticket(t);
        }
    }

    pub fn defer_until(&self, t: Timestamp) {
        self.deferred_until
            .fetch_max(t.as_nanos(), Ordering::Relaxed);
        for b in self.limits() {
            b.defer_until(t);
        }
    }

    pub fn policies(&self) -> Vec<Policy> {
        self.limits().map(|b| b.policy()).collect()
    }

    pub fn server_rate(&self) -> f64 {
        f64::from_bits(self.server_rate.load(Ordering::Relaxed))
    }

    pub fn set_policies(&self, policies: &[Policy]) {
        for (b, p) in self.limits().zip(policies) {
            b.set_policy(*p);
        }
    }

    /// Full and nobody in flight: equal to a fresh set, safe to drop.
    pub fn is_idle(&self) -> bool {
        self.limits().all(|b| b.is_full())
            && self
                .in_flight
                .as_ref()
                .is_none_or(|s| s.available_permits() == self.in_flight_max)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .as_ref()
            .map_or(0, |s| self.in_flight_max - s.available_permits())
    }

    /// Tokens available now in the tightest limit.
    pub fn available(&self) -> f64 {
        self.limits()
            .map(|b| b.available())
            .fold(f64::INFINITY, f64::min)
    }

    /// When a one-token request could next go.
    pub fn next_available(&self) -> Timestamp {
        self.limits()
            .map(|b| b.next_available())
            .max()
            .unwrap_or_default()
    }
}
