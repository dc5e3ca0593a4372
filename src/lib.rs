//! # tollgate
//!
//! Keeps HTTP clients inside the rate limits of the APIs they call. One
//! [`Registry`] maps each request's host (and optionally a path) to a named
//! [`Source`] with its limits; the same registry serves a tower stack, a
//! reqwest-middleware chain, their retries, and a server's guard. When a
//! server answers 429 or announces its quota, every request to that host
//! slows down together.
//!
//! ```
//! use tollgate::{Registry, Source, Target};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tollgate::Error> {
//! let registry = Registry::builder()
//!     .source(Source::new("api").limit("5/s".parse()?).host("api.example.com"))
//!     .build()?;
//! let target = Target::new("api.example.com", Some(443), "/items");
//! let permit = registry.acquire(&target, 1.0).await?; // waits for its slot: the default
//! assert_eq!(permit.source(), Some("api"));
//! # Ok(()) }
//! ```
//!
//! # Start here
//!
//! | you need | use | feature | example |
//! |---|---|---|---|
//! | to limit a reqwest client | [`RateLimitMiddleware`][l-rlm], [`RetryMiddleware`][l-rm] | `reqwest` | [`reqwest`][m-reqwest] |
//! | to limit a tower client (hyper, tonic, axum's client) | [`RateLimitLayer`][l-rll], [`RetryPolicy`][l-rp] | `tower` (default) | [`tower`][m-tower], `examples/hyper_client.rs` |
//! | one set of limits for every adapter | [`Registry`], [`RegistryBuilder`], [`Source`] | — | [`Registry`] |
//! | published limits of known APIs | [`presets`] | — | [`presets`] |
//! | limits from a file | [`Registry::from_toml`][l-toml] | `serde` | `examples/tollgate.toml` |
//! | to guard your own server, per key and tier | [`GuardLayer`][l-guard] | `server` | [`server`][m-server], `examples/axum_server.rs` |
//! | one quota for many processes | [`RedisStore`][l-store] | `redis` | [`redis`][m-redis], `examples/fleet.rs` |
//! | to run a stream of jobs at a rate | [`RateLimitExt`][l-ext] | `stream` | [`stream`][m-stream] |
//! | to pace hosts nobody configured | [`Source::learn`], [`learn::Learn`] | — | [`learn`] |
//! | a token bucket on its own | [`TokenBucket`] | — | [`bucket`] |
//!
//! The defaults, said once: a request over its limit waits for its slot
//! with no cap on the wait ([`OnLimit`]); a host no rule matches passes
//! through unlimited ([`UnknownHost::PassThrough`]); a host rule without a
//! port matches every port; a source with no limit is refused at `build()`
//! unless it says [`Policy::unlimited`] or learns; a server's wait is
//! honoured up to 10 minutes ([`SignalConfig`]).
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | [`registry`] | [`Registry`]: sources, routing rules, per-host bucket sets, runtime changes, prices, shadow mode, lanes, metrics |
//! | [`presets`] | sources for APIs with published limits, each citing its source |
//! | [`tower`][m-tower] (feature `tower`) | the client layers and the `tower::retry` policy |
//! | [`reqwest`][m-reqwest] (feature `reqwest`) | middleware for reqwest-middleware, a strategy for reqwest-retry |
//! | [`server`][m-server] (feature `server`) | [`GuardLayer`][l-guard]: per-key limits and 429s for servers |
//! | [`redis`][m-redis] (feature `redis`) | [`RedisStore`][l-store]: buckets shared through Redis |
//! | [`stream`][m-stream] (feature `stream`) | running a stream of futures at a source's rate |
//! | [`signal`] | [`Signal`], [`SignalConfig`]: what servers say in status and headers |
//! | [`learn`] | learning the limits of hosts nobody configured |
//! | [`retry`] | which failures the retry adapters repeat, and the [`retry::RetryBudget`] |
//! | [`backoff`] | the retry schedule: exponential, jittered, capped |
//! | [`policy`] | [`Policy`]: capacity and rate, parsing, validation |
//! | [`bucket`] | [`TokenBucket`], [`Reservation`]: admission and refunds |
//! | [`clock`] | [`Clock`]: reading the time and sleeping on the same timeline |
//! | [`error`] | [`Error`] (opaque, with its [`ErrorKind`] and causes), [`RateLimited`] |
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tower` | yes | the tower layers and retry policy |
//! | `reqwest` | no | middleware for reqwest-middleware and reqwest-retry |
//! | `server` | no | per-key limits and 429s for tower and axum servers (enables `tower`) |
//! | `redis` | no | buckets in Redis (one node or a cluster), shared between processes and machines |
//! | `stream` | no | run a stream of futures at a rate, `n` at once |
//! | `serde` | no | serde for [`Policy`], registry configuration from TOML |
//! | `metrics` | no | per-source counters, histograms and gauges through the `metrics` facade |
//!
//! Links to parts behind a feature that is off lead to docs.rs.
//!
#![cfg_attr(
    feature = "reqwest",
    doc = "[l-rlm]: crate::reqwest::RateLimitMiddleware"
)]
#![cfg_attr(
    not(feature = "reqwest"),
    doc = "[l-rlm]: https://docs.rs/tollgate/latest/tollgate/reqwest/struct.RateLimitMiddleware.html"
)]
#![cfg_attr(feature = "reqwest", doc = "[l-rm]: crate::reqwest::RetryMiddleware")]
#![cfg_attr(
    not(feature = "reqwest"),
    doc = "[l-rm]: https://docs.rs/tollgate/latest/tollgate/reqwest/struct.RetryMiddleware.html"
)]
#![cfg_attr(feature = "reqwest", doc = "[m-reqwest]: crate::reqwest")]
#![cfg_attr(
    not(feature = "reqwest"),
    doc = "[m-reqwest]: https://docs.rs/tollgate/latest/tollgate/reqwest/index.html"
)]
#![cfg_attr(feature = "tower", doc = "[l-rll]: crate::tower::RateLimitLayer")]
#![cfg_attr(
    not(feature = "tower"),
    doc = "[l-rll]: https://docs.rs/tollgate/latest/tollgate/tower/struct.RateLimitLayer.html"
)]
#![cfg_attr(feature = "tower", doc = "[l-rp]: crate::tower::RetryPolicy")]
#![cfg_attr(
    not(feature = "tower"),
    doc = "[l-rp]: https://docs.rs/tollgate/latest/tollgate/tower/struct.RetryPolicy.html"
)]
#![cfg_attr(feature = "tower", doc = "[m-tower]: crate::tower")]
#![cfg_attr(
    not(feature = "tower"),
    doc = "[m-tower]: https://docs.rs/tollgate/latest/tollgate/tower/index.html"
)]
#![cfg_attr(feature = "serde", doc = "[l-toml]: crate::Registry::from_toml")]
#![cfg_attr(
    not(feature = "serde"),
    doc = "[l-toml]: https://docs.rs/tollgate/latest/tollgate/struct.Registry.html#method.from_toml"
)]
#![cfg_attr(feature = "server", doc = "[l-guard]: crate::server::GuardLayer")]
#![cfg_attr(
    not(feature = "server"),
    doc = "[l-guard]: https://docs.rs/tollgate/latest/tollgate/server/struct.GuardLayer.html"
)]
#![cfg_attr(feature = "server", doc = "[m-server]: crate::server")]
#![cfg_attr(
    not(feature = "server"),
    doc = "[m-server]: https://docs.rs/tollgate/latest/tollgate/server/index.html"
)]
#![cfg_attr(feature = "redis", doc = "[l-store]: crate::redis::RedisStore")]
#![cfg_attr(
    not(feature = "redis"),
    doc = "[l-store]: https://docs.rs/tollgate/latest/tollgate/redis/struct.RedisStore.html"
)]
#![cfg_attr(feature = "redis", doc = "[m-redis]: crate::redis")]
#![cfg_attr(
    not(feature = "redis"),
    doc = "[m-redis]: https://docs.rs/tollgate/latest/tollgate/redis/index.html"
)]
#![cfg_attr(feature = "stream", doc = "[l-ext]: crate::stream::RateLimitExt")]
#![cfg_attr(
    not(feature = "stream"),
    doc = "[l-ext]: https://docs.rs/tollgate/latest/tollgate/stream/trait.RateLimitExt.html"
)]
#![cfg_attr(feature = "stream", doc = "[m-stream]: crate::stream")]
#![cfg_attr(
    not(feature = "stream"),
    doc = "[m-stream]: https://docs.rs/tollgate/latest/tollgate/stream/index.html"
)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(
    doctest,
    feature = "reqwest",
    feature = "server",
    feature = "stream",
    feature = "redis",
    feature = "serde"
))]
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
pub use error::{Error, ErrorKind, RateLimited};
pub use policy::Policy;
pub use registry::DEFAULT_MAX_HOSTS;
pub use registry::{
    Acquire, Admission, Lane, Lanes, OnLimit, Permit, Price, Registry, RegistryBuilder, Scope,
    ShadowStats, Source, SourceHandle, Target, UnknownHost,
};
pub use signal::{Signal, SignalConfig};
