//! The bucket sets that enforce a source's limits, and the per-source state
//! they share.
//!
//! A source may carry several limits at once (Jikan allows 3/s *and*
//! 60/min). A request then waits for the latest slot among them and takes
//! from all of them at that slot; a refusal or a cancel takes from none.
//!
//! What a server said is part of a set's state, never recomputed from the
//! configuration alone: a deferral is each bucket's floor
//! ([`TokenBucket::defer_until`]), and an announced rate is kept beside the
//! buckets (`server_rate`), so every policy change applies the configuration
//! *capped by* it.

use std::time::Duration;

use crate::clock::Clock;

use tokio::sync::Semaphore;

use crate::bucket::{reserve_together, Ticket};
use crate::clock::{SharedClock, Timestamp};

/// The clock a set's buckets hold: one pointer to the registry's, where
/// a [`SharedClock`] by value is 56 bytes (the default clock's calibration),
/// in every limit of every per-host set. The request path reads the
/// registry's own clock and hands the time in; a set reads this one only
/// where it waits or reports.
pub(crate) type SetClock = std::sync::Arc<SharedClock>;
use crate::learn::state::{Learner, Observed};
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, Mutex, Ordering};
use crate::{Error, Policy, Signal, TokenBucket};

pub(crate) use super::context::{Cost, SourceConfig, SourceContext};

/// The buckets of one source for one host (or for the whole source).
///
/// Laid out for the request path (`repr(C)`, aligned to a cache line): a
/// word of flags, then the first limit's state, fill the first line, so
/// that a set with one limit and nothing else to consult (no lanes, no
/// in-flight cap, no Redis) admits a request touching that line alone,
/// with the time read from the registry's clock. The learner and the lane
/// queues are boxed, so a set without them stays small.
#[repr(C, align(64))]
pub(crate) struct Buckets {
    /// [`PLAIN`], [`FIRST_PRICED`], [`UNPRICED`]: what the request path may
    /// skip. Fixed when the set is made, from what never changes after.
    fast: u64,
    /// The first limit inline (most sources have one), the rest behind it.
    first: TokenBucket<SetClock>,
    /// The lane queues, for a source with lanes.
    pub queues: Option<Box<super::lanes::Queues>>,
    /// std's `Arc`: tokio's owned permits take one.
    pub in_flight: Option<std::sync::Arc<Semaphore>>,
    /// The set's bucket in Redis, for a source kept there: it decides every
    /// admission. The local buckets above then hold the limits in force
    /// and the deferrals this process saw, and take no tokens.
    /// Where the set's state is kept: this process, or a shared store
    /// that decides its admissions (see [`store`](super::store)).
    pub store: super::store::SetStore,
    /// Which limits are priced (a copy of the source's, read per request).
    priced: u64,
    rest: Box<[TokenBucket<SetClock>]>,
    pub context: Arc<SourceContext>,
    pub host: Option<std::sync::Arc<str>>,
    /// The rate a server announced for this set (f64 bits; infinite: none).
    /// Written under the source's configuration lock only.
    server_rate: AtomicU64,
    /// Whether that rate lowers the limits below the configuration: such a
    /// set holds a server's word and is not evicted.
    lowered: AtomicBool,
    /// Exhausted quotas in a row whose reset could not be read: each waits
    /// twice the one before (`Signal::reset_unknown`).
    strikes: AtomicU32,
    /// What the set learned, for a learning source: its limits follow the
    /// configured ones in `rest`.
    learner: Option<Box<Mutex<Learner>>>,
}

/// In [`Buckets::fast`]: one limit, and no lanes, in-flight cap, Redis or
/// shadow mode: a take is the first limit's alone.
const PLAIN: u64 = 1;
/// In [`Buckets::fast`]: the first limit counts priced tokens.
const FIRST_PRICED: u64 = 2;
/// In [`Buckets::fast`]: its source has no price, so a request's cost is its
/// token count.
const UNPRICED: u64 = 4;

/// Tickets taken from every limit of a bucket set, all for one slot.
pub(crate) struct Taken {
    pub slot: Timestamp,
    first: Ticket,
    rest: Vec<Ticket>,
}

