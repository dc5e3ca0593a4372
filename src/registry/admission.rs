//! Admission: a request is routed once to its bucket set, then admitted at
//! once, refused, or handed an [`Acquire`] future that waits for its slot
//! with that set in hand (it never routes again nor copies its target).
//!
//! [`Acquire`] is a hand-written state machine, so adapters can name it and
//! hold it without boxing: it waits for an in-flight slot (when the source
//! caps them), reserves its rate slot, sleeps exactly until it, and queues
//! again if a server deferred the host meanwhile. Dropped before its slot,
//! it gives the tokens back.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit};

use super::buckets::{Buckets, Cost, Taken};
use super::meters::Refusal;
use super::{Lane, OnLimit, Registry, Target, Unknown};
use crate::clock::{Clock, Sleep, Timestamp};
use crate::Error;

use super::permit::Permit;

/// What [`Registry::admit`] decided.
#[derive(Debug)]
#[must_use = "an admission holds its tokens: send the request with the permit, or await the wait"]
pub enum Admission {
    /// The request may go now.
    Ready(Permit),
    /// The request must wait for its slot: await this.
    Wait(Acquire),
}

impl Registry {
    /// The source a target routes to: `Ok(None)` passes through.
    #[inline]
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
        Ok(self.route(target)?.map(|i| self.inner.sources[i].name()))
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
                clock,
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
        let Some(i) = self.route(target)? else {
            return Ok(());
        };
        let cost = self.inner.sources[i].context.cost_of(target, tokens);
        self.check_on(i, target.host(), cost)
    }

    /// [`check`](Self::check) for source `i` and the bucket set of `host`
    /// (a per-host source's; the source's own otherwise), without routing.
    #[inline]
    pub(super) fn check_on(&self, i: usize, host: &str, cost: Cost) -> Result<(), Error> {
        let state = &self.inner.sources[i];
        if state.context.shadow {
            let b = self.buckets_for(i, host);
            return shadow_take(b, cost).map(drop).map_err(|(e, _)| e);
        }
        let take = |b: &Buckets| -> Result<(), Error> {
            if b.in_flight
                .as_ref()
                .is_some_and(|s| s.available_permits() == 0)
            {
                return Err(refused(b, in_flight_full(b)));
            }
            b.try_take(cost)
                .map_err(|e| refused(b, name_refusal(e, b)))?;
            b.context.meters.admitted(Duration::ZERO, false);
            Ok(())
        };
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
        let Some(i) = self.route(target)? else {
            return Ok(Admission::Ready(Permit::pass_through(
                self.inner.clock.now(),
            )));
        };
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
        let buckets = self.buckets_for(i, host);
        if buckets.queues.as_ref().is_some_and(|q| !q.is_empty()) {
            // Others wait in lanes: this request queues in its own.
            return Ok(Admission::Wait(Acquire::new(buckets, cost).in_lane(lane)));
        }
        match take_now(buckets, cost) {
            Ok(permit) => Ok(Admission::Ready(permit)),
            // Redis decides: one script call, awaited.
            Err((Error::AsyncOnly { .. }, buckets)) => {
                Ok(Admission::Wait(Acquire::new(buckets, cost)))
            }
            Err((Error::RateLimited(_) | Error::InFlightFull { .. }, buckets))
                if buckets.context.on_limit != OnLimit::Reject =>
            {
                Ok(Admission::Wait(Acquire::new(buckets, cost).in_lane(lane)))
            }
            Err((e, buckets)) => Err(refused(&buckets, e)),
        }
    }

    /// Admits a request of `tokens` to `target` now, or refuses:
    /// [`Error::RateLimited`] (naming the source) with nothing taken, or
    /// [`Error::InFlightFull`].
    #[inline]
    pub fn try_acquire(&self, target: &Target<'_>, tokens: f64) -> Result<Permit, Error> {
        let Some(i) = self.route(target)? else {
            return Ok(Permit::pass_through(self.inner.clock.now()));
        };
        let cost = self.inner.sources[i].context.cost_of(target, tokens);
        take_now(self.buckets_for(i, target.host()), cost).map_err(|(e, b)| refused(&b, e))
    }

    /// Admits a request of `tokens` to `target`, waiting for its slot as its
    /// source says ([`OnLimit`]). The target is routed now; the returned
    /// future borrows nothing. Dropping it before the slot gives the tokens
    /// back.
    pub fn acquire(&self, target: &Target<'_>, tokens: f64) -> Acquire {
        match self.route(target) {
            Ok(Some(i)) => {
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
        take_now(self.inner.sources[i].shared.clone(), Cost::plain(tokens))
            .map_err(|(e, b)| refused(&b, e))
    }
}

/// Takes an in-flight slot (if capped) and `tokens` now, or neither; a
/// refusal hands the set back for a wait.
#[inline]
fn take_now(buckets: Arc<Buckets>, cost: Cost) -> Result<Permit, (Error, Arc<Buckets>)> {
    if buckets.context.shadow {
        return shadow_take(buckets, cost);
    }
    let in_flight = match &buckets.in_flight {
        None => None,
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return Err((in_flight_full(&buckets), buckets)),
        },
    };
    match buckets.try_take(cost) {
        Ok(at) => Ok(Permit::new(buckets, in_flight, Duration::ZERO, at)),
        Err(e) => Err((name_refusal(e, &buckets), buckets)),
    }
}

