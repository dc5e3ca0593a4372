//! [`Acquire`]: the future that waits for a request's slot in its routed
//! bucket set, as an explicit state machine with one small function per
//! state. Every state keeps every promise: the source's `max_wait` (counted
//! from the call), a server's deferral that arrives meanwhile, the
//! in-flight slot, and the tokens, which a drop before the slot gives back.
//!
//! ```text
//!            ┌──────────── in-flight cap full ───────────┐
//! Start ─────┤                                           ▼
//!            └─────────────▶ Reserve ◀──────────────── InFlight
//!                            │  │  │
//!         lanes ◀────────────┘  │  └─────────▶ Remote (a set in Redis)
//!           │                   ▼
//!           ▼                Sleeping ──▶ (deferred meanwhile: Reserve)
//!        Queued                 │
//!           └─────────▶ Ready(Permit) or a refusal
//! ```

use crate::sync::Arc;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit};

use super::buckets::{Buckets, Cost, Taken};
use super::permit::Permit;
use super::take::{in_flight_full, name_refusal, refused, shadow_take};
use super::Lane;
use crate::clock::{Clock, Sleep, Timestamp};
use crate::{Error, RateLimited};

type InFlightWait =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Waits for a request's slot in its routed bucket set; see
/// [`Registry::acquire`](super::Registry::acquire). Resolves to the
/// [`Permit`] or a refusal.
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
    /// Queued in its lane (a source with lanes): `place` (its id in the
    /// lane's queue, not a bucket's ticket) once joined;
    /// `sleep` while, at the head, it waits for the bucket; `deadline` the
    /// end of its `max_wait`, wherever it stands in the queue.
    Queued {
        in_flight: Option<OwnedSemaphorePermit>,
        place: Option<u64>,
        sleep: Option<Sleep>,
        deadline: Option<Sleep>,
    },
    /// Holding tokens for a slot in the future, sleeping until it.
    Sleeping {
        in_flight: Option<OwnedSemaphorePermit>,
        taken: Taken,
        sleep: Sleep,
    },
    /// Admitted by the set's shared store (Redis): its call, then the
    /// sleep until its slot.
    Remote {
        in_flight: Option<OwnedSemaphorePermit>,
        wait: super::store::Wait,
    },
    /// Decided before any wait: pass-through, or a routing error.
    Decided(Option<Result<Permit, Error>>),
    Done,
}

/// What one state's step leads to.
enum Step {
    /// The state changed: run the next one now.
    Next,
    Ready(Result<Permit, Error>),
    Pending,
}

/// What every state reads: the routed set and the request.
struct Ctx<'a> {
    buckets: &'a Arc<Buckets>,
    cost: Cost,
    lane: Lane,
    start: Timestamp,
    /// The source's `max_wait` (`Duration::MAX`: none; zero: refuse).
    max_wait: Duration,
}

impl Acquire {
    pub(super) fn new(buckets: Arc<Buckets>, cost: Cost) -> Self {
        Acquire {
            start: buckets.clock().now(),
            buckets: Some(buckets),
            cost,
            lane: Lane::Interactive,
            state: State::Start,
        }
    }

    pub(super) fn in_lane(mut self, lane: Lane) -> Self {
        self.lane = lane;
        self
    }

    /// A placeholder that has completed (polling it panics).
    #[cfg(feature = "tower")]
    pub(crate) fn finished() -> Self {
        Acquire {
            buckets: None,
            cost: Cost::plain(0.0),
            lane: Lane::Interactive,
            start: Timestamp::ZERO,
            state: State::Done,
        }
    }

