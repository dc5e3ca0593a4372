//! [`RetryMiddleware`]: tollgate's own retry middleware for
//! reqwest-middleware, which sees the request (unlike reqwest-retry's
//! strategy) and so applies every rule of [`tollgate::retry`](crate::retry),
//! honours `Retry-After` itself, and spends a
//! [`RetryBudget`](crate::retry::RetryBudget).

use http::Extensions;
use reqwest_middleware::{Middleware, Next, Result};

use super::retry::{failure_of, failure_of_response};
use crate::retry::{Attempted, RetryRules, SafeToRetry};

/// Retries what [`RetryRules`] allow, for reqwest-middleware. Put it before
/// [`RateLimitMiddleware`](super::RateLimitMiddleware), so that every
/// attempt passes the limiter:
///
/// | failure | GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or with `Idempotency-Key` or [`SafeToRetry`] | POST, PATCH, other |
/// |---|---|---|
/// | connect error (`is_connect`: no byte sent) | retry | retry |
/// | the limiter's own refusal (`RateLimited`, `InFlightFull`) | no, unless [`retry_local_refusals`](RetryRules::retry_local_refusals) | the same |
/// | timeout (`is_timeout`), other transport error | retry | no |
/// | 408, 502, 504, 503 without `Retry-After` | retry | no |
/// | 429, 503 with `Retry-After`, 403 with `remaining: 0` | retry | retry |
/// | anything else | no | no |
///
/// A source in reject mode fails fast: its refusal goes straight back to
/// the caller. With [`RetryRules::retry_local_refusals`]`(true)` (default
/// off) it is retried after its `retry_after`.
///
/// The wait is the server's `Retry-After` (or the limiter's `retry_after`)
/// when given, capped, else the backoff; after `max_retries`, or when the
/// budget is spent, the last response or error goes back to the caller as
/// it came, not wrapped. A request whose body cannot be cloned (a stream)
/// is sent once.
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use tollgate::reqwest::{RateLimitMiddleware, RetryMiddleware};
/// use tollgate::retry::{RetryBudget, RetryRules};
/// use tollgate::{presets, Registry};
///
/// # fn main() -> Result<(), tollgate::Error> {
/// let registry = Registry::builder().source(presets::musicbrainz()).build()?;
/// let rules = RetryRules::default().budget(RetryBudget::default().per_source(registry.clone()));
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(RetryMiddleware::new(rules))
///     .with(RateLimitMiddleware::new(registry))
///     .build();
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RetryMiddleware {
    rules: RetryRules,
}

impl RetryMiddleware {
    /// A middleware that follows `rules` ([`RetryRules::default`] for the
    /// defaults).
    pub fn new(rules: RetryRules) -> Self {
        RetryMiddleware { rules }
    }

    /// The rules it follows.
    pub fn rules(&self) -> &RetryRules {
        &self.rules
    }
}

#[async_trait::async_trait]
impl Middleware for RetryMiddleware {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let attempted = Attempted {
            method: req.method(),
            headers: req.headers(),
            target: super::target(req.url(), req.method()),
            marked: extensions.get::<SafeToRetry>().is_some(),
        };
        self.rules.started(&attempted);
        let mut attempt = 0;
        loop {
            let Some(copy) = req.try_clone() else {
                // A streaming body cannot be replayed: one attempt, as is.
                return next.run(req, extensions).await;
            };
            let result = next.clone().run(copy, extensions).await;
            let failure = match &result {
                Ok(response) => failure_of_response(response, self.rules.signal_config()),
                Err(e) => Some(failure_of(e)),
            };
            let Some(failure) = failure else {
                return result;
            };
            let Some(delay) = self.rules.next_retry(&attempted, &failure, attempt) else {
                return result;
            };
            drop(result); // free the connection before sleeping
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}