/// Shadow mode: takes what an enforcing source would (so later figures
/// follow the same schedule), counts what it would have delayed or refused,
/// and admits now. Only bad input is an error.
fn shadow_take(buckets: Arc<Buckets>, cost: Cost) -> Result<Permit, (Error, Arc<Buckets>)> {
    let meters = &buckets.context.meters;
    let max_wait = buckets.context.on_limit.max_wait();
    let in_flight = buckets
        .in_flight
        .as_ref()
        .and_then(|s| s.clone().try_acquire_owned().ok());
    let over = buckets.in_flight.is_some() && in_flight.is_none();
    let now = buckets.clock().now();
    match buckets.reserve(cost, max_wait) {
        Ok(taken) => {
            let wait = taken.slot.saturating_duration_since(now);
            if !wait.is_zero() {
                meters.would_wait(wait);
            } else if over && max_wait.is_zero() {
                meters.would_refuse();
            } else if over {
                meters.would_wait(Duration::ZERO);
            }
        }
        Err(Error::RateLimited(_)) => meters.would_refuse(),
        Err(e) => return Err((e, buckets)),
    }
    Ok(Permit::new(buckets, in_flight, Duration::ZERO, now))
}

/// Counts a refusal that goes back to the caller.
fn refused(b: &Buckets, e: Error) -> Error {
    match &e {
        Error::RateLimited(_) => b.context.meters.refused(Refusal::Rate),
        Error::InFlightFull { .. } => b.context.meters.refused(Refusal::InFlight),
        _ => {}
    }
    e
}

pub(super) fn in_flight_full(b: &Buckets) -> Error {
    Error::InFlightFull {
        source: b.source().to_string(),
        max_in_flight: b.context.max_in_flight.unwrap_or(0),
    }
}

fn name_refusal(e: Error, b: &Buckets) -> Error {
    match e {
        Error::RateLimited(r) => Error::RateLimited(r.with_source(b.source().clone())),
        e => e,
    }
}

