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
//! The table is split in [`SHARDS`] maps, each behind its own lock on its
//! own cache line, chosen by a hash of the host: requests for different
//! hosts from different threads then rarely touch the same lock word, which
//! a single read-write lock made every reader write. The count of sets is
//! one atomic, so the cap holds across shards.
//!
//! Under a shard's write lock only its map is touched, and, in a sweep, each
//! set's idleness is judged: atomics, and a learning set's state as the last
//! lock taken. No clock is read and no caller's closure runs there: the
//! set to insert is made before the lock is taken, and the time a sweep
//! judges idleness by is read before it too. A sweep takes the shards'
//! write locks one at a time; a visit of every set
//! ([`HostTable::for_each`]) takes their read locks in shard order and holds
//! them all, so that no set is inserted while it runs (see the lock order in
//! [`registry`](super)).

use std::time::Duration;

use super::buckets::Buckets;
use super::hostkey::{HostHasher, HostKey, HostMap, Probe};
use crate::clock::Timestamp;
use crate::sync::{Arc, AtomicU64, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The least time between two sweeps of a full table.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(10);

/// How many per-host bucket sets a per-host source keeps by default.
pub const DEFAULT_MAX_HOSTS: usize = 10_000;

/// How many maps a host table is split in (a power of two).
const SHARDS: usize = 16;

/// One map and its lock, alone on a cache line.
#[repr(align(64))]
struct Shard(RwLock<HostMap<Arc<Buckets>>>);

impl Shard {
    #[inline]
    fn read(&self) -> RwLockReadGuard<'_, HostMap<Arc<Buckets>>> {
        self.0.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, HostMap<Arc<Buckets>>> {
        self.0.write()
    }
}

pub(crate) struct HostTable {
    shards: Box<[Shard]>,
    /// Hashes a host once, for its shard and its slot in the shard's map
    /// (seeded; every shard's map hashes with it).
    hasher: HostHasher,
    /// Sets in all shards together: never above `cap`.
    len: AtomicU64,
    cap: usize,
    next_sweep: AtomicU64,
}

impl HostTable {
    pub(super) fn new(cap: usize) -> Self {
        let hasher = HostHasher::default();
        HostTable {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HostMap::with_hasher(hasher.clone()))))
                .collect(),
            hasher,
            len: AtomicU64::new(0),
            cap,
            next_sweep: AtomicU64::new(0),
        }
    }

    /// `host`, hashed once for its shard and its map.
    #[inline]
    fn probe<'a>(&self, host: &'a str) -> (&Shard, Probe<'a>) {
        let probe = Probe::new(host, &self.hasher);
        // Bits the maps use for neither the slot (the low ones) nor the
        // tag they keep per slot (the top seven).
        let shard = &self.shards[(probe.hash() >> 40) as usize % SHARDS];
        (shard, probe)
    }

    #[inline]
    pub(super) fn get(&self, host: &str) -> Option<Arc<Buckets>> {
        let (shard, probe) = self.probe(host);
        shard.read().get(&probe).cloned()
    }

    /// Runs `f` on the set for `host` under its shard's read lock, without
    /// cloning it.
    #[inline]
    pub(super) fn with<R>(&self, host: &str, f: impl FnOnce(&Buckets) -> R) -> Option<R> {
        let (shard, probe) = self.probe(host);
        shard.read().get(&probe).map(|b| f(b))
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
        // The timer of Redis fallbacks, read before any lock as `now` was.
        let timer = tokio::time::Instant::now();
        let (shard, probe) = self.probe(host);
        if let Some(set) = self.insert_into(shard, &probe, host, &made) {
            return Some(set);
        }
        // Full: sweep, at most once per SWEEP_EVERY, then try once more.
        let next = self.next_sweep.load(Ordering::Relaxed);
        if now.as_nanos() < next {
            return None;
        }
        self.next_sweep
            .store((now + SWEEP_EVERY).as_nanos(), Ordering::Relaxed);
        let (mut evicted, mut kept) = (0, 0);
        for s in self.shards.iter() {
            let mut map = s.write();
            let before = map.len();
            map.retain(|b| Arc::strong_count(b) > 1 || !b.is_idle_at(now, timer));
            evicted += before - map.len();
            kept += map.len();
            self.len
                .fetch_sub((before - map.len()) as u64, Ordering::Relaxed);
        }
        // Logged once every shard's lock is released.
        tracing::debug!(evicted, kept, "swept idle per-host buckets");
        self.insert_into(shard, &probe, host, &made)
    }

    /// Under `shard`'s write lock: the set already there, or `made` if the
    /// table has room; `None` when it is full.
    fn insert_into(
        &self,
        shard: &Shard,
        probe: &Probe<'_>,
        host: &str,
        made: &Arc<Buckets>,
    ) -> Option<Arc<Buckets>> {
        let mut map = shard.write();
        if let Some(b) = map.get(probe) {
            return Some(b.clone());
        }
        // Counted only while below the cap, so the count never reads above it.
        let cap = self.cap as u64;
        let counted = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            });
        if counted.is_err() {
            return None;
        }
        map.insert_new(probe, HostKey::from(host), made.clone());
        Some(made.clone())
    }

    pub(super) fn len(&self) -> usize {
        // At most `cap`, a `usize`.
        self.len.load(Ordering::Relaxed) as usize
    }

    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    /// Every set, under every shard's read lock (taken in shard order and
    /// held together): new sets wait until `f` has run on all.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Buckets)) {
        let maps: Vec<_> = self.shards.iter().map(Shard::read).collect();
        for map in &maps {
            map.values().for_each(|b| f(b));
        }
    }
}
