//! reqwest-middleware and reqwest-retry adapters (feature `reqwest`):
//! [`RateLimitMiddleware`], [`RetryMiddleware`], and for reqwest-retry
//! [`RateLimitStrategy`] and [`Backoff`].
//!
//! The rate-limit middleware is thin, like the tower layer: it reads the
//! request's URL, asks the [`Registry`](crate::Registry) for admission,
//! sends, and hands the response back to the registry. reqwest is compiled
//! with `default-features = false`, so you choose its TLS.
//!
//! # Retrying
//!
//! [`RetryMiddleware`] is the recommended retry layer: it sees each request,
//! so it applies every rule of [`tollgate::retry`](crate::retry) (a POST
//! is repeated only when the server cannot have processed it; a GET is
//! repeated after a timeout too), waits a server's `Retry-After`, and
//! spends a [`RetryBudget`](crate::retry::RetryBudget) per host or source.
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tollgate::reqwest::{RateLimitMiddleware, RetryMiddleware};
//! use tollgate::{presets, Registry};
//!
//! # fn main() -> Result<(), tollgate::Error> {
//! let registry = Registry::builder().source(presets::musicbrainz()).build()?;
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryMiddleware::default())
//!     .with(RateLimitMiddleware::new(registry))
//!     .build();
//! # let _ = client; Ok(()) }
//! ```
//!
//! reqwest-retry works too, with [`RateLimitStrategy`] and [`Backoff`]:
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use reqwest_retry::RetryTransientMiddleware;
//! use tollgate::reqwest::{Backoff, RateLimitMiddleware, RateLimitStrategy};
//! use tollgate::{presets, Registry};
//!
//! # fn main() -> Result<(), tollgate::Error> {
//! let registry = Registry::builder().source(presets::musicbrainz()).build()?;
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryTransientMiddleware::new_with_policy_and_strategy(
//!         Backoff::default(),
//!         RateLimitStrategy::default(),
//!     ))
//!     .with(RateLimitMiddleware::new(registry))
//!     .build();
//! # let _ = client; Ok(()) }
//! ```
//!
//! but reqwest-retry's strategy only sees the result, never the request.
//! [`RateLimitMiddleware`] tags each response with whether its request was
//! safe to repeat, so statuses follow the same table; an error carries no
//! tag, so through reqwest-retry a timeout is never retried, not even for a
//! GET. reqwest-retry has no budget either.
//!
//! # Why the order matters
//!
//! Middleware runs in the order it is added, so the retry middleware wraps
//! the rate limiter and **every attempt** passes the limiter and waits for
//! its slot. reqwest-retry's policy only sees the attempt count, never the
//! response, so it cannot honour `Retry-After` itself; the rate-limit
//! middleware does: it turns the server's `Retry-After` (or an exhausted
//! quota) into a deferral of the host's buckets, and the next attempt, and
//! every other request to that host, waits there. Put the other way round,
//! retries would bypass the limiter.
//!
//! # Rejections
//!
//! A source in reject mode (or past its `max_wait`) refuses before anything
//! is sent, with `reqwest_middleware::Error::Middleware` wrapping a
//! [`tollgate::Error`](crate::Error), as does every other refusal of the
//! limiter (an unknown host, a full `max_in_flight`):
//!
//! ```
//! # fn check(err: reqwest_middleware::Error) {
//! if let reqwest_middleware::Error::Middleware(e) = &err {
//!     if let Some(refusal) = e.downcast_ref::<tollgate::Error>() {
//!         println!("{refusal}; retry after {:?}", refusal.retry_after());
//!     }
//! }
//! # }
//! ```
//! Behind `RetryTransientMiddleware` the refusal arrives wrapped once more
//! (in reqwest-retry's `RetryError`); [`tollgate_error`] looks through both:
//!
//! ```
//! # fn check(err: reqwest_middleware::Error) {
//! if let Some(after) = tollgate::reqwest::tollgate_error(&err).and_then(|e| e.retry_after()) {
//!     println!("rate limited: retry after {after:?}");
//! }
//! # }
//! ```
//! Reject means reject, behind either retry layer: [`RetryMiddleware`]
//! (like the tower policy) and [`RateLimitStrategy`] hand such a rejection
//! straight back. To retry the limiter's own refusals after their
//! `retry_after` instead, opt in:
//! [`RetryRules::retry_local_refusals`](crate::retry::RetryRules::retry_local_refusals)`(true)`
//! for [`RetryMiddleware`],
//! [`RateLimitStrategy::retry_local_refusals`]`(true)` for reqwest-retry.
//! Nothing was sent, so this holds for a POST too.

mod middleware;
mod retry;
mod retry_middleware;

pub use middleware::RateLimitMiddleware;
pub use retry::{Backoff, RateLimitStrategy};
pub use retry_middleware::RetryMiddleware;

use crate::{Error, Target};

/// The routing target of a URL: its host, port (explicit or the scheme's
/// default) and path.
fn target<'a>(url: &'a reqwest::Url, method: &'a http::Method) -> Target<'a> {
    Target::new(
        url.host_str().unwrap_or(""),
        url.port_or_known_default(),
        url.path(),
    )
    .with_method(method)
}

/// The rate limiter's refusal inside a reqwest-middleware error, directly
/// or wrapped by reqwest-retry: a rejection
/// ([`Error::retry_after`] says for how long), an unknown host, a full
/// `max_in_flight`, a bad token count.
pub fn tollgate_error(err: &reqwest_middleware::Error) -> Option<&Error> {
    let reqwest_middleware::Error::Middleware(e) = err else {
        return None;
    };
    if let Some(found) = e.downcast_ref::<Error>() {
        return Some(found);
    }
    match e.downcast_ref::<reqwest_retry::RetryError>()? {
        reqwest_retry::RetryError::Error(inner)
        | reqwest_retry::RetryError::WithRetries { err: inner, .. } => tollgate_error(inner),
    }
}
