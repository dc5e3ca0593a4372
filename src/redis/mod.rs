//! A store in Redis (feature `redis`): buckets shared by every process and
//! machine that uses the same server (or [cluster](#redis-cluster)) and key
//! prefix.
//!
//! This module owns where shared bucket state lives and how it is changed:
//! [`RedisStore`] (the connection, the script, the settings),
//! [`RedisBucket`] (the bucket contract on Redis), [`RedisReservation`] and
//! [`RedisAdmission`], and [`OnStoreError`] (what happens while Redis fails).
//! The arithmetic is the local bucket's (see [`bucket`](crate::bucket)):
//! `gcra.lua` runs the same steps on the same integer nanoseconds.
//!
//! # In a registry
//!
//! A [`Registry`](crate::Registry) keeps a source's buckets here when the
//! source says so ([`Source::redis`](crate::Source::redis)) or the
//! registry does ([`RegistryBuilder::redis`](crate::RegistryBuilder::redis));
//! every adapter then admits through Redis unchanged:
//!
//! ```no_run
//! use tollgate::redis::RedisStore;
//! use tollgate::{presets, Registry, Target};
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let store = RedisStore::connect("redis://127.0.0.1/", "myapp:").await?;
//! let registry = Registry::builder()
//!     .source(presets::musicbrainz())
//!     .redis(store)
//!     .build()?;
//! let uri: http::Uri = "https://musicbrainz.org/ws/2/artist".parse().unwrap();
//! let permit = registry.acquire(&Target::from_uri(&uri), 1.0).await?; // one slot for the fleet
//! # drop(permit); Ok(()) }
//! ```
//!
//! Each bucket set of such a source (the source's own, or one per host or
//! client key: bucket `SOURCE/KEY`, with `%`, `{` and `}` in the key
//! percent-encoded) has a [`RedisBucket`] that decides every admission.
//! The set's buckets in the process stay beside it and take no tokens:
//! they hold the limits in force (after slow-downs and a server's quota,
//! which reach Redis with the next call) and the deferrals this process
//! saw. A `Retry-After` read from a response defers them at once and Redis
//! in the background, and an admission waits out a deferral this process
//! saw before it asks Redis, so the order of the two never lets a request
//! through early.
//!
//! Admission is asynchronous: [`Registry::admit`](crate::Registry::admit)
//! answers [`Admission::Wait`](crate::Admission::Wait), whose future makes
//! one script call (with [`OnLimit::Reject`](crate::OnLimit::Reject) it
//! answers after that call). The synchronous checks
//! ([`Registry::try_acquire`](crate::Registry::try_acquire),
//! [`Registry::check`](crate::Registry::check)) cannot ask Redis and refuse
//! with [`ErrorKind::AsyncOnly`](crate::ErrorKind::AsyncOnly); shadow mode and lanes
//! rest on them, so a registry refuses to build them on Redis. The
//! alternative, a blocking call inside a synchronous check, would stall an
//! async runtime's worker for a network round trip. A source's
//! `max_in_flight` counts the requests of this process.
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
//! Far ahead, times saturate on both sides of the wire: a wait longer than
//! 100 years (365.25 days each; `Duration::MAX` included) counts as 100
//! years, and no time the script stores or answers lies past 2^33 s after
//! 1970 (in the year 2242). Both are exact in the script's doubles, and
//! every such time fits a `u64` of nanoseconds. A reply whose slot still
//! cannot be read is a refusal for 100 years, never a store error.
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
//! # Redis Cluster
//!
//! [`RedisStore::cluster_builder`] connects to a Redis Cluster through the
//! URLs of some of its nodes (one is enough; more let a process start while
//! one of them is down), with the same settings as a single node:
//!
//! ```no_run
//! use tollgate::redis::RedisStore;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let store = RedisStore::cluster_builder(["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])
//!     .prefix("myapp:")
//!     .connect()
//!     .await?;
//! let api = store.bucket("api", &["100/s".parse()?, "5000/h".parse()?])?;
//! api.acquire(1.0).await?; // one script call on the master of `{api}`'s slot
//! # Ok(()) }
//! ```
//!
//! Every key of a bucket set, `PREFIX{NAME}:I` for each limit, has the
//! hash tag `{NAME}`, so the set lives in one slot and one script call
//! still takes all its limits atomically; the deferral and the horizon are
//! kept inside those keys, and the script touches no key it is not given.
//! Sets spread over the masters by name (a per-host source's sets by host).
//! redis-rs's cluster client keeps the slot map, sends each call to the
//! master of its first key's slot, and follows `MOVED` (a slot moved) and
//! `ASK` (a slot moving). A master that lacks the script (restarted, or
//! new) answers `NOSCRIPT`, and the call is sent again as `EVAL`, which
//! loads it there; `connect` loads it on every master that answers.
//!
//! Each master has its own clock: a set's slots and admissions are on its
//! master's `TIME`, which [`RedisStore::time_of`] reads. Sets on different
//! masters never compare times, so their clocks need not agree; but a set
//! whose slot moves (a failover, a resharding) is read on its new master's
//! clock, so an offset between the two shifts its schedule once by as much:
//! keep the nodes' clocks synchronised, as replication wants anyway.
//!
//! Health and fail modes are per set ([`RedisBucket`]), or per slot for a
//! registry source's sets, so the loss of one master fails only the sets in
//! its slots: they follow their [`OnStoreError`] while the sets on the
//! other masters keep deciding through Redis, and they return to Redis by
//! themselves once a master serves their slots again (a replica promoted,
//! or the master back). That needs the cluster to keep serving the slots
//! it still covers: set `cluster-require-full-coverage no` on its nodes, or
//! every master refuses every call (`CLUSTERDOWN`) once the lost one is
//! marked failed. Their errors name the slot whose master failed
//! (`CLUSTER SLOTS` says which node that is). `tests/redis_cluster.rs`
//! kills and restarts a master of a three-master cluster.
//!
//! # Refusals without a round trip
//!
//! A request that would not wait for its slot ([`OnLimit::Reject`](crate::OnLimit::Reject),
//! a wait beyond `max_wait`, [`RedisBucket::try_acquire`]) and that Redis
//! refused until slot `T` teaches the bucket: until `T`, a request of the
//! same or a greater weight (in every limit) is refused in this process,
//! with the exact remaining wait, and Redis is not asked. A grant teaches
//! it too: each limit's theoretical arrival time after it, below which
//! Redis's never falls, so once a grant empties the bucket the next
//! request is refused here until the next token. Requests that would wait
//! for their slot still ask Redis, once: a waiter sleeps until the slot
//! Redis gave on its local timer and is not asked again.
//!
//! Redis's `TIME` stays the reference: a slot read with Redis's now `N`
//! becomes the local deadline `L + (T - N)`, `L` the local time the answer
//! arrived, so clocks need not agree; the answer's travel time makes a
//! local refusal last at most one trip longer than Redis's own.
//!
//! This is stricter, never looser: what is known only ever refuses, and
//! past the slot Redis decides again. What this process does that could
//! admit a request sooner forgets it at once: a deferral (`defer_for`, a
//! `Retry-After` seen by a registry), a policy change
//! ([`set_policies`](RedisBucket::set_policies), a registry's `set_limits`,
//! `set_policy`, `slow_down` or a server's quota), and a refund (a
//! reservation cancelled or dropped before its slot); answers to calls sent
//! before it are not kept. What other processes do cannot be seen: a
//! refund or a faster policy elsewhere, or Redis coming back empty after a
//! restart, lets requests through sooner than this process knows, and
//! until the slot it knew they are refused here (the same holds while the
//! bucket is on its [`OnStoreError`] fallback).
//!
//! `tests/redis_refusal_cache.rs` measures it: 100,000 requests on one key
//! from 16 tasks through the server's `GuardLayer` at "20/s burst 5" make
//! 46 to 48 script calls (under 0.0005 per refused request, against 1.004
//! before), with [coalesced takes](#coalesced-takes) gathering the
//! requests that reach Redis together; the upstream sees at most the
//! window bound.
//!
//! # Coalesced takes
//!
//! Takes of one bucket set that arrive in this process while a call for it
//! is on the way to Redis wait, in their order, and go together in the next
//! call: one script call serves each exactly as it would have been served
//! alone at that call's now (its own slot in FIFO order, or a refusal
//! beyond its longest wait that takes nothing), so coalescing changes the
//! number of round trips and nothing else. The window bound, the FIFO
//! order and refunds (the last reservation gives back) are those of one by
//! one; a take that went away while it waited takes nothing (it is left
//! out of the call, or gives back what the call granted it). Takes at the head of a batch that the answer to the call on
//! the way proves refused are refused here (see above) and stay out of
//! the batch's call. With nothing on the way, a take calls at once, alone.
//! A waiting take waits for the call on the way and its own (each bounded
//! by the [`timeout`](RedisStoreBuilder::timeout)); takes costed under
//! policies since changed go in a call of their own.
//! `tests/redis_coalesce.rs` checks the slots against GCRA one by one on
//! random arrivals. The task that sends the waiting takes lets the takes it
//! has just answered run before it cuts the next batch, so a caller that
//! comes straight back for its next slot joins the coming call instead of
//! the one after it: at 8 tasks a call carries 7 to 8 takes rather than 4
//! to 5 (BENCHMARKS.md, "The Redis store").
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
//! # Around an outage, on a local fallback
//!
//! With [`OnStoreError::Local`] each process admits from buckets of its
//! own while Redis fails: the burst, and the rate divided by `divide_by`.
//! What a fallback admits is owed to Redis: the first call that reaches
//! Redis again (one per bucket) charges it, as if it had been taken when
//! the process's first local admission was, so the quota Redis left unused
//! since then pays for it first, and nothing is refused for it. Until it
//! is charged, a bucket set that owes Redis, or whose fallback is not full,
//! is never swept away as idle.
//!
//! So `k` processes with `divide_by: k`, sharing a quota of burst `c` and
//! rate `r`, admit together:
//!
//! - over any stretch that starts before the outage and ends after every
//!   process has reached Redis again and asked it once more: at most the
//!   quota, `c + r·W`, if Redis kept its state, and one burst more,
//!   `2c + r·W`, if it came back empty (a restart without persistence);
//! - in a shorter window: at most `(k + 2)·c + r·W` (each fallback starts
//!   full, and Redis may hold a full burst on either side of the outage),
//!   plus `r/k` times the time each process stays on its fallback after
//!   Redis answers again (at most [`probe_every`](RedisStoreBuilder::probe_every)
//!   and one [`timeout`](RedisStoreBuilder::timeout)).
//!
//! `tests/redis_outage.rs` measures it with two processes, Redis killed
//! and restarted empty: 102 to 104 admitted in 5.2 s at "20/s burst 5",
//! against the bound of 114 (the quota is 109); before the charge, 124.

mod batch;
mod bucket;
mod builder;
mod connection;
mod fallback;
mod refusals;
mod reservation;
mod script;
mod store;
mod take;

pub use bucket::RedisBucket;
pub use builder::{RedisStoreBuilder, DEFAULT_PREFIX, DEFAULT_PROBE_EVERY, DEFAULT_TIMEOUT};
pub use fallback::OnStoreError;
pub use reservation::{RedisAdmission, RedisReservation};
pub use store::RedisStore;
pub(crate) use store::SourceStore;
