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
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tower` | yes | the tower layer and retry policy |
//! | `reqwest` | no | middleware for reqwest-middleware and reqwest-retry |
//! | `redis` | no | a Redis store shared between processes |
//! | `serde` | no | serde for [`Policy`], registry configuration from TOML |
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(doctest, feature = "reqwest", feature = "tower"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod backoff;
pub mod bucket;
pub mod clock;
pub mod error;
pub mod policy;
pub mod presets;
pub mod registry;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod signal;
mod sync;
#[cfg(feature = "tower")]
pub mod tower;

pub use bucket::{Reservation, TokenBucket};
pub use clock::{
    Clock, FastClock, ManualClock, MonotonicClock, SharedClock, Timestamp, TokioClock,
};
pub use error::{Error, RateLimited};
pub use policy::Policy;
pub use registry::DEFAULT_MAX_HOSTS;
pub use registry::{
    Acquire, Admission, OnLimit, Permit, Registry, RegistryBuilder, Scope, Source, SourceHandle,
    Target, UnknownHost,
};
pub use signal::{Signal, SignalConfig};
