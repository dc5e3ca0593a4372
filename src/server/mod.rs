//! The server side (feature `server`): [`GuardLayer`] limits the requests a
//! tower or axum server accepts, per key (an API key, the client's IP, a
//! route, or a key of your own), in tiers, and answers 429 at once over the
//! limit.
//!
//! This module owns reading a request's key, finding its tier, and the
//! answers (headers, problem bodies). Admission is the
//! [`Registry`](crate::Registry)'s: a tier is a registry source made by
//! [`tier`], with one bucket per key and bounded memory.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tollgate::server::{tier, GuardLayer, HeaderKey, MissingKey};
//! use tollgate::Registry;
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::builder()
//!     .source(tier("free").limit("5/s burst 5".parse()?))
//!     .source(tier("enterprise").limit("100/s burst 100".parse()?))
//!     .build()?;
//! let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key")?)
//!     .default_tier("free")
//!     .key_tier("k-acme", "enterprise")
//!     .missing_key(MissingKey::Refuse(StatusCode::UNAUTHORIZED))
//!     .build()?;
//! let mut app = guard.layer(tower::service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("hello")))
//! }));
//!
//! let request = || Request::builder().header("x-api-key", "k-1").body(String::new()).unwrap();
//! for _ in 0..5 {
//!     let ok = app.ready().await?.call(request()).await?;
//!     assert_eq!(ok.status(), StatusCode::OK);
//! }
//! let refused = app.ready().await?.call(request()).await?;
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! assert_eq!(refused.headers()["ratelimit-policy"], r#""free";q=5;w=1"#);
//! # Ok(()) }
//! ```
//!
//! With axum, `Router::layer(guard)` guards every route, and
//! `route_layer` or a nested router guards some (`examples/axum_server.rs`
//! keys an API by key, `/login` by user and IP, and leaves `/health` free).
//!
//! # Tiers
//!
//! A tier is a registry source, named after it: [`tier`]`("free")` is
//! `Source::new("free")` with one bucket set per key
//! ([`Source::per_host`](crate::Source::per_host)) and
//! [`OnLimit::Reject`]. Add limits as to any source
//! (several at once, `max_in_flight`). Every source of the registry whose
//! name is printable ASCII can be a tier (one without `per_host` is a limit
//! that every key shares); a key goes to the tier that
//! [`GuardBuilder::key_tier`] or [`GuardBuilder::tier_by`] name for it,
//! else to the default tier. The registry may be the one your clients use:
//! a tier has no host rule, so no outgoing request is routed to it.
//!
//! A tier that should queue briefly instead of refusing takes
//! `.on_limit(OnLimit::Wait { max_wait: Some(d) })`: a request then waits
//! up to `d` for its slot and is answered 429 beyond it. Never leave a
//! server tier waiting without a `max_wait`.
//!
//! # How keys become buckets
//!
//! A key is escaped (printable ASCII as it is, `%`, spaces, control bytes
//! and non-ASCII as `%` and two hex digits, so case is kept and no two keys
//! meet) and names its bucket set in the tier, through
//! [`SourceHandle::admit_key`](crate::SourceHandle::admit_key). Idle, full
//! sets are evicted, and the registry's
//! [`max_hosts`](crate::RegistryBuilder::max_hosts) caps how many a tier
//! keeps: beyond it, new keys share the tier's overflow set (stricter,
//! never looser). A flood of distinct keys cannot grow memory without
//! bound; [`Registry::host_count`](crate::Registry::host_count) tells how
//! many keys a tier holds. A key's set can be evicted once its bucket is
//! full again (`1/rate` after one request, `burst/rate` after a whole
//! burst), so size `max_hosts` above the distinct keys a tier sees in that
//! time: at `5/s burst 5`, the default 10,000 keeps up with 10,000 to
//! 50,000 new keys a second.
//!
//! # Answers
//!
//! Over the limit, a request is answered at once (the inner service is not
//! called) with `429 Too Many Requests` and:
//!
//! * `Retry-After`: the exact wait, in whole seconds rounded up;
//! * `RateLimit: "tier";r=0;t=N` with the same `N`, and
//!   `RateLimit-Policy: "tier";q=Q;w=W` (draft-ietf-httpapi-ratelimit-headers):
//!   the tier's limit as written, `"5/s"` as `q=5;w=1` and `"25/min"` as
//!   `q=25;w=60` (scaled to whole numbers: `"0.5/s"` is `q=1;w=2`; a burst
//!   above 1 is not in `q`, which keeps `q/w` the sustained rate). Further
//!   limits of a tier follow as `"tier-2"`, `"tier-3"`, and the `RateLimit`
//!   item is named after the limit whose `r` it reports, the one with the
//!   fewest tokens left (when limits cross, the one that is lowest for a
//!   key that has not sent more than the smallest burst);
//! * an `application/problem+json` body (RFC 9457) of type
//!   [`QUOTA_EXCEEDED`], naming the tier in `violated-policies`.
//!
//! Every integer in these fields is at most 999,999,999,999,999, the most
//! a structured field (RFC 9651) allows: a larger one would make a client
//! ignore the whole field.
//!
//! An admitted response carries `RateLimit` too (see [`SuccessHeaders`]):
//! `r` is the whole requests left to the key, and `t` the seconds until its
//! bucket is full again, or, when nothing is left, until the next request
//! may go. A client that reads it (this crate's own does) waits instead of
//! being refused.
//!
//! A request without a key is refused (400 by default) or limited in a
//! tier of its own ([`MissingKey`]). Nothing here panics on a request.
//!
//! # Response bodies
//!
//! The guard makes the bodies of its answers, so the inner service's
//! response body must be `From<String>`: axum's `Body`, `String`, and
//! `http_body_util::Full<Bytes>` are. Its error type is the inner
//! service's: an answer is a response, never an error, which is what axum
//! requires of a layer (`Infallible`).

mod client_ip;
mod extract;
mod future;
mod key;
mod layer;
mod response;
mod service;

pub use client_ip::{ClientIp, PeerFn};
pub use extract::{HeaderKey, KeyFn, PathKey, RequestHead};
pub use future::GuardFuture;
pub use key::{composite_key, key_parts, KeyExtractor, KeyParts, KeyWriter};
pub use layer::{GuardBuilder, GuardLayer, MissingKey};
pub use response::{SuccessHeaders, QUOTA_EXCEEDED};
pub use service::Guard;

use crate::{OnLimit, Source};

/// A tier: a source named `name` that gives each key its own bucket set
/// and refuses at once over the limit; add its limits with
/// [`Source::limit`].
///
/// ```
/// use tollgate::Scope;
///
/// let free = tollgate::server::tier("free").limit("5/s burst 5".parse()?);
/// assert_eq!(free.scope_mode(), Scope::PerHost);
/// assert!(free.hosts().is_empty()); // no outgoing request is routed here
/// # Ok::<(), tollgate::Error>(())
/// ```
pub fn tier(name: impl Into<String>) -> Source {
    Source::new(name).per_host().on_limit(OnLimit::Reject)
}
