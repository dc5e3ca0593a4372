//! Taking tokens now, and what a refusal says: the steps that both
//! [`Registry::admit`](super::Registry::admit) and the [`Acquire`](super::Acquire)
//! future share (shadow mode, the in-flight slot, naming the source in a
//! refusal, counting it).

use crate::sync::Arc;
use std::time::Duration;

use super::buckets::{Buckets, Cost};
use super::meters::Refusal;
use super::permit::Permit;
use crate::clock::{Clock, Timestamp};
use crate::Error;

/// Takes an in-flight slot (if capped) and `tokens` now, or neither; a
/// refusal hands the set back for a wait. `now` is read from the registry's
/// clock: a plain set (one limit, nothing else to consult) is admitted from
/// its first cache line alone.
#[inline]
pub(super) fn take_now(
    buckets: Arc<Buckets>,
    cost: Cost,
    now: Timestamp,
) -> Result<Permit, (Error, Arc<Buckets>)> {
    take_now_as(buckets, cost, now, |permit| permit)
}

/// [`take_now`], the permit handed to `ready` where it is made: a caller
/// that wraps it (an [`Admission`](super::Admission)) gets it built in
/// place rather than copied out of a `Result` of another layout, whose
/// words span fields stored one by one (a stalled load per word, in the
/// tower layer's profile).
#[inline(always)]
pub(super) fn take_now_as<T>(
    buckets: Arc<Buckets>,
    cost: Cost,
    now: Timestamp,
    ready: impl FnOnce(Permit) -> T,
) -> Result<T, (Error, Arc<Buckets>)> {
    if let Some(taken) = buckets.try_take_plain(cost, now) {
        return match taken {
            Ok(at) => Ok(ready(Permit::new(buckets, None, Duration::ZERO, at))),
            Err(e) => Err((name_refusal(e, &buckets), buckets)),
        };
    }
    if buckets.context.shadow {
        return shadow_take(buckets, cost).map(ready);
    }
    if let Err(e) = lanes_clear(&buckets) {
        return Err((e, buckets));
    }
    let in_flight = match &buckets.in_flight {
        None => None,
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return Err((in_flight_full(&buckets), buckets)),
        },
    };
    match buckets.try_take(cost) {
        Ok(at) => Ok(ready(Permit::new(buckets, in_flight, Duration::ZERO, at))),
        Err(e) => Err((name_refusal(e, &buckets), buckets)),
    }
}

/// [`take_now`] without a permit, for `check`: a capped source's in-flight
/// cap refuses when full but no slot is held. A plain set is checked
/// inline, where the set was found; any other out of line.
#[inline(always)]
pub(super) fn check_now(b: &Buckets, cost: Cost, now: Timestamp) -> Result<(), Error> {
    match b.try_take_plain(cost, now) {
        Some(Ok(_)) => {
            b.context.meters.admitted(Duration::ZERO, false);
            Ok(())
        }
        Some(Err(e)) => Err(refused(b, name_refusal(e, b))),
        None => check_consulting(b, cost),
    }
}

/// [`check_now`] for a set that is not plain: its lanes, its in-flight
/// cap, then every limit.
#[inline(never)]
fn check_consulting(b: &Buckets, cost: Cost) -> Result<(), Error> {
    lanes_clear(b).map_err(|e| refused(b, e))?;
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
}

/// Shadow mode: takes what an enforcing source would (so later figures
/// follow the same schedule), counts what it would have delayed or refused,
/// and admits now. Only bad input is an error.
pub(super) fn shadow_take(
    buckets: Arc<Buckets>,
    cost: Cost,
) -> Result<Permit, (Error, Arc<Buckets>)> {
    let meters = &buckets.context.meters;
    let max_wait = buckets.context.on_limit.max_wait();
    let in_flight = buckets
        .in_flight
        .as_ref()
        .and_then(|s| s.clone().try_acquire_owned().ok());
    let over = buckets.in_flight.is_some() && in_flight.is_none();
    let now = buckets.clock().now();
    if over && max_wait.is_zero() {
        // The enforcing twin refuses at the in-flight cap before it takes
        // any token: so does the schedule kept here.
        meters.would_refuse();
        return Ok(Permit::new(buckets, None, Duration::ZERO, now));
    }
    match buckets.reserve(cost, max_wait) {
        Ok(taken) => {
            let wait = taken.slot.saturating_duration_since(now);
            if !wait.is_zero() {
                meters.would_wait(wait);
            } else if over {
                meters.would_wait(Duration::ZERO);
            }
        }
        Err(e) if e.is_rate_limited() => meters.would_refuse(),
        Err(e) => return Err((e, buckets)),
    }
    Ok(Permit::new(buckets, in_flight, Duration::ZERO, now))
}

/// A take now refuses while requests wait in the set's lanes: the slot it
/// would take is the queue head's. The wait it names is the bucket's next
/// slot, at least one emission interval of its tightest limit.
#[inline]
pub(super) fn lanes_clear(b: &Buckets) -> Result<(), Error> {
    match &b.queues {
        Some(q) if !q.is_empty() => Err(queued_refusal(b)),
        _ => Ok(()),
    }
}

#[cold]
fn queued_refusal(b: &Buckets) -> Error {
    let next = b
        .next_available()
        .saturating_duration_since(b.clock().now());
    let interval = b
        .policies()
        .iter()
        .map(|p| Duration::from_nanos(p.interval_nanos()))
        .max()
        .unwrap_or_default();
    name_refusal(Error::from(crate::RateLimited::new(next.max(interval))), b)
}

/// Counts a refusal that goes back to the caller.
pub(super) fn refused(b: &Buckets, e: Error) -> Error {
    if e.is_rate_limited() {
        b.context.meters.refused(Refusal::Rate);
    } else if e.is_in_flight_full() {
        b.context.meters.refused(Refusal::InFlight);
    }
    e
}

pub(super) fn in_flight_full(b: &Buckets) -> Error {
    Error::in_flight_full(b.source().as_ref(), b.context.max_in_flight.unwrap_or(0))
}

pub(super) fn name_refusal(e: Error, b: &Buckets) -> Error {
    e.name_source(b.source())
}
