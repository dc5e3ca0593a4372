//! [`RedisReservation`]: tokens taken for a slot on Redis's clock, waited
//! for on the local timer; and [`RedisAdmission`], what an admitted request
//! learns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::Connection;
use super::fallback::LocalTaken;
use super::refusals::Refusals;
use super::script::{self, LimitSet, Op, RemoteTicket};
use crate::clock::Timestamp;
use crate::Error;

/// An admitted request: when it was admitted, on Redis's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisAdmission {
    at: Option<Timestamp>,
}

impl RedisAdmission {
    /// The slot on Redis's clock (nanoseconds since the Unix epoch, as
    /// [`RedisStore::time`](super::RedisStore::time) reads it); `None` when
    /// Redis had failed and the bucket's fallback admitted the request.
    pub fn at(&self) -> Option<Timestamp> {
        self.at
    }

    /// Whether Redis admitted it (rather than a fallback).
    pub fn by_redis(&self) -> bool {
        self.at.is_some()
    }
}

/// Tokens taken from a [`RedisBucket`](super::RedisBucket) for a slot,
/// maybe in the future.
///
/// Keep the tokens by [`wait`](Self::wait)ing for the slot or by
/// [`commit`](Self::commit)ting. Dropping it before its slot gives them
/// back (in a task on the current tokio runtime) when no reservation was
/// made after it; [`cancel`](Self::cancel) does the same and reports it.
#[must_use = "a reservation dropped before its slot gives its tokens back: `.wait().await` for the slot, or `.commit()` to keep them"]
pub struct RedisReservation {
    /// The bucket's name.
    bucket: Arc<str>,
    kind: Kind,
    /// The slot on the local tokio timer.
    deadline: Instant,
    armed: bool,
}

enum Kind {
    /// Taken in Redis.
    Remote {
        store: Arc<Connection>,
        set: Arc<LimitSet>,
        refusals: Arc<Refusals>,
        issued: Timestamp,
        slot: Timestamp,
        tickets: Vec<RemoteTicket>,
    },
    /// Taken from the local fallback while Redis failed.
    Local(LocalTaken),
    /// Admitted without a limit while Redis failed (failing open).
    Open,
}

impl RedisReservation {
    pub(super) fn remote(
        store: Arc<Connection>,
        bucket: Arc<str>,
        set: Arc<LimitSet>,
        refusals: Arc<Refusals>,
        issued: Timestamp,
        slot: Timestamp,
        tickets: Vec<RemoteTicket>,
    ) -> Self {
        // Redis's difference, on this machine's timer: the reply's travel
        // time only makes the wait longer, never shorter.
        let deadline = Instant::now() + slot.saturating_duration_since(issued);
        RedisReservation {
            bucket,
            kind: Kind::Remote {
                store,
                set,
                refusals,
                issued,
                slot,
                tickets,
            },
            deadline,
            armed: true,
        }
    }

    pub(super) fn local(bucket: Arc<str>, taken: LocalTaken) -> Self {
        let deadline = taken.deadline;
        RedisReservation {
            bucket,
            kind: Kind::Local(taken),
            deadline,
            armed: true,
        }
    }

    pub(super) fn open(bucket: Arc<str>) -> Self {
        RedisReservation {
            bucket,
            kind: Kind::Open,
            deadline: Instant::now(),
            armed: false,
        }
    }

    /// The slot on Redis's clock; `None` when a fallback took it.
    pub fn ready_at(&self) -> Option<Timestamp> {
        match &self.kind {
            Kind::Remote { slot, .. } => Some(*slot),
            _ => None,
        }
    }

    /// Redis's `TIME` when the reservation was taken; `None` when a
    /// fallback took it.
    pub fn issued_at(&self) -> Option<Timestamp> {
        match &self.kind {
            Kind::Remote { issued, .. } => Some(*issued),
            _ => None,
        }
    }