    pub(super) fn done(result: Result<Permit, Error>) -> Self {
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

    /// Queues again with `permit`'s in-flight slot, after the future
    /// completed with it: for a request that could not be sent at its slot
    /// (its inner service was not ready) while a server deferred the host.
    /// `max_wait` still counts from the first call; the slot it leaves
    /// stays taken (stricter, never looser).
    #[cfg(feature = "tower")]
    pub(crate) fn again(&mut self, mut permit: Permit) {
        let in_flight = permit.take_in_flight();
        self.state = match self.buckets {
            Some(_) => State::Reserve { in_flight },
            None => State::Decided(Some(Ok(permit))),
        };
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<Permit, Error>> {
        let Acquire {
            buckets,
            cost,
            lane,
            start,
            state,
        } = self;
        let Some(buckets) = buckets.as_ref() else {
            return match state {
                State::Decided(result) => {
                    Poll::Ready(result.take().expect("`Acquire` polled after it completed"))
                }
                _ => unreachable!("an unrouted `Acquire` is always decided"),
            };
        };
        let ctx = Ctx {
            buckets,
            cost: *cost,
            lane: *lane,
            start: *start,
            max_wait: buckets.context.on_limit.max_wait(),
        };
        loop {
            let step = match state {
                State::Start => ctx.start(state),
                State::InFlight { .. } => ctx.in_flight(state, cx),
                State::Reserve { .. } => ctx.reserve(state),
                State::Queued { .. } => ctx.queued(state, cx),
                State::Sleeping { .. } => ctx.sleeping(state, cx),
                State::Remote { .. } => ctx.remote(state, cx),
                State::Decided(_) | State::Done => panic!("`Acquire` polled after it completed"),
            };
            match step {
                Step::Next => {}
                Step::Ready(r) => return Poll::Ready(r),
                Step::Pending => return Poll::Pending,
            }
        }
    }
}

impl Ctx<'_> {
    fn permit(&self, in_flight: Option<OwnedSemaphorePermit>, at: Timestamp) -> Permit {
        Permit::new(
            self.buckets.clone(),
            in_flight,
            at.saturating_duration_since(self.start),
            at,
        )
    }

    fn refuse(&self, e: Error) -> Step {
        Step::Ready(Err(refused(self.buckets, name_refusal(e, self.buckets))))
    }

    /// The end of `max_wait`, when there is one.
    fn deadline(&self) -> Option<Timestamp> {
        (self.max_wait != Duration::MAX).then(|| self.start + self.max_wait)
    }

    /// What is left of `max_wait` now.
    fn left(&self) -> Duration {
        match self.deadline() {
            None => Duration::MAX,
            Some(d) => d.saturating_duration_since(self.buckets.clock().now()),
        }
    }

    /// Shadow mode, or the in-flight slot first: a request must go at its
    /// rate slot, not after it, or the window bound would not hold.
    fn start(&self, state: &mut State) -> Step {
        let b = self.buckets;
        if b.context.shadow {
            return Step::Ready(shadow_take(b.clone(), self.cost).map_err(|(e, _)| e));
        }
        let Some(sem) = &b.in_flight else {
            *state = State::Reserve { in_flight: None };
            return Step::Next;
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            *state = State::Reserve { in_flight: Some(p) };
            return Step::Next;
        }
        if self.max_wait.is_zero() {
            return Step::Ready(Err(refused(b, in_flight_full(b))));
        }
        *state = State::InFlight {
            wait: Box::pin(sem.clone().acquire_owned()),
            timeout: self.deadline().map(|d| b.clock().sleep_until(d)),
        };
        Step::Next
    }

    fn in_flight(&self, state: &mut State, cx: &mut Context<'_>) -> Step {
        let State::InFlight { wait, timeout } = state else {
            unreachable!()
        };
        let b = self.buckets;
        if let Poll::Ready(got) = wait.as_mut().poll(cx) {
            return match got {
                Ok(p) => {
                    *state = State::Reserve { in_flight: Some(p) };
                    Step::Next
                }
                Err(_) => Step::Ready(Err(refused(b, in_flight_full(b)))),
            };
        }
        if timeout
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
        {
            return Step::Ready(Err(refused(b, in_flight_full(b))));
        }
        Step::Pending
    }

    /// Takes the rate slot: queues in its lane, asks Redis, or reserves in
    /// the local buckets.
    fn reserve(&self, state: &mut State) -> Step {
        let State::Reserve { in_flight } = state else {
            unreachable!()
        };
        let b = self.buckets;
        let in_flight = in_flight.take();
        if b.queues.is_some() {
            *state = State::Queued {
                in_flight,
                place: None,
                sleep: None,
                deadline: self.deadline().map(|d| b.clock().sleep_until(d)),
            };
            return Step::Next;
        }
        // A set whose store decides admissions (Redis) hands back its own
        // wait: one call on the store's clock, then the slot.
        if let Some(wait) = b.store.admission(b, self.cost, self.start, self.max_wait) {
            *state = State::Remote { in_flight, wait };
            return Step::Next;
        }
        let taken = match b.reserve(self.cost, self.left()) {
            Ok(t) => t,
            Err(e) => return self.refuse(e),
        };
        let now = b.clock().now();
        if taken.slot <= now {
            // Admitted at once: at the slot the bucket computed (the time
            // it read), not the later `now`.
            return Step::Ready(Ok(self.permit(in_flight, taken.slot)));
        }
        tracing::debug!(
            source = &**b.source(),
            host = b.host.as_deref().unwrap_or(""),
            tokens = self.cost.requests,
            wait_ms = taken.slot.saturating_duration_since(now).as_secs_f64() * 1e3,
            "waiting for a rate-limit slot"
        );
        let sleep = b.clock().sleep_until(taken.slot);
        *state = State::Sleeping {
            in_flight,
            taken,
            sleep,
        };
        Step::Next
    }

    /// In its lane's queue: waits to be the head, then for the bucket; the
    /// deadline of `max_wait` holds wherever it stands.
    fn queued(&self, state: &mut State, cx: &mut Context<'_>) -> Step {
        let State::Queued {
            in_flight,
            place,
            sleep,
            deadline,
        } = state
        else {
            unreachable!()
        };
        let b = self.buckets;
        let Some(queues) = b.queues.as_ref() else {
            unreachable!("queued only with lanes")
        };
        let id = *place.get_or_insert_with(|| queues.join(self.lane));
        let leave = |place: &mut Option<u64>| {
            queues.leave(self.lane, id);
            *place = None;
        };
        if deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            // `max_wait` is over, at the head or behind it: the queue's
            // next slot is as far as the caller can tell.
            leave(place);
            let wait = b
                .next_available()
                .saturating_duration_since(b.clock().now());
            return self.refuse(Error::from(RateLimited::new(wait)));
        }
        if let Some(s) = sleep {
            if s.as_mut().poll(cx).is_pending() {
                return Step::Pending;
            }
            *sleep = None;
        }
        if !queues.is_head(self.lane, id, cx.waker()) {
            return Step::Pending;
        }
        let now = b.clock().now();
        match b.try_take(self.cost) {
            Ok(at) => {
                queues.served(self.lane, id);
                *place = None;
                Step::Ready(Ok(self.permit(in_flight.take(), at)))
            }
            Err(e) if e.is_rate_limited() => {
                let until = now + e.retry_after().unwrap_or_default();
                if self.deadline().is_some_and(|d| until > d) {
                    leave(place);
                    return self.refuse(e);
                }
                *sleep = Some(b.clock().sleep_until(until));
                Step::Next
            }
            Err(e) => {
                leave(place);
                Step::Ready(Err(e))
            }
        }
    }

