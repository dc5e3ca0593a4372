//! A store in Redis (feature `redis`): buckets shared by every process and
//! machine that uses the same server and key prefix.
//!
//! This module owns where shared bucket state lives and how it is changed:
//! [`RedisStore`] (the connection, the script, the settings),
//! [`RedisBucket`] (the bucket contract on Redis), [`RedisReservation`] and
//! [`Admission`], and [`OnStoreError`] (what happens while Redis fails).
//! The arithmetic is the local bucket's (see [`bucket`](crate::bucket)):
//! `gcra.lua` runs the same steps on the same integer nanoseconds.
//! A [`Registry`](crate::Registry) keeps its buckets in this process; use a
//! [`RedisBucket`] where a limit must be shared between processes.
//!
//! ```no_run
//! use std::time::Duration;
//! use tollgate::redis::RedisStore;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let store = RedisStore::connect("redis://127.0.0.1/", "myapp:").await?;
//! let mb = store.bucket("musicbrainz", &["1/s".parse()?])?;
//! mb.acquire(1.0).await?;                           // waits for the shared slot
//! let r = mb.reserve(1.0, Duration::from_secs(2)).await?;
//! println!("slot {:?}, {:?} from now", r.ready_at(), r.delay());
//! r.wait().await;
//! mb.defer_for(Duration::from_secs(30)).await?;     // a Retry-After for everyone
//! # Ok(()) }
//! ```
//!
//! # What is stored
//!
//! Each limit of a bucket named `NAME` is one string key
//! `PREFIX{NAME}:I` (`I` the limit's position). The braces are a hash tag:
//! all of a bucket's keys share one cluster slot, so one script can take
//! from all of them atomically. The value holds the theoretical arrival
//! time, the deferral floor, a policy version (bumped by each policy
//! change, so a reservation made before it gives nothing back, as in the
//! local bucket) and the params the state was computed under. A key
//! expires when the bucket would be full again, and never before a
//! deferral ends: a missing key is a full bucket, so nothing is lost.
//!
//! # One script, Redis's clock
//!
//! Every operation is one `EVALSHA` of `gcra.lua` (loaded when the store
//! connects, and again whenever Redis answers `NOSCRIPT`, for example after
//! a restart). The script reads Redis's `TIME`, never a client's clock, and
//! answers with the slot and that `TIME`; a waiter sleeps for the
//! difference on its local tokio timer. So clients whose clocks disagree
//! with Redis, or with each other, still share one schedule. A refused
//! call writes nothing. Redis 7.0 is enough (no module, no native GCRA
//! command).
//!
//! Several limits of one bucket are taken in the one call: the request
//! waits for the latest slot among them and takes from every limit at that
//! slot, or from none.
//!
//! # When Redis fails
//!
//! Every call waits at most the store's
//! [`timeout`](RedisStoreBuilder::timeout) (250 ms by default), so a dead
//! Redis never hangs a request. On an error or a timeout the bucket
//! switches to its [`OnStoreError`] (fail open, fail closed, or a local
//! bucket with the rate divided by the expected number of processes),
//! logs a warning, and asks Redis again at most every
//! [`probe_every`](RedisStoreBuilder::probe_every); the first answer
//! switches it back. The connection reconnects by itself.
//!
//! While on a local fallback each process admits on its own share; tokens
//! taken locally are not written to Redis, so around an outage the
//! processes together can briefly exceed the shared quota by up to one
//! burst each.

mod bucket;
mod fallback;
mod reservation;
mod script;
mod store;

pub use bucket::RedisBucket;
pub use fallback::OnStoreError;
pub use reservation::{Admission, RedisReservation};
pub use store::{
    RedisStore, RedisStoreBuilder, DEFAULT_PREFIX, DEFAULT_PROBE_EVERY, DEFAULT_TIMEOUT,
};