    /// The slot on the local tokio timer.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How long from now until the slot (zero if it has come).
    pub fn delay(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Tokens left in the tightest limit at the slot once this reservation
    /// is taken: what a server answers as its remaining quota. Infinite
    /// when no limit applies (unlimited, or failing open); from the local
    /// fallback's buckets when the fallback took it.
    pub fn remaining(&self) -> f64 {
        match &self.kind {
            Kind::Remote {
                set, slot, tickets, ..
            } => set
                .limits
                .iter()
                .zip(tickets)
                .map(|(l, t)| {
                    let p = &l.params;
                    if p.is_unlimited() {
                        return f64::INFINITY;
                    }
                    let room = (slot.as_nanos() + p.tau).saturating_sub(t.tat_after);
                    (room as f64 / p.interval as f64).min(p.capacity)
                })
                .fold(f64::INFINITY, f64::min),
            Kind::Local(taken) => taken.available(),
            Kind::Open => f64::INFINITY,
        }
    }

    fn admission(&self) -> RedisAdmission {
        RedisAdmission {
            at: self.ready_at(),
        }
    }

    /// Sleeps until the slot and keeps the tokens. If this future is
    /// dropped before the slot, the tokens are given back.
    pub async fn wait(mut self) -> RedisAdmission {
        if Instant::now() < self.deadline {
            tokio::time::sleep_until(self.deadline).await;
        }
        self.armed = false;
        self.admission()
    }

    /// Keeps the tokens without waiting: the caller promises to send no
    /// earlier than the slot.
    pub fn commit(mut self) -> RedisAdmission {
        self.armed = false;
        self.admission()
    }

    /// Gives the tokens back now, returning how many came back: all of
    /// them if nothing was taken after this one (in every limit: every
    /// limit gives back, or none does; with priced limits, the fewest
    /// tokens any gave back), none once the slot has come, or after a
    /// deferral or policy change.
    ///
    /// Errors: [`ErrorKind::Store`](crate::ErrorKind::Store) when Redis
    /// cannot be reached (the tokens then stay taken: stricter, never
    /// looser).
    pub async fn cancel(mut self) -> Result<f64, Error> {
        self.armed = false;
        match &self.kind {
            Kind::Remote {
                store,
                set,
                refusals,
                slot,
                tickets,
                ..
            } => refund(store, set, refusals, *slot, tickets).await,
            Kind::Local(taken) => Ok(taken.cancel()),
            Kind::Open => Ok(0.0),
        }
    }
}

/// Gives back what `tickets` may give back. The refusals this process
/// knows may end earlier once it has: they are forgotten before the call,
/// and again after it (answers to calls sent meanwhile are not kept).
async fn refund(
    store: &Connection,
    set: &LimitSet,
    refusals: &Refusals,
    slot: Timestamp,
    tickets: &[RemoteTicket],
) -> Result<f64, Error> {
    let op = Op::Refund {
        slot: slot.as_nanos(),
        tickets,
    };
    refusals.clear();
    let reply = store.eval(&set.keys, &set.limits, &op).await;
    refusals.clear();
    let reply = reply?;
    let back = script::refunded(&reply)?;
    if back.is_empty() {
        return Ok(0.0);
    }
    // All limits that took tokens gave them back, or none did; the fewest
    // any gave back (priced limits weigh differently) is what came back.
    let given = back
        .iter()
        .zip(tickets)
        .enumerate()
        .filter(|(_, (_, t))| t.cost > 0)
        .map(|(i, (&back, t))| if back { set.tokens(i, t.cost) } else { 0.0 })
        .fold(f64::INFINITY, f64::min);
    Ok(if given.is_finite() { given } else { 0.0 })
}

impl Drop for RedisReservation {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match std::mem::replace(&mut self.kind, Kind::Open) {
            Kind::Remote {
                store,
                set,
                refusals,
                slot,
                tickets,
                ..
            } => {
                if Instant::now() >= self.deadline {
                    return; // its slot has come: nothing to give back
                }
                refusals.clear();
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return; // no runtime to ask Redis from: the tokens stay taken
                };
                let bucket = self.bucket.clone();
                runtime.spawn(async move {
                    if let Err(e) = refund(&store, &set, &refusals, slot, &tickets).await {
                        tracing::debug!(bucket = &*bucket, error = %e, "could not give tokens back");
                    }
                });
            }
            Kind::Local(taken) => {
                taken.cancel();
            }
            Kind::Open => {}
        }
    }
}

impl fmt::Debug for RedisReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReservation")
            .field("bucket", &self.bucket)
            .field("ready_at", &self.ready_at())
            .field("issued_at", &self.issued_at())
            .field("delay", &self.delay())
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}