    /// Holding a slot: at it, goes, unless a server deferred the host
    /// meanwhile (then it queues again behind the deferral; the slot it
    /// leaves stays taken: stricter, never looser).
    fn sleeping(&self, state: &mut State, cx: &mut Context<'_>) -> Step {
        let State::Sleeping { sleep, taken, .. } = state else {
            unreachable!()
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Step::Pending;
        }
        let slot = taken.slot;
        let State::Sleeping { in_flight, .. } = std::mem::replace(state, State::Done) else {
            unreachable!()
        };
        let b = self.buckets;
        if b.deferred_until() > b.clock().now() {
            *state = State::Reserve { in_flight };
            return Step::Next;
        }
        Step::Ready(Ok(self.permit(in_flight, slot)))
    }

    fn remote(&self, state: &mut State, cx: &mut Context<'_>) -> Step {
        let State::Remote { in_flight, wait } = state else {
            unreachable!()
        };
        let Poll::Ready(admitted) = Pin::new(wait).poll(cx) else {
            return Step::Pending;
        };
        match admitted {
            Ok((at, remaining)) => Step::Ready(Ok(self
                .permit(in_flight.take(), at)
                .with_remaining(remaining))),
            Err(e) => self.refuse(e),
        }
    }
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
                    place: Some(id), ..
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
            State::Remote { .. } => "waiting for its store or its slot",
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
