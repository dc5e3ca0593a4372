//! [`Refusals`]: what a bucket set's last answers from Redis prove that
//! Redis would refuse, and until when on the local timer, so that such a
//! request is refused here, with its exact wait, without a round trip.
//!
//! Two kinds of answer teach it something:
//!
//! - a refusal of a request that costs `C` (per limit) until slot `T`: a
//!   request that costs at least `C` in every limit gets no slot before `T`;
//! - a grant: each limit's theoretical arrival time after it (`tat_i`),
//!   below which the stored one never falls, so a request that costs `C`
//!   gets no slot before `max_i(tat_i + C_i - tau_i)` (`tat_i` for an
//!   unlimited limit, whose tat is its deferral).
//!
//! Both rest on the tat only growing: other takes, charges and deferrals
//! raise it; a refund and a policy change may lower it. This process's own
//! refunds, deferrals and policy changes clear what is known (a deferral
//! would only make the known waits too short, and would be waited out
//! before Redis is asked anyway), and every clear starts a new epoch, so an
//! answer to a call sent before it is not recorded. Refunds and policy
//! changes made by other processes cannot be seen: until the known slot,
//! a request they would let through is still refused here (stricter, never
//! looser), and the store's state coming back empty (a restart without
//! persistence) is the same.
//!
//! Redis's `TIME` stays the reference: a slot `T` read with Redis's now `N`
//! becomes the local deadline `L + (T - N)`, `L` the local time the answer
//! arrived. The answer's travel time only makes that later than Redis's
//! own view, so a local refusal lasts at most one trip longer than Redis's
//! would, and never admits anything: requests past the deadline ask Redis.

use std::time::Duration;

use tokio::time::Instant;

use super::script::{LimitSet, RemoteTicket};
use crate::clock::{duration_nanos, Timestamp};
use crate::sync::{Mutex, MutexGuard};

/// What one bucket set knows Redis refuses; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Refusals {
    /// Local times are nanoseconds after this instant (negative: before).
    base: Instant,
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    /// Bumped by every clear; answers to calls sent earlier are dropped.
    epoch: u64,
    /// Per limit, a floor under its tat on the local timer; empty when
    /// nothing is known.
    tats: Vec<i128>,
    /// A refused request's costs and its slot on the local timer.
    refused: Option<(Vec<u64>, i128)>,
}

/// A call's epoch: read before the call is sent, given back with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Epoch(u64);

impl Refusals {
    pub(super) fn new() -> Refusals {
        Refusals {
            base: Instant::now(),
            known: Mutex::new(Known::default()),
        }
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock()
    }

    fn local(&self, at: Instant) -> i128 {
        if at >= self.base {
            i128::from(duration_nanos(at - self.base))
        } else {
            -i128::from(duration_nanos(self.base - at))
        }
    }

    /// Redis time `t`, read in an answer with Redis's now `now` that
    /// arrived at local `arrived`, on the local timer.
    fn to_local(&self, arrived: Instant, now: Timestamp, t: Timestamp) -> i128 {
        self.local(arrived) + i128::from(t.as_nanos()) - i128::from(now.as_nanos())
    }

    /// The epoch to send a call under.
    pub(super) fn epoch(&self) -> Epoch {
        Epoch(self.known().epoch)
    }

    /// Forgets everything known and starts a new epoch.
    pub(super) fn clear(&self) {
        let mut known = self.known();
        known.epoch += 1;
        known.tats.clear();
        known.refused = None;
    }

