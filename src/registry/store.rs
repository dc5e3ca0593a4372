//! The store seam: where a bucket set keeps its state, chosen when the set
//! is made, behind one small set of operations that every set answers
//! alike. The registry, the [`Acquire`](super::Acquire) future and the
//! adapters ask the set ([`Buckets::is_remote`](super::buckets::Buckets),
//! its store's [`admission`](SetStore::admission)), never which store it
//! has.
//!
//! | operation | in process | in Redis (feature `redis`) |
//! |---|---|---|
//! | `SetStore::new` | nothing kept | the set's [`RedisBucket`](crate::redis::RedisBucket) |
//! | `is_shared` | `false`: the set's own buckets decide, synchronously | `true`: only an asynchronous call admits |
//! | `admission` | `None` | one script call, then the sleep to the slot |
//! | `defer` | nothing to tell | the deferral, in a task |
//! | `set_limits` | nothing to tell | the new limits, in a task |
//! | `is_idle_at` | `true` | the fallback is full and owes Redis nothing |
//!
//! `store/local.rs` and `store/redis.rs` implement the same items; the
//! feature picks one here, and nowhere else in the registry. With the
//! in-process one every operation is a constant the compiler removes.
//! The registry's Redis methods (`Source::redis`, `RegistryBuilder::redis`,
//! `SourceHandle::redis_bucket`, ...) live in `store/redis.rs`, beside the
//! choice they make.

#[cfg(feature = "redis")]
#[path = "store/redis.rs"]
mod imp;

#[cfg(not(feature = "redis"))]
#[path = "store/local.rs"]
mod imp;

pub(crate) use imp::{Choice, RegistryStore, SetStore, SourceStore, Wait};
