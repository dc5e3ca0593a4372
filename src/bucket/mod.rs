//! [`TokenBucket`]: an exact, lock-free token bucket (GCRA in one `AtomicU64`).
//!
//! This module owns admission: who may go now, who waits until when, and
//! what a cancelled wait gives back. Where time comes from is
//! [`clock`](crate::clock)'s; which bucket a request uses is the registry's.
//!
//! ```
//! use std::time::Duration;
//! use tollgate::{ManualClock, Policy, TokenBucket};
//!
//! let clock = ManualClock::new();
//! let bucket = TokenBucket::with_clock("3/s burst 3".parse::<Policy>()?, clock.clone());
//! bucket.try_acquire(2.5)?;                                  // fractional and weighted tokens
//! assert!(bucket.try_acquire(1.0).is_err());                 // Err(RateLimited) with the exact wait
//! let later = bucket.reserve(1.0, Duration::from_secs(1))?;  // a FIFO slot, maybe in the future
//! assert_eq!(later.delay(), Duration::from_millis(166) + Duration::from_nanos(666_667));
//! drop(later);                                               // before its slot: the tokens come back
//! clock.advance(Duration::from_secs(1));
//! bucket.try_acquire(3.0)?;
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! `acquire(w).await` sleeps exactly until the slot; `acquire_blocking(w)`
//! does the same on a thread. [`FastClock`] (the default,
//! the CPU's time-stamp counter through `quanta`) reads the time; in a test
//! with `#[tokio::test(start_paused = true)]` it follows tokio's paused
//! time by itself. Use [`TokioClock`](crate::TokioClock) for exact
//! virtual-time tests that pause after building a bucket, and
//! [`ManualClock`](crate::ManualClock) in unit tests.
//!
//! # How it works
//!
//! The state is one number, the *theoretical arrival time* `tat`. With
//! emission interval `T = 1/rate` and tolerance `tau = capacity·T`:
//!
//! * tokens available at `now` = `min(capacity, (now + tau − tat) / T)`;
//! * taking `w` tokens at `now` sets `tat = max(tat, now) + w·T`, and the
//!   request may go at its *slot* `max(now, tat − tau)`: at once when the
//!   slot is `now`, otherwise later (a reservation, served in FIFO order).
//!
//! The bucket starts full. Times are integer nanoseconds: `T` and `w·T` are
//! rounded up and `tau` down, so rounding only ever makes it stricter.
//!
//! # The invariant
//!
//! **For any schedule of calls, the weight admitted in any half-open window
//! of length `W` is at most `capacity + rate·W`.** A request counts as
//! admitted at its slot, once it is taken with `try_acquire`, or its
//! reservation is waited on or committed; a cancelled reservation is not
//! admitted. When the policy changes, the bound holds with the largest
//! capacity and rate in force. With requests of one token the bound is
//! `capacity + ceil(rate·W) − 1`, which is how
//! [`Policy::window`](crate::Policy::window) promises "at most `n` in any
//! window". `tests/bucket/window_bound.rs` checks both on random schedules.
//!
//! Proof sketch: order the admitted requests of a window by when they took
//! their tokens; `tat` grows by at least `w·T` for each. The first one took
//! its tokens no earlier than `window start + tau − w₁·T` (if it waited) or
//! than the window start (if it did not), and the last one's slot,
//! `tat − tau`, lies inside the window. Subtracting gives
//! `Σw < capacity + rate·W`. A refund (below) returns the bucket exactly to
//! its state before the cancelled reservation, so the admitted requests are
//! a schedule the bucket could have admitted without it.
//!
//! # Refunds
//!
//! Dropping a [`Reservation`] before its slot gives its tokens back when no
//! reservation was made after it; one that later reservations are queued
//! behind gives nothing back (they keep their slots, computed from its
//! tokens). After its slot, nothing comes back. A reservation made before a
//! [`set_policy`](TokenBucket::set_policy) or a deferral after it refunds
//! nothing. This is Go's `Reservation.Cancel` without its partial refund,
//! which can break the window bound (see `gcra::refund`).
//!
//! # Deferrals
//!
//! [`defer_until`](TokenBucket::defer_until) (what a server's `Retry-After`
//! becomes) sets a *floor*: a request that arrives before it is served as
//! if it arrived at it, so no slot lies before the floor. The floor is kept
//! apart from `tat` and the policy, and only ever rises: no policy change,
//! rescale or refund lowers it.
//!
//! # Concurrency
//!
//! `tat` changes only by compare-and-swap. The policy (three numbers) sits
//! beside it behind a sequence counter: readers never lock, and a policy
//! change, the one rare writer, bumps the counter around its update so a
//! reader never mixes two policies. A loom model (`loom_model.rs`, built
//! with `--cfg tollgate_loom`) checks the window bound, the seqlock and the
//! floor in every interleaving of takes, reservations, refunds, policy
//! changes and deferrals from two or three threads.

