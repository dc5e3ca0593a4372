//! The per-host bucket sets of a [`Scope::PerHost`](crate::Scope::PerHost)
//! source, with bounded memory.
//!
//! A full, idle bucket set is the same as a fresh one, so it can be dropped
//! and made again on the next request. When the table reaches its capacity,
//! a sweep drops every such set (at most once per [`SWEEP_EVERY`], so a
//! flood cannot turn every request into a sweep). If the table is still full
//! of busy sets, a new host shares the source's overflow set: stricter for
//! that host, never looser, and memory stays under the cap.
//!
//! Nothing but the map itself is touched under the table's write lock: no
//! other lock, no clock, no closure. The set to insert is made before the
//! lock is taken, and the time a sweep judges idleness by is read before it
//! too (see the lock order in [`registry`](super)).

use std::time::Duration;

use super::buckets::Buckets;
use super::rules::HostMap;
use crate::clock::Timestamp;
use crate::sync::{Arc, AtomicU64, Ordering, RwLock};

/// The least time between two sweeps of a full table.
pub const SWEEP_EVERY: Duration = Duration::from_millis(10);

/// How many per-host bucket sets a per-host source keeps by default.
pub const DEFAULT_MAX_HOSTS: usize = 10_000;

pub(crate) struct HostTable {
    map: RwLock<HostMap<Arc<Buckets>>>,
    cap: usize,
    next_sweep: AtomicU64,
}

impl HostTable {
    pub(super) fn new(cap: usize) -> Self {
        HostTable {
            map: RwLock::new(HostMap::default()),
            cap,
            next_sweep: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(super) fn get(&self, host: &str) -> Option<Arc<Buckets>> {
        self.map.read().get(host).cloned()
    }

    /// Runs `f` on the set for `host` under the read lock, without cloning it.
    #[inline]
    pub(super) fn with<R>(&self, host: &str, f: impl FnOnce(&Buckets) -> R) -> Option<R> {
        self.map.read().get(host).map(|b| f(b))
    }

    /// Whether a new host could get a set at `now`: there is room, or a
    /// sweep may make some. Lets a caller skip making a set that could not
    /// be kept.
    pub(super) fn has_room(&self, now: Timestamp) -> bool {
        self.len() < self.cap || now.as_nanos() >= self.next_sweep.load(Ordering::Relaxed)
    }

    /// The set for `host`: the one in the table, else `made` (inserted);
    /// `None` when the table is full of busy sets. `now` was read before.
    pub(super) fn insert(
        &self,
        host: &str,
        now: Timestamp,
        made: Arc<Buckets>,
    ) -> Option<Arc<Buckets>> {
        // The timer of Redis fallbacks, read before the lock as `now` was.
        let timer = tokio::time::Instant::now();
        let mut map = self.map.write();
        if let Some(b) = map.get(host) {
            return Some(b.clone());
        }
        if map.len() >= self.cap {
            let next = self.next_sweep.load(Ordering::Relaxed);
            if now.as_nanos() < next {
                return None;
            }
            let before = map.len();
            map.retain(|_, b| Arc::strong_count(b) > 1 || !b.is_idle_at(now, timer));
            tracing::debug!(
                evicted = before - map.len(),
                kept = map.len(),
                "swept idle per-host buckets"
            );
            self.next_sweep
                .store((now + SWEEP_EVERY).as_nanos(), Ordering::Relaxed);
            if map.len() >= self.cap {
                return None;
            }
        }
        map.insert(host.into(), made.clone());
        Some(made)
    }

    pub(super) fn len(&self) -> usize {
        self.map.read().len()
    }

    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    /// Every set, under the read lock: new sets wait until `f` has run on all.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Buckets)) {
        let map = self.map.read();
        map.values().for_each(|b| f(b));
    }
}
