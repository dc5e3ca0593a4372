//! [`Registry::snapshot`]: per source and host, the limits in force, tokens
//! available, a server's deferral and rate, and requests in flight.

use std::time::Duration;

use super::buckets::Buckets;
use super::{Registry, Scope};
use crate::clock::{Clock, Timestamp};
use crate::Policy;

impl Registry {
    /// Per source and per host: limits, tokens available, deferral, in flight.
    pub fn snapshot(&self) -> Vec<SourceSnapshot> {
        let now = self.inner.clock.now();
        self.inner
            .sources
            .iter()
            .map(|state| {
                // Copied out, so the host table is read with no lock held.
                let config = state.context.config().clone();
                let mut buckets = vec![bucket_snapshot(&state.shared, now)];
                if let Some(table) = &state.hosts {
                    table.for_each(|b| buckets.push(bucket_snapshot(b, now)));
                }
                SourceSnapshot {
                    name: state.name().to_string(),
                    scope: state.scope,
                    configured: config.configured.clone(),
                    limits: config.effective().to_vec(),
                    max_hosts: state.hosts.as_ref().map(|t| t.capacity()),
                    in_redis: state.shared.is_remote(),
                    buckets,
                }
            })
            .collect()
    }
}

fn bucket_snapshot(b: &Buckets, now: Timestamp) -> BucketSnapshot {
    let deferred = b.deferred_until();
    let server_rate = b.server_rate();
    BucketSnapshot {
        host: b.host.as_deref().map(str::to_string),
        limits: b.policies(),
        available: b.available(),
        ready_in: b.next_available().saturating_duration_since(now),
        deferred_for: (deferred > now).then(|| deferred.saturating_duration_since(now)),
        server_rate: server_rate.is_finite().then_some(server_rate),
        in_flight: b.in_flight(),
        learned: b.learned(now),
    }
}

/// One source in a [`Registry::snapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SourceSnapshot {
    /// The source's name.
    pub name: String,
    /// One bucket set for the source, or one per host.
    pub scope: Scope,
    /// The limits as configured.
    pub configured: Vec<Policy>,
    /// The limits in force (after any slow-down).
    pub limits: Vec<Policy>,
    /// For a per-host source, how many hosts it keeps at most.
    pub max_hosts: Option<usize>,
    /// Whether Redis keeps the source's buckets (`Source::redis`, feature
    /// `redis`). Its bucket sets below then show this process's view: the
    /// limits in force and the deferrals this process saw, with every
    /// token available; ask Redis with `SourceHandle::redis_bucket`.
    pub in_redis: bool,
    /// The source-wide set first (host `None`), then one per host.
    pub buckets: Vec<BucketSnapshot>,
}

/// One bucket set in a [`SourceSnapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BucketSnapshot {
    /// The host, for a per-host set.
    pub host: Option<String>,
    /// The limits in force for this set (after slow-down and server hints).
    pub limits: Vec<Policy>,
    /// Tokens available now in the tightest limit.
    pub available: f64,
    /// How long until a one-token request could go (zero: now); a server's
    /// deferral shows here.
    pub ready_in: Duration,
    /// How much longer a server's deferral (`Retry-After`, or an exhausted
    /// quota until its reset) lasts, if one is in force.
    pub deferred_for: Option<Duration>,
    /// The rate a server announced for this set, if it did.
    pub server_rate: Option<f64>,
    /// Requests admitted and not yet answered (with `max_in_flight`).
    pub in_flight: usize,
    /// What a learning set learned ([`Source::learn`](crate::Source::learn)):
    /// each limit and where it came from; empty for a set that does not
    /// learn or learned nothing. Its limits are also among
    /// [`limits`](Self::limits), after the configured ones (unlimited where
    /// nothing is learned).
    pub learned: Vec<crate::learn::LearnedLimit>,
}
