//! [`RetryPolicy`]: a `tower::retry::Policy` that repeats only what is safe
//! to repeat, within a budget, honouring `Retry-After`.
//!
//! It follows [`tollgate::retry`](crate::retry)'s table, which it shares
//! with the reqwest adapters:
//!
//! | failure | GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or with `Idempotency-Key` | POST, PATCH, other |
//! |---|---|---|
//! | connect error | retry | retry |
//! | the limiter's own refusal (`RateLimited`, `InFlightFull`) | no, unless [`retry_local_refusals`](RetryPolicy::retry_local_refusals) | the same |
//! | timeout (`tower::timeout::error::Elapsed`, I/O `TimedOut`), other transport error | retry | no |
//! | 408, 502, 504, 503 without `Retry-After` | retry | no |
//! | 429, 503 with `Retry-After`, 403 with `remaining: 0` | retry | retry |
//! | anything else | no | no |
//!
//! Errors are read along their `source()` chain: an I/O `ConnectionRefused`
//! (or `AddrNotAvailable`, `HostUnreachable`, `NetworkUnreachable`), as
//! hyper-util's connector reports a failed connect, is a connect error;
//! an error the policy does not recognise counts as a transport error.

use std::borrow::Borrow;
use std::error::Error as StdError;
use std::time::SystemTime;

use super::TryCloneBody;
use crate::backoff::Backoff;
use crate::retry::{Attempted, Failure, RetryRules, SafeToRetry};
use crate::{SignalConfig, Target};

/// Retries what [`RetryRules`] allow: the delay is the server's
/// `Retry-After` (or a refusal's `retry_after`) when given, capped by
/// [`SignalConfig::max_wait`], else [`Backoff`]'s `base · 2^attempt` with
/// full jitter; after `max_retries` (default 3), or when the
/// [`RetryBudget`](crate::retry::RetryBudget) is spent, it returns the
/// last result. A request whose body cannot be cloned ([`TryCloneBody`])
/// is not retried.
///
/// A source in reject mode fails fast: the limiter's own refusal
/// ([`RateLimited`](crate::RateLimited), `InFlightFull`) goes straight back
/// to the caller, even with this policy outside the rate limit layer.
/// [`retry_local_refusals(true)`](Self::retry_local_refusals) retries it
/// after its `retry_after` instead (default: off).
///
/// Each request pays into the budget when `tower::retry` first clones it.
/// Clones of the policy share the budget. Sleeps on tokio's timer, so
/// `tokio::time::pause()` makes tests instant.
///
/// ```
/// use tollgate::retry::{RetryBudget, RetryRules};
/// use tollgate::tower::RetryPolicy;
///
/// # fn main() -> Result<(), tollgate::Error> {
/// let budget = RetryBudget::new(0.1, 1.0, std::time::Duration::from_secs(10))?;
/// let policy = RetryPolicy::with_rules(RetryRules::default().budget(budget));
/// let layer = tower::retry::RetryLayer::new(policy);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RetryPolicy {
    rules: RetryRules,
    attempt: u32,
}

impl RetryPolicy {
    /// A policy with this backoff schedule and the default rules.
    pub fn new(backoff: Backoff) -> Self {
        Self::with_rules(RetryRules::new(backoff))
    }

    /// A policy that follows `rules` (shared with the reqwest adapter if
    /// you like: clone them).
    pub fn with_rules(rules: RetryRules) -> Self {
        RetryPolicy { rules, attempt: 0 }
    }

    /// The cap on server-given waits (and the other signal settings).
    pub fn signals(mut self, signals: SignalConfig) -> Self {
        self.rules = self.rules.signals(signals);
        self
    }

    /// Whether the rate limiter's own refusals are retried after their
    /// `retry_after` (default `false`: they go straight back); see
    /// [`RetryRules::retry_local_refusals`].
    pub fn retry_local_refusals(mut self, yes: bool) -> Self {
        self.rules = self.rules.retry_local_refusals(yes);
        self
    }

    /// The rules this policy follows.
    pub fn rules(&self) -> &RetryRules {
        &self.rules
    }

    /// Retries made so far for this request.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

fn attempted<B>(req: &http::Request<B>) -> Attempted<'_> {
    Attempted {
        method: req.method(),
        headers: req.headers(),
        target: Target::from_request(req),
        marked: req.extensions().get::<SafeToRetry>().is_some(),
    }
}

impl<B, ResB, E> tower::retry::Policy<http::Request<B>, http::Response<ResB>, E> for RetryPolicy
where
    B: TryCloneBody,
    E: Borrow<dyn StdError + Send + Sync>,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut http::Request<B>,
        result: &mut Result<http::Response<ResB>, E>,
    ) -> Option<Self::Future> {
        let failure = match result {
            Ok(response) => Failure::from_response(
                response.status(),
                response.headers(),
                SystemTime::now(),
                self.rules.signal_config(),
            )?,
            Err(e) => {
                let e: &(dyn StdError + Send + Sync) = (*e).borrow();
                Failure::from_error(e)
            }
        };
        let delay = self
            .rules
            .next_retry(&attempted(request), &failure, self.attempt)?;
        self.attempt += 1;
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &http::Request<B>) -> Option<http::Request<B>> {
        // `tower::retry` clones each request once before its first call (on
        // a policy that has made no retries) and once before each retry.
        if self.attempt == 0 {
            self.rules.started(&attempted(request));
        }
        let body = request.body().try_clone_body()?;
        let mut clone = http::Request::new(body);
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}