type InFlightWait =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A set kept in Redis: its admission (the time on the registry's clock
/// and what Redis left), boxed as the store's calls are async fns.
#[cfg(feature = "redis")]
type RemoteWait = Pin<Box<dyn Future<Output = Result<(Timestamp, f64), Error>> + Send>>;

/// Waits for a request's slot in its routed bucket set; see
/// [`Registry::acquire`]. Resolves to the [`Permit`] or a refusal.
#[must_use = "futures do nothing unless awaited; dropping it gives its tokens back"]
pub struct Acquire {
    buckets: Option<Arc<Buckets>>,
    cost: Cost,
    lane: Lane,
    start: Timestamp,
    state: State,
}

enum State {
    /// Routed; nothing taken yet.
    Start,
    /// Waiting for an in-flight slot (boxed: tokio's semaphore future has
    /// no name), with the source's `max_wait` as a timeout.
    InFlight {
        wait: InFlightWait,
        timeout: Option<Sleep>,
    },
    /// Holding the in-flight slot (if any); the rate slot comes next.
    Reserve {
        in_flight: Option<OwnedSemaphorePermit>,
    },
    /// Queued in its lane (a source with lanes): `ticket` once joined;
    /// `sleep` while, at the head, it waits for the bucket.
    Queued {
        in_flight: Option<OwnedSemaphorePermit>,
        ticket: Option<u64>,
        sleep: Option<Sleep>,
    },
    /// Holding tokens for a slot in the future, sleeping until it.
    Sleeping {
        in_flight: Option<OwnedSemaphorePermit>,
        taken: Taken,
        sleep: Sleep,
    },
    /// Admitted by Redis: the script call, then the sleep until its slot.
    #[cfg(feature = "redis")]
    Remote {
        in_flight: Option<OwnedSemaphorePermit>,
        wait: RemoteWait,
    },
    /// Decided before any wait: pass-through, or a routing error.
    Decided(Option<Result<Permit, Error>>),
    Done,
}

impl Acquire {
    fn new(buckets: Arc<Buckets>, cost: Cost) -> Self {
        Acquire {
            start: buckets.clock().now(),
            buckets: Some(buckets),
            cost,
            lane: Lane::Interactive,
            state: State::Start,
        }
    }

    fn in_lane(mut self, lane: Lane) -> Self {
        self.lane = lane;
        self
    }

    fn done(result: Result<Permit, Error>) -> Self {
        Acquire {
            buckets: None,
            cost: Cost::plain(0.0),
            lane: Lane::Interactive,
            start: Timestamp::ZERO,
            state: State::Decided(Some(result)),
        }
    }

    /// The source the request was routed to (`None`: it passes through).
    pub fn source(&self) -> Option<&str> {
        self.buckets.as_deref().map(|b| &**b.source())
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<Permit, Error>> {
        let Some(buckets) = self.buckets.as_ref() else {
            return match &mut self.state {
                State::Decided(result) => {
                    Poll::Ready(result.take().expect("`Acquire` polled after it completed"))
                }
                _ => unreachable!("an unrouted `Acquire` is always decided"),
            };
        };
        let clock = buckets.clock();
        let max_wait = buckets.context.on_limit.max_wait();
        loop {
            match &mut self.state {
                State::Start if buckets.context.shadow => {
                    let admitted = shadow_take(buckets.clone(), self.cost);
                    return Poll::Ready(admitted.map_err(|(e, _)| e));
                }
                State::Start => {
                    // The in-flight slot first: a request must go at its rate
                    // slot, not after it, or the window bound would not hold.
                    let Some(sem) = &buckets.in_flight else {
                        self.state = State::Reserve { in_flight: None };
                        continue;
                    };
                    if let Ok(p) = sem.clone().try_acquire_owned() {
                        self.state = State::Reserve { in_flight: Some(p) };
                        continue;
                    }
                    if max_wait.is_zero() {
                        return Poll::Ready(Err(refused(buckets, in_flight_full(buckets))));
                    }
                    let timeout = (max_wait != Duration::MAX)
                        .then(|| clock.sleep_until(self.start + max_wait));
                    self.state = State::InFlight {
                        wait: Box::pin(sem.clone().acquire_owned()),
                        timeout,
                    };
                }
                State::InFlight { wait, timeout } => {
                    if let Poll::Ready(got) = wait.as_mut().poll(cx) {
                        match got {
                            Ok(p) => self.state = State::Reserve { in_flight: Some(p) },
                            Err(_) => {
                                return Poll::Ready(Err(refused(buckets, in_flight_full(buckets))))
                            }
                        }
                        continue;
                    }
                    if let Some(t) = timeout {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Err(refused(buckets, in_flight_full(buckets))));
                        }
                    }
                    return Poll::Pending;
                }
                State::Reserve { in_flight } if buckets.queues.is_some() => {
                    let in_flight = in_flight.take();
                    self.state = State::Queued {
                        in_flight,
                        ticket: None,
                        sleep: None,
                    };
                }
                State::Queued {
                    in_flight,
                    ticket,
                    sleep,
                } => {
                    let Some(queues) = buckets.queues.as_ref() else {
                        unreachable!("queued only with lanes")
                    };
                    let id = *ticket.get_or_insert_with(|| queues.join(self.lane));
                    if let Some(s) = sleep {
                        if s.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        *sleep = None;
                    }
                    if !queues.is_head(self.lane, id, cx.waker()) {
                        return Poll::Pending;
                    }
                    let now = clock.now();
                    match buckets.try_take(self.cost) {
                        Ok(at) => {
                            queues.served(self.lane, id);
                            *ticket = None;
                            let in_flight = in_flight.take();
                            return Poll::Ready(Ok(self.permit(in_flight, at)));
                        }
                        Err(Error::RateLimited(r)) => {
                            let until = now + r.retry_after();
                            if max_wait != Duration::MAX
                                && until.saturating_duration_since(self.start) > max_wait
                            {
                                queues.leave(self.lane, id);
                                *ticket = None;
                                let e = name_refusal(Error::RateLimited(r), buckets);
                                return Poll::Ready(Err(refused(buckets, e)));
                            }
                            *sleep = Some(clock.sleep_until(until));
                        }
                        Err(e) => {
                            queues.leave(self.lane, id);
                            *ticket = None;
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                #[cfg(feature = "redis")]
                State::Reserve { in_flight } if buckets.remote.is_some() => {
                    let in_flight = in_flight.take();
                    let wait = remote_wait(buckets.clone(), self.cost, self.start, max_wait);
                    self.state = State::Remote { in_flight, wait };
                }
                #[cfg(feature = "redis")]
                State::Remote { in_flight, wait } => {
                    let Poll::Ready(admitted) = wait.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    return Poll::Ready(match admitted {
                        Ok((at, remaining)) => {
                            let in_flight = in_flight.take();
                            Ok(self.permit(in_flight, at).with_remaining(remaining))
                        }
                        Err(e) => Err(refused(buckets, name_refusal(e, buckets))),
                    });
                }
                State::Reserve { in_flight } => {
                    let left = if max_wait == Duration::MAX {
                        Duration::MAX
                    } else {
                        (self.start + max_wait).saturating_duration_since(clock.now())
                    };
                    let taken = match buckets.reserve(self.cost, left) {
                        Ok(t) => t,
                        Err(e) => {
                            return Poll::Ready(Err(refused(buckets, name_refusal(e, buckets))))
                        }
                    };
                    let now = clock.now();
                    let in_flight = in_flight.take();
                    if taken.slot <= now {
                        // Admitted at once: at the slot the bucket computed
                        // (the time it read), not the later `now`.
                        return Poll::Ready(Ok(self.permit(in_flight, taken.slot)));
                    }
                    tracing::debug!(
                        source = &**buckets.source(),
                        host = buckets.host.as_deref().unwrap_or(""),
                        tokens = self.cost.requests,
                        wait_ms = taken.slot.saturating_duration_since(now).as_secs_f64() * 1e3,
                        "waiting for a rate-limit slot"
                    );
                    let sleep = clock.sleep_until(taken.slot);
                    self.state = State::Sleeping {
                        in_flight,
                        taken,
                        sleep,
                    };
                }
                State::Sleeping { sleep, taken, .. } => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let slot = taken.slot;
                    let State::Sleeping { in_flight, .. } =
                        std::mem::replace(&mut self.state, State::Done)
                    else {
                        unreachable!()
                    };
                    // The slot was at or after the floor when taken: a floor
                    // still ahead now means a server deferred the host while
                    // this request waited. It queues again behind the
                    // deferral; the slot it leaves stays taken (stricter,
                    // never looser).
                    if buckets.deferred_until() > clock.now() {
                        self.state = State::Reserve { in_flight };
                        continue;
                    }
                    return Poll::Ready(Ok(self.permit(in_flight, slot)));
                }
                State::Decided(_) | State::Done => panic!("`Acquire` polled after it completed"),
            }
        }
    }

    fn permit(&self, in_flight: Option<OwnedSemaphorePermit>, at: Timestamp) -> Permit {
        let buckets = self.buckets.clone().expect("routed");
        Permit::new(
            buckets,
            in_flight,
            at.saturating_duration_since(self.start),
            at,
        )
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
#[cfg(feature = "redis")]
fn remote_wait(
    buckets: Arc<Buckets>,
    cost: Cost,
    start: Timestamp,
    max_wait: Duration,
) -> RemoteWait {
    Box::pin(async move {
        let Some(remote) = buckets.remote.clone() else {
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
                    return Err(Error::RateLimited(crate::RateLimited::new(wait)));
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

impl Future for Acquire {
    type Output = Result<Permit, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let out = this.poll_inner(cx);
        if out.is_ready() {
            this.state = State::Done;
        }
        out
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        // Abandoned before its slot: give back what it may.
        match (&self.state, &self.buckets) {
            (State::Sleeping { taken, .. }, Some(b)) => b.cancel(taken),
            (
                State::Queued {
                    ticket: Some(id), ..
                },
                Some(b),
            ) => {
                if let Some(q) = &b.queues {
                    q.leave(self.lane, *id);
                }
            }
            _ => {}
        }
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start | State::Reserve { .. } => "reserving",
            State::InFlight { .. } => "waiting for an in-flight slot",
            State::Sleeping { .. } => "waiting for its slot",
            State::Queued { .. } => "queued in its lane",
            #[cfg(feature = "redis")]
            State::Remote { .. } => "waiting for Redis or its slot",
            State::Decided(_) => "decided",
            State::Done => "done",
        };
        f.debug_struct("Acquire")
            .field("source", &self.source())
            .field("tokens", &self.cost.requests)
            .field("state", &state)
            .finish()
    }
}