impl Buckets {
    pub(super) fn new(
        context: Arc<SourceContext>,
        host: Option<std::sync::Arc<str>>,
        policies: &[Policy],
        clock: &SetClock,
    ) -> Self {
        Self::with_learner(
            context.learn.map(Learner::new),
            context,
            host,
            policies,
            clock,
        )
    }

    /// A set with this learning state (`None`: the source does not learn),
    /// whose limits follow `policies`.
    fn with_learner(
        learner: Option<Learner>,
        context: Arc<SourceContext>,
        host: Option<std::sync::Arc<str>>,
        policies: &[Policy],
        clock: &SetClock,
    ) -> Self {
        let mut policies: Vec<Policy> = if policies.is_empty() {
            vec![Policy::unlimited()]
        } else {
            policies.to_vec()
        };
        if let Some(l) = &learner {
            policies.extend(l.policies());
        }
        let policies = policies.as_slice();
        let bucket = |p: &Policy| TokenBucket::with_clock(*p, clock.clone());
        let store =
            super::store::SetStore::new(&context.store, &context.name, host.as_deref(), policies);
        let queues = context
            .lanes
            .map(|lanes| Box::new(super::lanes::Queues::new(lanes)));
        let in_flight = context
            .max_in_flight
            .map(|n| std::sync::Arc::new(Semaphore::new(n)));
        let local = !store.is_shared();
        let plain = policies.len() == 1
            && queues.is_none()
            && in_flight.is_none()
            && local
            && !context.shadow;
        let fast = if plain { PLAIN } else { 0 }
            | if context.priced & 1 == 1 {
                FIRST_PRICED
            } else {
                0
            }
            | if context.price.is_none() { UNPRICED } else { 0 };
        Buckets {
            fast,
            host,
            server_rate: AtomicU64::new(f64::INFINITY.to_bits()),
            lowered: AtomicBool::new(false),
            strikes: AtomicU32::new(0),
            first: bucket(&policies[0]),
            rest: policies[1..].iter().map(bucket).collect(),
            priced: context.priced,
            queues,
            learner: learner.map(|l| Box::new(Mutex::new(l))),
            in_flight,
            store,
            context,
        }
    }

    /// Whether Redis decides this set's admissions (then only asynchronous
    /// calls admit).
    #[inline(always)]
    pub(super) fn is_remote(&self) -> bool {
        self.store.is_shared()
    }

    /// The refusal of a synchronous check of a set in Redis.
    #[cold]
    pub(super) fn async_only(&self) -> Error {
        Error::async_only(self.source().as_ref())
    }

    /// A set for `host` that replaces `previous` (the overflow set that
    /// served it): it starts no fuller, no earlier and no faster.
    pub(super) fn successor(
        context: Arc<SourceContext>,
        host: std::sync::Arc<str>,
        config: &SourceConfig,
        previous: &Buckets,
        clock: &SetClock,
    ) -> Self {
        let server_rate = previous.server_rate();
        let policies = config.for_server_rate(server_rate, &context.signals);
        let learner = previous.learner.as_ref().map(|l| l.lock().clone());
        let set = Buckets::with_learner(learner, context, Some(host), &policies, clock);
        set.server_rate
            .store(server_rate.to_bits(), Ordering::Relaxed);
        set.lowered
            .store(previous.lowered.load(Ordering::Relaxed), Ordering::Relaxed);
        for (mine, theirs) in set.limits().zip(previous.limits()) {
            mine.inherit(theirs.raw_state());
        }
        set
    }

    pub(super) fn source(&self) -> &std::sync::Arc<str> {
        &self.context.name
    }

    pub(super) fn clock(&self) -> &SharedClock {
        self.first.clock()
    }

    fn limits(&self) -> impl Iterator<Item = &TokenBucket<SetClock>> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// What limit `i` takes of `cost`.
    #[inline]
    pub(super) fn weight(&self, i: usize, cost: Cost) -> f64 {
        if (self.priced >> i) & 1 == 1 {
            cost.priced
        } else {
            cost.requests
        }
    }

