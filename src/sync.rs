//! The synchronisation primitives the crate's shared state is made of:
//! std's in every build, loom's in the crate's own tests under
//! `--cfg tollgate_loom`, so that the loom models explore the very code that
//! ships. (Only the lib's test build can see loom, a dev-dependency.) The
//! shape is tokio's `loom/` module: code names `crate::sync::Mutex`, never
//! `std::sync::Mutex`, and the model build swaps what it gets.
//!
//! # What lives where
//!
//! | item | std build | loom build | used by |
//! |---|---|---|---|
//! | [`Mutex`] | a `std::sync::Mutex` whose `lock()` returns the guard | loom's | the bucket's policy, a set's learning state and the source's configuration (`registry/buckets.rs`), the lane queues (`registry/lanes.rs`), the Redis fallback's debt and last error, a Redis bucket's waiting takes (`redis/batch.rs`) and known refusals (`redis/refusals.rs`), a cluster store's health per slot, the retry budget |
//! | [`RwLock`] | a `std::sync::RwLock` whose `read()` / `write()` return the guard | loom's | the per-host table (`registry/hosts.rs`), the Redis limit set and fallback buckets |
//! | [`Arc`] | `std::sync::Arc` | loom's | shared state whose count means something: a bucket set (a sweep keeps a set someone holds), a source's context, the registry's shared state, the Redis fallback's debt |
//! | atomics, [`fence`], [`spin_loop`] | std's | loom's | the bucket's `tat` and seqlock, a set's server rate and strikes, the configuration version, the sweep's next time, the fallback's health |
//!
//! The locks do not poison: a panic elsewhere leaves the state under them
//! whole between statements (no invariant spans two statements under a
//! lock), so the next `lock()` carries on with it rather than every later
//! caller panicking in turn. That was an `unwrap_or_else(|e| e.into_inner())`
//! at every call; it is written once here.
//!
//! Left on std's on purpose:
//! * `Arc<str>` and `Arc<[T]>`, immutable values shared by reference
//!   (loom's `Arc` cannot hold an unsized value), and the `Arc`s of
//!   immutable settings (signals, retry rules, server tiers, errors);
//! * the `Arc<Semaphore>` of `max_in_flight`: tokio's owned permits take
//!   std's;
//! * the clock's atomics, `Mutex` and `Condvar` (`clock.rs`): they park real
//!   threads in `acquire_blocking` and `ManualClock`, and a model's clock
//!   stands still and never sleeps;
//! * the meters' counters (`registry/meters.rs`): statistics that nothing
//!   decides by, which would only multiply a model's interleavings.
//!
//! The models: `bucket/loom_model.rs` (the bucket) and
//! `registry/loom_model/` (the lane queues and the per-host table).

#[cfg(not(all(test, tollgate_loom)))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(all(test, tollgate_loom)))]
use std::sync as inner;
#[cfg(not(all(test, tollgate_loom)))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(not(all(test, tollgate_loom)))]
pub(crate) use std::sync::Arc;

// A loom spin yields to the scheduler; std's would spin the model forever.
#[cfg(all(test, tollgate_loom))]
pub(crate) use loom::hint::spin_loop;
#[cfg(all(test, tollgate_loom))]
use loom::sync as inner;
#[cfg(all(test, tollgate_loom))]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(all(test, tollgate_loom))]
pub(crate) use loom::sync::Arc;

use std::fmt;

/// The guard of a [`Mutex`].
pub(crate) type MutexGuard<'a, T> = inner::MutexGuard<'a, T>;
/// The shared guard of a [`RwLock`].
pub(crate) type RwLockReadGuard<'a, T> = inner::RwLockReadGuard<'a, T>;
/// The exclusive guard of a [`RwLock`].
pub(crate) type RwLockWriteGuard<'a, T> = inner::RwLockWriteGuard<'a, T>;

/// A mutex that does not poison: see the [module docs](self).
pub(crate) struct Mutex<T: ?Sized>(inner::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(inner::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, carrying on after a panic under the lock.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(not(all(test, tollgate_loom)))]
        return self.0.fmt(f);
        // loom's locks have no `Debug`.
        #[cfg(all(test, tollgate_loom))]
        return f.debug_struct("Mutex").finish_non_exhaustive();
    }
}

/// A readers-writer lock that does not poison: see the [module docs](self).
pub(crate) struct RwLock<T: ?Sized>(inner::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        RwLock(inner::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, carrying on after a panic under the lock.
    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks for writing, carrying on after a panic under the lock.
    #[inline]
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(not(all(test, tollgate_loom)))]
        return self.0.fmt(f);
        // loom's locks have no `Debug`.
        #[cfg(all(test, tollgate_loom))]
        return f.debug_struct("RwLock").finish_non_exhaustive();
    }
}

/// Runs the loom model `f` in every interleaving, preemptions bounded (2
/// unless `LOOM_MAX_PREEMPTIONS` says otherwise) so that every model ends
/// in minutes, and says how many interleavings it ran.
#[cfg(all(test, tollgate_loom))]
pub(crate) fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = runs.clone();
    let started = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!(
        "loom {name}: {} interleavings, preemption bound {:?}, {:.1} s",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound,
        started.elapsed().as_secs_f64()
    );
}
