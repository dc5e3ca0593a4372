//! Several limits taken as one: the latest slot among them, taken from
//! every limit at that slot, or from none. The registry's bucket sets and
//! the Redis store's local fallback both take their limits this way.

use std::time::Duration;

use super::{Ticket, TokenBucket};
use crate::clock::{duration_nanos, Clock, Timestamp};
use crate::{Error, RateLimited};

/// Takes `weight(i)` tokens from each limit `i` of `limits()` at the latest
/// slot among them, if it comes within `max_wait` of `clock`'s now; else
/// takes nothing. `limits` is called once per attempt, in the same order.
///
/// The slot is looked up first, then taken from each limit *at* it; a
/// limit that another caller moved in between gives a different slot, and
/// everything taken so far is rolled back and the look repeated.
pub(crate) fn reserve_together<'a, C, I>(
    limits: impl Fn() -> I,
    weight: impl Fn(usize) -> f64,
    clock: &C,
    max_wait: Duration,
) -> Result<(Timestamp, Vec<Ticket>), Error>
where
    C: Clock + 'a,
    I: Iterator<Item = &'a TokenBucket<C>>,
{
    let max_wait_ns = duration_nanos(max_wait);
    'retry: loop {
        let now = clock.now();
        let mut slot = now;
        for (i, b) in limits().enumerate() {
            slot = slot.max(b.peek_slot(weight(i), now)?);
        }
        let wait = slot.as_nanos() - now.as_nanos();
        if wait > max_wait_ns {
            return Err(Error::from(RateLimited::from_nanos(wait)));
        }
        let mut tickets: Vec<Ticket> = Vec::new();
        for (i, b) in limits().enumerate() {
            match b.reserve_ticket(weight(i), Some(slot), Duration::MAX) {
                Ok(t) if t.slot() == slot => tickets.push(t),
                other => {
                    if let Ok(t) = other {
                        b.rollback_ticket(&t);
                    }
                    for (b, t) in limits().zip(&tickets) {
                        b.rollback_ticket(t);
                    }
                    continue 'retry;
                }
            }
        }
        // This limit gathers tokens until the slot for this request: a
        // policy change must count from there.
        for b in limits() {
            b.hold_until(slot);
        }
        return Ok((slot, tickets));
    }
}
