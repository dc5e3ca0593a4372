//! Admission: a request is routed once to its bucket set, then admitted at
//! once, refused, or handed an [`Acquire`] future (`acquire.rs`) that waits
//! for its slot with that set in hand (it never routes again nor copies its
//! target).

use crate::sync::Arc;

use super::acquire::Acquire;
use super::buckets::{Buckets, Cost};
use super::permit::Permit;
use super::take::{check_now, refused, shadow_take, take_now, take_now_as};
use super::{Lane, OnLimit, Registry, Target, Unknown};
use crate::clock::{Clock, Timestamp};
use crate::Error;

/// What [`Registry::admit`] decided.
#[derive(Debug)]
#[must_use = "an admission holds its tokens: send the request with the permit, or await the wait"]
pub enum Admission {
    /// The request may go now.
    Ready(Permit),
    /// The request must wait for its slot: await this.
    Wait(Acquire),
}

/// A routed request: its source's index, and that source's one bucket set
/// when it has no per-host sets.
type Routed<'r> = (usize, Option<&'r Arc<Buckets>>);

impl Registry {
    /// The source a target routes to: `Ok(None)` passes through. With it,
    /// the source's one bucket set when it has no per-host sets, read off
    /// the rule: then the request reaches its set without reading the
    /// source's state.
    #[inline]
    fn route(&self, target: &Target<'_>) -> Result<Option<Routed<'_>>, Error> {
        let routed = if target.host().is_empty() {
            None
        } else {
            self.inner.router.route(target)
        };
        match (routed, self.inner.unknown) {
            (Some(r), _) => Ok(Some((r.source(), r.set()))),
            (None, Unknown::Source(i)) => Ok(Some((i, None))),
            (None, Unknown::PassThrough) => Ok(None),
            (None, Unknown::Reject) => Err(Error::unknown_host(target.host())),
        }
    }

    /// The cost of `tokens` to `target` in `set`, a set of the source the
    /// target routed to.
    #[inline]
    fn cost_in(set: &Buckets, target: &Target<'_>, tokens: f64) -> Cost {
        if set.unpriced() {
            Cost::plain(tokens)
        } else {
            set.context.cost_of(target, tokens)
        }
    }

    /// The name of the source a target routes to (`None`: pass-through).
    pub fn source_for(&self, target: &Target<'_>) -> Result<Option<&str>, Error> {
        Ok(self
            .route(target)?
            .map(|(i, _)| self.inner.sources[i].name()))
    }

    /// The bucket set of source `i` for `host`: the source's own, or the
    /// host's (made now if new, or the overflow set when the table is full
    /// of busy sets).
    #[inline]
    fn buckets_for(&self, i: usize, host: &str) -> Arc<Buckets> {
        let state = &self.inner.sources[i];
        let Some(table) = &state.hosts else {
            return state.shared.clone();
        };
        if let Some(b) = table.get(host) {
            return b;
        }
        self.new_host(i, host)
    }

    #[cold]
    fn new_host(&self, i: usize, host: &str) -> Arc<Buckets> {
        let state = &self.inner.sources[i];
        let Some(table) = &state.hosts else {
            return state.shared.clone();
        };
        let clock = &self.inner.clock;
        let now = clock.now();
        if !table.has_room(now) {
            return state.shared.clone();
        }
        // Made outside the table's lock, from the configuration read under
        // its own; the new host inherits what the overflow set holds.
        let (made, version) = {
            let config = state.context.config();
            let made = Buckets::successor(
                state.context.clone(),
                host.into(),
                &config,
                &state.shared,
                &self.inner.set_clock,
            );
            (Arc::new(made), state.context.version())
        };
        let Some(set) = table.insert(host, now, made) else {
            return state.shared.clone();
        };
        if state.context.version() != version {
            // The configuration changed while the set was made: a change
            // that ran before the insert did not see it.
            set.apply(&state.context.config());
        }
        set
    }

    /// Admits `tokens` for `target` now, or refuses, without a [`Permit`]:
    /// the keyed check for work that needs no response handling. A source's
    /// `max_in_flight` refuses when full but holds no slot (use
    /// [`try_acquire`](Self::try_acquire) to hold one).
    #[inline]
    pub fn check(&self, target: &Target<'_>, tokens: f64) -> Result<(), Error> {
        let Some((i, set)) = self.route(target)? else {
            return Ok(());
        };
        let now = self.inner.clock.now();
        if let Some(set) = set {
            // One set for the source: neither the source's state nor (for a
            // cost that is the token count) its context is read at all.
            return check_now(set, Self::cost_in(set, target, tokens), now);
        }
        let cost = self.inner.sources[i].context.cost_of(target, tokens);
        self.check_on(i, target.host(), cost, now)
    }

    /// [`check`](Self::check) for source `i` and the bucket set of `host`
    /// (a per-host source's; the source's own otherwise), without routing.
    #[inline]
    pub(super) fn check_on(
        &self,
        i: usize,
        host: &str,
        cost: Cost,
        now: Timestamp,
    ) -> Result<(), Error> {
        let state = &self.inner.sources[i];
        if state.context.shadow {
            let b = self.buckets_for(i, host);
            return shadow_take(b, cost).map(drop).map_err(|(e, _)| e);
        }
        let take = |b: &Buckets| check_now(b, cost, now);
        match &state.hosts {
            None => take(&state.shared),
            Some(table) => match table.with(host, take) {
                Some(r) => r,
                None => take(&self.new_host(i, host)),
            },
        }
    }

    /// Routes `target` once and admits `tokens` now, or says that it must
    /// wait ([`Admission::Wait`], with the routed set in hand), as its
    /// source's [`OnLimit`] says; a refusal is an error. The fast path of
    /// every adapter: no allocation and no await when the request can go.
    #[inline]
    pub fn admit(&self, target: &Target<'_>, tokens: f64) -> Result<Admission, Error> {
        self.admit_with(target, tokens, || self.inner.clock.now())
    }

    /// [`admit`](Self::admit) for an adapter that keeps the permit to
    /// itself: a request that passes through gets a permit without the
    /// time (the clock is not read for it), which nobody can ask for.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    #[inline]
    pub(crate) fn admit_kept(&self, target: &Target<'_>, tokens: f64) -> Result<Admission, Error> {
        self.admit_with(target, tokens, || Timestamp::from_nanos(0))
    }

    /// [`admit`](Self::admit), with `passed` the time a permit that passes
    /// through says it was admitted at.
    #[inline]
    fn admit_with(
        &self,
        target: &Target<'_>,
        tokens: f64,
        passed: impl FnOnce() -> Timestamp,
    ) -> Result<Admission, Error> {
        let Some((i, set)) = self.route(target)? else {
            return Ok(Admission::Ready(Permit::pass_through(passed())));
        };
        if let Some(set) = set {
            let cost = Self::cost_in(set, target, tokens);
            return self.admit_to(set.clone(), cost, target.lane());
        }
        let cost = self.inner.sources[i].context.cost_of(target, tokens);
        self.admit_on(i, target.host(), cost, target.lane())
    }

    /// [`admit`](Self::admit) for source `i` and the bucket set of `host`
    /// (a per-host source's; the source's own otherwise), without routing.
    #[inline]
    pub(super) fn admit_on(
        &self,
        i: usize,
        host: &str,
        cost: Cost,
        lane: Lane,
    ) -> Result<Admission, Error> {
        self.admit_to(self.buckets_for(i, host), cost, lane)
    }

    /// [`admit`](Self::admit) to `buckets`, routed already.
    #[inline]
    fn admit_to(&self, buckets: Arc<Buckets>, cost: Cost, lane: Lane) -> Result<Admission, Error> {
        if buckets.admits_by_waiting() {
            // Others wait in lanes (this request queues in its own), or the
            // set's store decides: one call, awaited.
            return Ok(Admission::Wait(Acquire::new(buckets, cost).in_lane(lane)));
        }
        match take_now_as(buckets, cost, self.inner.clock.now(), Admission::Ready) {
            Ok(ready) => Ok(ready),
            Err((e, buckets))
                if (e.is_rate_limited() || e.is_in_flight_full())
                    && buckets.context.on_limit != OnLimit::Reject =>
            {
                Ok(Admission::Wait(Acquire::new(buckets, cost).in_lane(lane)))
            }
            Err((e, buckets)) => Err(refused(&buckets, e)),
        }
    }

    /// Admits a request of `tokens` to `target` now, or refuses:
    /// [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited) (naming the source) with nothing taken, or
    /// [`ErrorKind::InFlightFull`](crate::ErrorKind::InFlightFull).
    #[inline]
    pub fn try_acquire(&self, target: &Target<'_>, tokens: f64) -> Result<Permit, Error> {
        let Some((i, set)) = self.route(target)? else {
            return Ok(Permit::pass_through(self.inner.clock.now()));
        };
        let (buckets, cost) = match set {
            Some(set) => (set.clone(), Self::cost_in(set, target, tokens)),
            None => (
                self.buckets_for(i, target.host()),
                self.inner.sources[i].context.cost_of(target, tokens),
            ),
        };
        let now = self.inner.clock.now();
        take_now(buckets, cost, now).map_err(|(e, b)| refused(&b, e))
    }

    /// Admits a request of `tokens` to `target`, waiting for its slot as its
    /// source says ([`OnLimit`]). The target is routed now; the returned
    /// future borrows nothing. Dropping it before the slot gives the tokens
    /// back.
    pub fn acquire(&self, target: &Target<'_>, tokens: f64) -> Acquire {
        match self.route(target) {
            Ok(Some((i, _))) => {
                let cost = self.inner.sources[i].context.cost_of(target, tokens);
                Acquire::new(self.buckets_for(i, target.host()), cost).in_lane(target.lane())
            }
            Ok(None) => Acquire::done(Ok(Permit::pass_through(self.inner.clock.now()))),
            Err(e) => Acquire::done(Err(e)),
        }
    }

    pub(super) fn acquire_on(&self, i: usize, tokens: f64) -> Acquire {
        Acquire::new(self.inner.sources[i].shared.clone(), Cost::plain(tokens))
    }

    pub(super) fn try_acquire_on(&self, i: usize, tokens: f64) -> Result<Permit, Error> {
        let now = self.inner.clock.now();
        take_now(
            self.inner.sources[i].shared.clone(),
            Cost::plain(tokens),
            now,
        )
        .map_err(|(e, b)| refused(&b, e))
    }
}