mod gcra;
mod reservation;
mod together;

pub(crate) use gcra::Params;
pub use reservation::Reservation;
pub(crate) use reservation::Ticket;
pub(crate) use together::reserve_together;

use std::fmt;
use std::time::Duration;

use crate::clock::{duration_nanos, Clock, FastClock, Timestamp};
use crate::sync::{fence, spin_loop, AtomicU64, Mutex, Ordering};
use crate::{Error, Policy, RateLimited};

/// A token bucket: admits requests at a [`Policy`]'s rate with its burst,
/// exactly, from any number of threads and tasks.
///
/// Non-blocking ([`try_acquire`](Self::try_acquire)), async
/// ([`acquire`](Self::acquire)), blocking
/// ([`acquire_blocking`](Self::acquire_blocking)) and two-step
/// ([`reserve`](Self::reserve)) acquisition share one FIFO schedule. See the
/// [module docs](self) for the algorithm and its window bound.
///
/// ```
/// use tollgate::{Policy, TokenBucket};
///
/// let bucket = TokenBucket::new("3/s burst 3".parse::<Policy>()?);
/// for _ in 0..3 {
///     bucket.try_acquire(1.0)?;
/// }
/// let refused = bucket.try_acquire(1.0).unwrap_err();
/// let wait = refused.as_rate_limited().unwrap().retry_after();
/// assert!(wait > std::time::Duration::from_millis(300));
/// # Ok::<(), tollgate::Error>(())
/// ```
// `repr(C)`: the words a take reads (`tat`, then the floor and the
// policy's) sit together at the front, the clock after them, the rarely
// touched policy lock last.
#[repr(C)]
pub struct TokenBucket<C: Clock = FastClock> {
    tat: AtomicU64,
    /// The deferral floor: no slot lies before it. Raised by
    /// [`defer_until`](Self::defer_until) only, never lowered, and read apart
    /// from the policy, so no policy change or rescale can move it.
    floor: AtomicU64,
    /// The latest slot a caller chose for a reservation (a source with
    /// several limits takes each at the latest slot among them): the tokens
    /// this limit gathers until then are that reservation's, so a policy
    /// change counts the level from there (see `gcra::rescale`). Never
    /// lowered; only the multi-limit path writes it.
    horizon: AtomicU64,
    /// Even while the policy is stable, odd while `set_policy` rewrites it.
    seq: AtomicU64,
    interval: AtomicU64,
    tau: AtomicU64,
    capacity: AtomicU64,
    clock: C,
    /// Serialises policy changes and remembers the policy as given (boxed:
    /// read rarely, and the bucket stays small).
    policy: Mutex<Box<Policy>>,
}

#[inline]
fn refused(wait_nanos: u64) -> Error {
    Error::from(RateLimited::from_nanos(wait_nanos))
}

/// A consistent view of the bucket: its params, their version, and `tat`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub params: Params,
    pub seq: u64,
    pub tat: u64,
}

impl TokenBucket<FastClock> {
    /// A full bucket on the default clock.
    pub fn new(policy: Policy) -> Self {
        Self::with_clock(policy, FastClock::new())
    }
}

impl<C: Clock> TokenBucket<C> {
    /// A full bucket on `clock`; use [`TokioClock`](crate::TokioClock) under
    /// paused tokio time and [`ManualClock`](crate::ManualClock) in unit tests.
    pub fn with_clock(policy: Policy, clock: C) -> Self {
        let p = Params::from_policy(&policy);
        TokenBucket {
            tat: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            interval: AtomicU64::new(p.interval),
            tau: AtomicU64::new(p.tau),
            capacity: AtomicU64::new(p.capacity.to_bits()),
            policy: Mutex::new(Box::new(policy)),
            clock,
        }
    }

