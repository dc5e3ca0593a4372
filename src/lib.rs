//! # tollgate
//!
//! Keeps HTTP clients inside the rate limits of the APIs they call.
//!
//! The core is [`TokenBucket`], an exact token bucket (GCRA in one atomic)
//! with fractional and weighted tokens and non-blocking, async, blocking and
//! reserved acquisition. Its promise, proved by tests: in any window of
//! length `W` it admits at most `capacity + rate·W` tokens.
//!
//! ```
//! use tollgate::{Policy, TokenBucket};
//!
//! let bucket = TokenBucket::new("3/s burst 3".parse::<Policy>()?);
//! bucket.try_acquire(1.0)?;
//! bucket.acquire_blocking(0.5)?;
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`policy`] | [`Policy`]: capacity and rate, parsing, validation |
//! | [`bucket`] | [`TokenBucket`], [`Reservation`]: admission and refunds |
//! | [`clock`] | [`Clock`]: reading the time and sleeping on the same timeline |
//! | [`signal`] | [`Signal`], [`SignalConfig`]: what servers say in status and headers |
//! | [`error`] | [`Error`], [`RateLimited`] |
//! | [`learn`] | learning the limits of hosts nobody configured: announced quotas, probes, the adaptive controller |
//! | [`retry`] | which failures the retry adapters repeat, and the [`retry::RetryBudget`] |
//! | `redis` (feature `redis`) | `RedisStore`, `RedisBucket`: buckets shared through Redis |
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tower` | yes | the tower layer and retry policy |
//! | `reqwest` | no | middleware for reqwest-middleware and reqwest-retry |
//! | `redis` | no | `tollgate::redis`: buckets in Redis, shared between processes and machines |
//! | `server` | no | [`server::GuardLayer`]: per-key limits and 429s for tower and axum servers |
//! | `stream` | no | [`stream::RateLimitExt`]: run a stream of futures at a rate, `n` at once |
//! | `serde` | no | serde for [`Policy`], registry configuration from TOML |
//! | `metrics` | no | per-source counters, histograms and a gauge through the `metrics` facade |
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(doctest, feature = "reqwest", feature = "server", feature = "stream"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod backoff;
pub mod bucket;
pub mod clock;
pub mod error;
pub mod learn;
pub mod policy;
pub mod presets;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod registry;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod retry;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod signal;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub mod stream;
mod sync;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use bucket::{Reservation, TokenBucket};
pub use clock::{
    Clock, FastClock, ManualClock, MonotonicClock, SharedClock, Timestamp, TokioClock,
};
pub use error::{Error, RateLimited};
pub use policy::Policy;
pub use registry::DEFAULT_MAX_HOSTS;
pub use registry::{
    Acquire, Admission, Lane, Lanes, OnLimit, Permit, Price, Registry, RegistryBuilder, Scope,
    ShadowStats, Source, SourceHandle, Target, UnknownHost,
};
pub use signal::{Signal, SignalConfig};
