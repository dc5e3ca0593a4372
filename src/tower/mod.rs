//! tower middleware (feature `tower`, on by default): [`RateLimitLayer`] in
//! front of any HTTP client service, [`KeyedRateLimitLayer`] for any other
//! request type, and [`RetryPolicy`] for `tower::retry`.
//!
//! The layer is thin: it reads the request's target, asks the
//! [`Registry`](crate::Registry) for admission, calls the inner service, and
//! hands the response's status and headers back to the registry, which slows
//! the whole host down when a server says so. Limiter logic lives in the
//! registry and the bucket, shared with the reqwest adapter.
//!
//! ```
//! use tollgate::tower::{RateLimitLayer, RetryPolicy};
//! use tollgate::{presets, Registry};
//! use tower::ServiceBuilder;
//!
//! # fn wrap<S>(client: S) -> Result<(), tollgate::Error>
//! # where S: tower::Service<http::Request<String>, Response = http::Response<String>> + Clone + Send + 'static,
//! #       S::Error: Into<tower::BoxError>, S::Future: Send + 'static {
//! let registry = Registry::builder().source(presets::musicbrainz()).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(tower::retry::RetryLayer::new(RetryPolicy::default()))
//!     .layer(RateLimitLayer::new(registry))
//!     .service(client);
//! # let _ = svc; Ok(()) }
//! ```
//!
//! Order matters: retry outside the rate limit, so that every attempt passes
//! the limiter and waits for its slot (and for any `Retry-After` the server
//! sent, which the layer turned into a deferral of the host's buckets).
//!
//! [`RetryPolicy`] repeats a POST or a PATCH only when the server cannot
//! have processed it (a connect error, 429, 503 with `Retry-After`), never
//! after a timeout, 502 or 504; it spends at most a
//! [`RetryBudget`](crate::retry::RetryBudget) of retries per host. The table
//! is in [`tollgate::retry`](crate::retry).
//!
//! # The request's host
//!
//! The layer routes by the URI's authority, else the `Host` header. A tonic
//! `Channel` sends requests whose URI carries no authority unless the
//! client is built with `with_origin(uri)`, so build it that way, or use
//! [`KeyedRateLimitLayer`] with a key of your choosing (the gRPC service, or
//! a fixed name). A request with no host at all is handled by the
//! registry's [`UnknownHost`](crate::UnknownHost) rule.
//!
//! # Keys of the keyed form
//!
//! [`KeyedRateLimitLayer`] routes a key as if it were a host name, through
//! the same rules: so a key must look like one. No `/` (map a gRPC path
//! such as `/echo.Echo/Say` to `echo.Echo.Say`), no `:port`, and keys are
//! compared without regard to ASCII case. A rule with a path prefix never
//! matches a key. `bench/examples/tonic_client.rs` shows both forms with tonic
//! (`cargo run -p tollgate-bench --example tonic_client`).
//!
//! # gRPC
//!
//! A gRPC error travels in `grpc-status` with HTTP 200, so the layer does
//! not see it as a server signal; `Retry-After` and rate-limit headers on
//! the HTTP response still count. A permit ends when the response headers
//! arrive, which for a streaming call is before the stream ends.

mod body;
mod future;
mod layer;
mod retry;
mod service;
pub(crate) mod wait;

pub use body::TryCloneBody;
pub use future::ResponseFuture;
pub use layer::{KeyedRateLimitLayer, RateLimitLayer};
pub use retry::RetryPolicy;
pub use service::{KeyedRateLimit, RateLimit};

/// The boxed error of tower services: every refusal of the limiter is a
/// [`tollgate::Error`](crate::Error) inside it, so one
/// `err.downcast_ref::<tollgate::Error>()` finds it and
/// [`retry_after`](crate::Error::retry_after) says how long a rejection lasts.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