    /// The clock this bucket reads and sleeps on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        **self.policy.lock()
    }

    #[inline]
    pub(crate) fn view(&self) -> View {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq & 1 == 0 {
                let params = Params {
                    interval: self.interval.load(Ordering::Relaxed),
                    tau: self.tau.load(Ordering::Relaxed),
                    capacity: f64::from_bits(self.capacity.load(Ordering::Relaxed)),
                };
                let tat = self.tat.load(Ordering::Acquire);
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == seq {
                    return View { params, seq, tat };
                }
            }
            spin_loop();
        }
    }

    #[inline]
    fn swap_tat(&self, current: u64, new: u64) -> bool {
        current == new
            || self
                .tat
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes `tokens` now, or refuses with the exact wait. Nothing is taken
    /// on refusal.
    ///
    /// Errors, by [`ErrorKind`](crate::ErrorKind):
    /// [`RateLimited`](crate::ErrorKind::RateLimited);
    /// [`InvalidTokens`](crate::ErrorKind::InvalidTokens) for a count that is
    /// not finite and above zero;
    /// [`InsufficientCapacity`](crate::ErrorKind::InsufficientCapacity) for
    /// more than the capacity.
    #[inline]
    pub fn try_acquire(&self, tokens: f64) -> Result<(), Error> {
        self.try_acquire_now(tokens).map(|_| ())
    }

    /// [`try_acquire`](Self::try_acquire), returning the time it read.
    #[inline]
    pub(crate) fn try_acquire_now(&self, tokens: f64) -> Result<Timestamp, Error> {
        self.try_acquire_at(tokens, self.clock.now())
    }

    /// [`try_acquire_now`](Self::try_acquire_now) at `now`, read from a
    /// clock on this bucket's timeline (the registry's, which its sets share).
    #[inline]
    pub(crate) fn try_acquire_at(&self, tokens: f64, now: Timestamp) -> Result<Timestamp, Error> {
        let now = now.as_nanos();
        // A request that arrives before the floor is served as if it arrived at it.
        let arrival = now.max(self.floor.load(Ordering::Acquire));
        loop {
            let v = self.view();
            let cost = v.params.cost(tokens)?;
            let g = gcra::grant(v.params, v.tat, arrival, cost);
            if g.slot > now {
                return Err(refused(g.slot - now));
            }
            if self.swap_tat(v.tat, g.new_tat) {
                return Ok(Timestamp::from_nanos(now));
            }
        }
    }

    /// Takes the next slot for `tokens` in FIFO order, if it comes within
    /// `max_wait`; otherwise refuses and takes nothing.
    ///
    /// The [`Reservation`] keeps its tokens when waited on or committed;
    /// dropped before its slot, it gives them back (see [Refunds](self#refunds)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::{ManualClock, Policy, TokenBucket};
    ///
    /// let clock = ManualClock::new();
    /// let bucket = TokenBucket::with_clock(Policy::per_second(2.0)?, clock.clone());
    /// bucket.reserve(1.0, Duration::ZERO)?.commit();
    /// let next = bucket.reserve(1.0, Duration::from_secs(1))?;
    /// assert_eq!(next.delay(), Duration::from_millis(500));
    /// drop(next); // before its slot: the token comes back
    /// assert_eq!(bucket.reserve(1.0, Duration::from_secs(1))?.delay(), Duration::from_millis(500));
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    pub fn reserve(&self, tokens: f64, max_wait: Duration) -> Result<Reservation<'_, C>, Error> {
        let ticket = self.reserve_ticket(tokens, None, max_wait)?;
        Ok(Reservation::new(self, ticket))
    }

    /// Reserves `tokens` for a request arriving at `at` (a time the caller
    /// read from this clock, maybe a slot in the future), or now when `None`.
    pub(crate) fn reserve_ticket(
        &self,
        tokens: f64,
        at: Option<Timestamp>,
        max_wait: Duration,
    ) -> Result<Ticket, Error> {
        let now = at.unwrap_or_else(|| self.clock.now()).as_nanos();
        let arrival = now.max(self.floor.load(Ordering::Acquire));
        let max_wait = duration_nanos(max_wait);
        loop {
            let v = self.view();
            let cost = v.params.cost(tokens)?;
            let g = gcra::grant(v.params, v.tat, arrival, cost);
            if g.slot - now > max_wait {
                return Err(refused(g.slot - now));
            }
            if self.swap_tat(v.tat, g.new_tat) {
                let cost = if v.params.is_unlimited() { 0 } else { cost };
                return Ok(Ticket {
                    slot: g.slot,
                    tat_after: g.new_tat,
                    tat_before: v.tat,
                    cost,
                    seq: v.seq,
                });
            }
        }
    }

    /// The earliest time `tokens` could go if reserved at `now`, without
    /// taking them.
    pub(crate) fn peek_slot(&self, tokens: f64, now: Timestamp) -> Result<Timestamp, Error> {
        let arrival = now.as_nanos().max(self.floor.load(Ordering::Acquire));
        let v = self.view();
        let cost = v.params.cost(tokens)?;
        Ok(Timestamp::from_nanos(
            gcra::grant(v.params, v.tat, arrival, cost).slot,
        ))
    }

    /// Gives back what a ticket may still give back; returns the tokens refunded.
    pub(crate) fn cancel_ticket(&self, ticket: &Ticket) -> f64 {
        self.refund_ticket(ticket, Some(self.clock.now().as_nanos()))
    }

    /// Undoes a ticket taken a moment ago for a request that will not be
    /// sent (another limit of the same source refused it), even at its slot.
    pub(crate) fn rollback_ticket(&self, ticket: &Ticket) {
        self.refund_ticket(ticket, None);
    }

    fn refund_ticket(&self, ticket: &Ticket, now: Option<u64>) -> f64 {
        if now.is_some_and(|now| now >= ticket.slot) {
            return 0.0; // its slot has come: the tokens are in use
        }
        loop {
            let v = self.view();
            if v.seq != ticket.seq || v.params.is_unlimited() {
                return 0.0;
            }
            let Some(new_tat) =
                gcra::refund(v.tat, ticket.tat_after, ticket.tat_before, ticket.cost)
            else {
                return 0.0;
            };
            if self.swap_tat(v.tat, new_tat) {
                return ticket.cost as f64 / v.params.interval as f64;
            }
        }
    }

    /// Waits for `tokens`: takes the next slot and sleeps exactly until it
    /// (one wake-up, FIFO). Dropping the future before the slot refunds the
    /// tokens.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::{Policy, TokenBucket, TokioClock};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tollgate::Error> {
    /// let bucket = TokenBucket::with_clock(Policy::per_second(4.0)?, TokioClock::new());
    /// let start = tokio::time::Instant::now();
    /// bucket.acquire(1.0).await?; // at once: the bucket starts full
    /// bucket.acquire(1.0).await?; // 250 ms later
    /// assert_eq!(start.elapsed(), Duration::from_millis(250));
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, tokens: f64) -> Result<(), Error> {
        self.reserve(tokens, Duration::MAX)?.wait().await;
        Ok(())
    }

    /// Like [`acquire`](Self::acquire), blocking the calling thread.
    pub fn acquire_blocking(&self, tokens: f64) -> Result<(), Error> {
        self.reserve(tokens, Duration::MAX)?.wait_blocking();
        Ok(())
    }

    /// Changes the policy, keeping the current token count (clamped to the
    /// new capacity). Pending reservations keep their slots, and requests
    /// after them queue at the new rate.
    pub fn set_policy(&self, policy: Policy) {
        let mut current = self.policy.lock();
        let old = Params::from_policy(&current);
        let new = Params::from_policy(&policy);
        self.seq.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::Release);
        self.interval.store(new.interval, Ordering::Relaxed);
        self.tau.store(new.tau, Ordering::Relaxed);
        self.capacity
            .store(new.capacity.to_bits(), Ordering::Relaxed);
        // Counted from where pending reservations may hold gathered tokens:
        // see `gcra::rescale`.
        let now = self.clock.now().as_nanos();
        let now = if new.is_unlimited() {
            now
        } else if !old.is_unlimited() && new.interval < old.interval {
            // Faster: from the latest chosen slot too. Were that
            // reservation given back since, this is stricter, never looser.
            now.max(self.floor.load(Ordering::Acquire))
                .max(self.horizon.load(Ordering::Acquire))
        } else {
            // As fast or slower: a later start would be looser before it.
            now.max(self.floor.load(Ordering::Acquire))
        };
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(gcra::rescale(old, new, tat, now))
            });
        self.seq.fetch_add(1, Ordering::Release);
        **current = policy;
    }

    /// No one-token request is admitted before `deadline`, and one is at it;
    /// then the bucket refills at its rate. A later deferral is never moved
    /// earlier. This is what a server's `Retry-After` does.
    ///
    /// The deadline is a floor under every slot, kept apart from the policy:
    /// no [`set_policy`](Self::set_policy) (to a faster rate, or to
    /// unlimited) lowers it.
    pub fn defer_until(&self, deadline: Timestamp) {
        self.floor.fetch_max(deadline.as_nanos(), Ordering::AcqRel);
        loop {
            let v = self.view();
            let new_tat = gcra::defer(v.params, v.tat, deadline.as_nanos());
            if self.swap_tat(v.tat, new_tat) {
                return;
            }
        }
    }

    /// The deferral in force: no request is admitted before it (the epoch
    /// when there is none).
    pub fn deferred_until(&self) -> Timestamp {
        Timestamp::from_nanos(self.floor.load(Ordering::Acquire))
    }

    /// Takes on another bucket's debt and deferral (its `tat` and floor)
    /// where they are later than this one's: for a set that replaces
    /// another, so that it starts no fuller and no earlier.
    pub(crate) fn inherit(&self, (tat, floor, horizon): (u64, u64, u64)) {
        self.floor.fetch_max(floor, Ordering::AcqRel);
        self.horizon.fetch_max(horizon, Ordering::AcqRel);
        self.tat.fetch_max(tat, Ordering::AcqRel);
    }

    /// The raw state, for [`inherit`](Self::inherit): `(tat, floor, horizon)`.
    pub(crate) fn raw_state(&self) -> (u64, u64, u64) {
        (
            self.view().tat,
            self.floor.load(Ordering::Acquire),
            self.horizon.load(Ordering::Acquire),
        )
    }

    /// A reservation was taken at `slot`, a time the caller chose (the
    /// latest slot among a source's limits): remember it for policy changes.
    pub(crate) fn hold_until(&self, slot: Timestamp) {
        self.horizon.fetch_max(slot.as_nanos(), Ordering::AcqRel);
    }

    /// [`defer_until`](Self::defer_until) the clock's now plus `wait`.
    pub fn defer_for(&self, wait: Duration) {
        self.defer_until(self.clock.now() + wait);
    }

    /// Tokens available now, without taking any (infinite when unlimited and
    /// not deferred).
    pub fn available(&self) -> f64 {
        let now = self.clock.now().as_nanos();
        if now < self.floor.load(Ordering::Acquire) {
            return 0.0;
        }
        let v = self.view();
        gcra::available(v.params, v.tat, now)
    }

    /// When one token will next be available (now, if it is).
    pub fn next_available(&self) -> Timestamp {
        let now = self.clock.now().as_nanos();
        let arrival = now.max(self.floor.load(Ordering::Acquire));
        let v = self.view();
        let cost = v.params.interval.min(v.params.tau);
        Timestamp::from_nanos(gcra::grant(v.params, v.tat, arrival, cost).slot)
    }

    /// Whether the bucket is full (and not deferred): such a bucket is the
    /// same as a fresh one, which lets a registry drop it.
    pub fn is_full(&self) -> bool {
        self.is_full_at(self.clock.now())
    }

    /// When the bucket is full again and any deferral is over, on its
    /// clock, unless it is taken from meanwhile.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn full_at(&self) -> Timestamp {
        Timestamp::from_nanos(self.view().tat.max(self.floor.load(Ordering::Acquire)))
    }

    /// [`is_full`](Self::is_full) at a time read before (so a caller holding
    /// a lock reads no clock under it).
    pub(crate) fn is_full_at(&self, now: Timestamp) -> bool {
        let now = now.as_nanos();
        self.view().tat <= now && self.floor.load(Ordering::Acquire) <= now
    }
}

impl<C: Clock> fmt::Debug for TokenBucket<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("policy", &self.policy())
            .field("available", &self.available())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, tollgate_loom))]
mod loom_model;
#[cfg(test)]
mod tests;