    /// The wait of a request that costs `costs` in the limits of `set`, if
    /// what is known says it is longer than `max_wait`: Redis would refuse
    /// it.
    pub(super) fn refuses(
        &self,
        set: &LimitSet,
        costs: &[u64],
        max_wait: Duration,
    ) -> Option<Duration> {
        let known = self.known();
        let mut until = i128::MIN;
        if let Some((refused, slot)) = &known.refused {
            if refused.len() == costs.len() && refused.iter().zip(costs).all(|(r, c)| c >= r) {
                until = *slot;
            }
        }
        if known.tats.len() == set.limits.len() && costs.len() == set.limits.len() {
            for ((tat, limit), &cost) in known.tats.iter().zip(&set.limits).zip(costs) {
                let p = &limit.params;
                let slot = if p.is_unlimited() {
                    *tat
                } else {
                    tat + i128::from(cost) - i128::from(p.tau)
                };
                until = until.max(slot);
            }
        }
        drop(known);
        if until == i128::MIN {
            return None;
        }
        let wait = until - self.local(Instant::now());
        if wait <= 0 {
            return None;
        }
        let wait = Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX));
        (wait > max_wait).then_some(wait)
    }

    /// Records that Redis refused a request of `costs` until `slot` (read
    /// with Redis's now `now`, arrived at local `arrived`).
    pub(super) fn refused(
        &self,
        epoch: Epoch,
        arrived: Instant,
        now: Timestamp,
        slot: Timestamp,
        costs: &[u64],
    ) {
        let until = self.to_local(arrived, now, slot);
        let mut known = self.known();
        if known.epoch != epoch.0 {
            return;
        }
        let keep = match &known.refused {
            // A later slot, or one that ended: the new one says more.
            Some((_, old)) => until >= *old || *old <= self.local(Instant::now()),
            None => true,
        };
        if keep {
            known.refused = Some((costs.to_vec(), until));
        }
    }

    /// Records each limit's tat after a grant (read with Redis's now `now`,
    /// arrived at local `arrived`).
    pub(super) fn granted(
        &self,
        epoch: Epoch,
        arrived: Instant,
        now: Timestamp,
        tickets: &[RemoteTicket],
    ) {
        let mut known = self.known();
        if known.epoch != epoch.0 {
            return;
        }
        let tats = tickets
            .iter()
            .map(|t| self.to_local(arrived, now, Timestamp::from_nanos(t.tat_after)));
        if known.tats.len() == tickets.len() {
            for (old, new) in known.tats.iter_mut().zip(tats) {
                *old = (*old).max(new);
            }
        } else {
            known.tats = tats.collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::Limit;
    use crate::Policy;

    const MS: u64 = 1_000_000;

    fn set(policies: &[&str]) -> LimitSet {
        LimitSet {
            keys: (0..policies.len()).map(|i| format!("k:{i}")).collect(),
            limits: policies
                .iter()
                .map(|p| Limit::new(p.parse::<Policy>().unwrap()))
                .collect(),
        }
    }

    fn ticket(tat_after: u64, cost: u64) -> RemoteTicket {
        RemoteTicket {
            tat_after,
            tat_before: 0,
            cost,
            version: 0,
        }
    }

    const NOW: u64 = 1_700_000_000_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn a_refusal_holds_until_its_slot_for_requests_at_least_as_heavy() {
        let set = set(&["10/s burst 2"]);
        let r = Refusals::new();
        let one = set.costs(|_| 1.0).unwrap();
        let two = set.costs(|_| 2.0).unwrap();
        let half = set.costs(|_| 0.5).unwrap();
        r.refused(
            r.epoch(),
            Instant::now(),
            Timestamp::from_nanos(NOW),
            Timestamp::from_nanos(NOW + 80 * MS),
            &one,
        );
        let wait = r.refuses(&set, &one, Duration::ZERO).unwrap();
        assert_eq!(wait, Duration::from_millis(80));
        assert_eq!(r.refuses(&set, &two, Duration::ZERO), Some(wait));
        // Lighter requests may fit earlier: Redis decides.
        assert_eq!(r.refuses(&set, &half, Duration::ZERO), None);
        // A request that would wait that long asks Redis.
        assert_eq!(r.refuses(&set, &one, Duration::from_millis(80)), None);
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(
            r.refuses(&set, &one, Duration::ZERO),
            Some(Duration::from_millis(50))
        );
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(r.refuses(&set, &one, Duration::ZERO), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_bounds_the_next_slot_of_every_weight() {
        let set = set(&["10/s burst 2"]);
        let p = set.limits[0].params;
        let r = Refusals::new();
        // The grant left the tat at now + tau: the bucket is empty.
        r.granted(
            r.epoch(),
            Instant::now(),
            Timestamp::from_nanos(NOW),
            &[ticket(NOW + p.tau, p.interval)],
        );
        let one = set.costs(|_| 1.0).unwrap();
        let half = set.costs(|_| 0.5).unwrap();
        assert_eq!(
            r.refuses(&set, &one, Duration::ZERO),
            Some(Duration::from_nanos(one[0]))
        );
        assert_eq!(
            r.refuses(&set, &half, Duration::ZERO),
            Some(Duration::from_nanos(half[0]))
        );
        // A grant that left tokens proves nothing for one token.
        let r = Refusals::new();
        r.granted(
            r.epoch(),
            Instant::now(),
            Timestamp::from_nanos(NOW),
            &[ticket(NOW + p.tau - p.interval, p.interval)],
        );
        assert_eq!(r.refuses(&set, &one, Duration::ZERO), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clear_forgets_and_drops_answers_to_older_calls() {
        let set = set(&["10/s burst 2"]);
        let one = set.costs(|_| 1.0).unwrap();
        let r = Refusals::new();
        let refuse = |epoch| {
            r.refused(
                epoch,
                Instant::now(),
                Timestamp::from_nanos(NOW),
                Timestamp::from_nanos(NOW + 80 * MS),
                &one,
            )
        };
        let before = r.epoch();
        refuse(before);
        assert!(r.refuses(&set, &one, Duration::ZERO).is_some());
        r.clear();
        assert_eq!(r.refuses(&set, &one, Duration::ZERO), None);
        // An answer to a call sent before the clear says nothing now.
        refuse(before);
        assert_eq!(r.refuses(&set, &one, Duration::ZERO), None);
        refuse(r.epoch());
        assert!(r.refuses(&set, &one, Duration::ZERO).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_answers_travel_time_never_shortens_the_wait() {
        let set = set(&["10/s burst 2"]);
        let one = set.costs(|_| 1.0).unwrap();
        let r = Refusals::new();
        // Redis answered 5 ms before the answer arrived: the deadline is
        // counted from the arrival.
        let epoch = r.epoch();
        tokio::time::advance(Duration::from_millis(5)).await;
        r.refused(
            epoch,
            Instant::now(),
            Timestamp::from_nanos(NOW),
            Timestamp::from_nanos(NOW + 80 * MS),
            &one,
        );
        assert_eq!(
            r.refuses(&set, &one, Duration::ZERO),
            Some(Duration::from_millis(80))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn several_limits_wait_for_the_latest() {
        let set = set(&["10/s burst 1", "1/s burst 5"]);
        let (a, b) = (set.limits[0].params, set.limits[1].params);
        let r = Refusals::new();
        r.granted(
            r.epoch(),
            Instant::now(),
            Timestamp::from_nanos(NOW),
            &[
                ticket(NOW + a.tau, a.interval),
                ticket(NOW + b.interval, b.interval),
            ],
        );
        let one = set.costs(|_| 1.0).unwrap();
        // The first limit is empty for one interval; the second has room.
        assert_eq!(
            r.refuses(&set, &one, Duration::ZERO),
            Some(Duration::from_nanos(one[0]))
        );
    }
}