    /// [`try_take`](Self::try_take) at `now` (read from the registry's
    /// clock) for a set with one limit and nothing else to consult: `None`
    /// for any other set. Touches the set's first cache line only.
    #[inline(always)]
    pub(super) fn try_take_plain(
        &self,
        cost: Cost,
        now: Timestamp,
    ) -> Option<Result<Timestamp, Error>> {
        let fast = self.fast;
        if fast & PLAIN == 0 {
            return None;
        }
        let tokens = if fast & FIRST_PRICED != 0 {
            cost.priced
        } else {
            cost.requests
        };
        Some(self.first.try_acquire_at(tokens, now))
    }

    /// Whether a request's cost is its token count (the source has no
    /// price): then the source's context need not be read to weigh it.
    #[inline(always)]
    pub(super) fn unpriced(&self) -> bool {
        self.fast & UNPRICED != 0
    }

    /// Whether a request to this set is admitted by waiting rather than
    /// taken now: requests wait in its lanes, or its store decides (an
    /// asynchronous call). Never for a plain set, read without leaving the
    /// first cache line.
    #[inline(always)]
    pub(super) fn admits_by_waiting(&self) -> bool {
        self.fast & PLAIN == 0 && (self.is_remote() || self.lanes_waiting())
    }

    /// Whether requests wait in this set's lanes now (never for a plain
    /// set, which has none; read without leaving the first cache line).
    #[inline(always)]
    pub(super) fn lanes_waiting(&self) -> bool {
        self.fast & PLAIN == 0 && self.queues.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// Takes `cost` from every limit now, or from none; returns the time
    /// of admission.
    #[inline]
    pub(super) fn try_take(&self, cost: Cost) -> Result<Timestamp, Error> {
        if self.is_remote() {
            return Err(self.async_only());
        }
        if self.rest.is_empty() {
            return self.first.try_acquire_now(self.weight(0, cost));
        }
        Ok(self.reserve(cost, Duration::ZERO)?.slot)
    }

    /// Takes the latest slot among all limits, if within `max_wait`, from
    /// every limit at that slot; otherwise takes nothing.
    pub(super) fn reserve(&self, cost: Cost, max_wait: Duration) -> Result<Taken, Error> {
        if self.rest.is_empty() {
            let t = self
                .first
                .reserve_ticket(self.weight(0, cost), None, max_wait)?;
            return Ok(Taken {
                slot: t.slot(),
                first: t,
                rest: Vec::new(),
            });
        }
        let (slot, mut tickets) = reserve_together(
            || self.limits(),
            |i| self.weight(i, cost),
            self.first.clock(),
            max_wait,
        )?;
        let first = tickets.remove(0);
        Ok(Taken {
            slot,
            first,
            rest: tickets,
        })
    }

    /// Gives back what a pending reservation may still give back.
    pub(super) fn cancel(&self, taken: &Taken) {
        let tickets = std::iter::once(&taken.first).chain(&taken.rest);
        for (b, t) in self.limits().zip(tickets) {
            b.cancel_ticket(t);
        }
    }

    /// No request before `t` (the floor of every limit), one at it.
    pub(super) fn defer_until(&self, t: Timestamp) {
        for b in self.limits() {
            b.defer_until(t);
        }
    }

    /// No request before `wait` from now, one then (a server's
    /// `Retry-After`): every limit's floor here, and Redis told in the
    /// background for a set kept there.
    pub(super) fn defer_for(&self, wait: Duration) {
        self.defer_until(self.clock().now() + wait);
        self.store.defer(wait);
    }

    /// The wait `signal` asks for: doubled for each exhausted quota in a
    /// row whose reset could not be read (capped by the source's `max_wait`
    /// of signals); the count starts over once a response says requests
    /// remain.
    pub(super) fn backoff(&self, signal: &Signal) -> Option<Duration> {
        if signal.reset_unknown {
            let n = self.strikes.fetch_add(1, Ordering::AcqRel).min(30);
            return signal.retry_after.map(|wait| {
                wait.saturating_mul(1u32 << n)
                    .min(self.context.signals.max_wait)
            });
        }
        if signal.remaining.is_some_and(|r| r >= 1.0) {
            self.strikes.store(0, Ordering::Release);
        }
        signal.retry_after
    }

    /// The deferral in force (the epoch when none).
    pub(super) fn deferred_until(&self) -> Timestamp {
        self.first.deferred_until()
    }

    pub(super) fn policies(&self) -> Vec<Policy> {
        self.limits().map(|b| b.policy()).collect()
    }

    pub(super) fn server_rate(&self) -> f64 {
        f64::from_bits(self.server_rate.load(Ordering::Acquire))
    }

    /// Records a server's rate and applies `config` capped by it. The
    /// caller holds the source's configuration lock (`config` is under it),
    /// so two responses cannot leave the rate of one and the limits of the
    /// other.
    pub(super) fn set_server_rate(&self, rate: f64, config: &SourceConfig) -> Vec<Policy> {
        self.server_rate.store(rate.to_bits(), Ordering::Release);
        self.apply(config)
    }

    /// Applies `config` capped by this set's server rate; the caller holds
    /// the source's configuration lock. Returns the limits now in force.
    pub(super) fn apply(&self, config: &SourceConfig) -> Vec<Policy> {
        let mut policies = config.for_server_rate(self.server_rate(), &self.context.signals);
        let configured = policies.len();
        if let Some(l) = &self.learner {
            policies.extend(l.lock().policies());
        }
        let mut changed = false;
        for (b, p) in self.limits().zip(&policies) {
            if b.policy() != *p {
                b.set_policy(*p);
                changed = true;
            }
        }
        if changed {
            self.store.set_limits(&policies);
        }
        self.lowered.store(
            &policies[..configured] != config.effective(),
            Ordering::Relaxed,
        );
        policies
    }

    /// Whether the set learns ([`Source::learn`](crate::Source::learn)):
    /// then every response is observed, not only those with a signal.
    #[inline]
    pub(super) fn learns(&self) -> bool {
        self.learner.is_some()
    }

    /// Takes in what a response to a request admitted at `sent_at` said,
    /// for a learning set:
    /// updates what it learned and applies the limits that changed, under
    /// the source's configuration lock (first) and then the set's learning
    /// lock. `None` for a set that does not learn.
    pub(super) fn learn_from(&self, signal: &Signal, sent_at: Timestamp) -> Option<Observed> {
        let learner = self.learner.as_ref()?;
        let now = self.clock().now();
        let config = self.context.config();
        let observed = learner
            .lock()
            .observe(now, sent_at, signal, &self.context.signals);
        if observed.changed {
            self.apply(&config);
            if let Some(rate) = learner.lock().adaptive_rate() {
                self.context.meters.learned_rate(rate);
            }
        }
        Some(observed)
    }

    /// What the set learned, for a snapshot at `now`.
    pub(super) fn learned(&self, now: Timestamp) -> Vec<crate::learn::LearnedLimit> {
        self.learner
            .as_ref()
            .map_or_else(Vec::new, |l| l.lock().learned(now))
    }

    /// Full, undeferred, nobody in flight, and no server-lowered rate at
    /// `now` (read before any lock): equal to a fresh set, safe to drop.
    /// For a set kept in Redis, its bucket there must be idle too at
    /// `timer` (tokio's now, also read before): its local buckets take no
    /// tokens, but its fallback does while Redis fails, and what it took
    /// is owed to Redis.
    pub(super) fn is_idle_at(&self, now: Timestamp, timer: tokio::time::Instant) -> bool {
        self.store.is_idle_at(timer)
            && !self.lowered.load(Ordering::Relaxed)
            && self.learner.as_ref().is_none_or(|l| l.lock().is_idle())
            && self.limits().all(|b| b.is_full_at(now))
            && self.in_flight() == 0
    }

    /// Requests in flight now.
    pub(super) fn in_flight(&self) -> usize {
        match (&self.in_flight, self.context.max_in_flight) {
            (Some(s), Some(max)) => max - s.available_permits(),
            _ => 0,
        }
    }

    /// Tokens available now in the tightest limit.
    pub(super) fn available(&self) -> f64 {
        self.limits()
            .map(|b| b.available())
            .fold(f64::INFINITY, f64::min)
    }

    /// When a one-token request could next go.
    pub(super) fn next_available(&self) -> Timestamp {
        self.limits()
            .map(|b| b.next_available())
            .max()
            .unwrap_or_default()
    }
}
