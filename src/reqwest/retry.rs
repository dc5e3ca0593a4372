//! [`RateLimitStrategy`] (reqwest-retry's `RetryableStrategy`), [`Backoff`]
//! (its `RetryPolicy`), and how reqwest's results read as a
//! [`Failure`]: the one place both reqwest retry layers classify results.

use std::time::{Duration, SystemTime};

use reqwest_retry::{RetryDecision, RetryPolicy, Retryable, RetryableStrategy};

use crate::backoff;
use crate::retry::{decide, Failure};
use crate::SignalConfig;

/// Whether a response's request was safe to repeat, as
/// [`RateLimitMiddleware`](super::RateLimitMiddleware) saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SafeRequest(pub bool);

/// The failure a reqwest-middleware error stands for. reqwest's own
/// `is_connect` comes first (no byte was sent, even when the connect timed
/// out), then `is_timeout`; errors of other middleware are permanent unless
/// they are tollgate's refusals.
pub(crate) fn failure_of(err: &reqwest_middleware::Error) -> Failure {
    match err {
        reqwest_middleware::Error::Middleware(e) => match Failure::from_error(&**e) {
            Failure::Transport => Failure::Permanent,
            f => f,
        },
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => Failure::Connect,
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => Failure::Timeout,
        reqwest_middleware::Error::Reqwest(e)
            if e.is_builder() || e.is_body() || e.is_decode() || e.is_redirect() =>
        {
            Failure::Permanent
        }
        reqwest_middleware::Error::Reqwest(_) => Failure::Transport,
    }
}

/// The failure a response stands for, or `None` for a success.
pub(crate) fn failure_of_response(
    response: &reqwest::Response,
    signals: &SignalConfig,
) -> Option<Failure> {
    Failure::from_response(
        response.status(),
        response.headers(),
        SystemTime::now(),
        signals,
    )
}

/// reqwest-retry's `RetryableStrategy` with [`tollgate::retry`](crate::retry)'s
/// table, as far as it can be applied without seeing the request.
///
/// reqwest-retry's strategy sees only the result. So
/// [`RateLimitMiddleware`](super::RateLimitMiddleware), which must come
/// after the retry middleware, tags every response with whether its
/// request was safe to repeat, and the strategy reads the tag:
///
/// | failure | GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or with `Idempotency-Key` or [`SafeToRetry`](crate::retry::SafeToRetry) | POST, PATCH, other, or untagged |
/// |---|---|---|
/// | connect error (`is_connect`: no byte sent) | transient | transient |
/// | timeout, other transport error | **fatal** (an error carries no tag) | fatal |
/// | 408, 502, 504, 503 without `Retry-After` | transient | fatal |
/// | 429, 503 with `Retry-After`, 403 with `remaining: 0` | transient | transient |
/// | the limiter's own refusal (`RateLimited`, `InFlightFull`) | fatal, unless [`retry_local_refusals`](Self::retry_local_refusals) | the same |
/// | anything else | fatal | fatal |
///
/// So through reqwest-retry a timeout is never retried, even for a GET;
/// [`RetryMiddleware`](super::RetryMiddleware) sees the request and
/// retries it.
///
/// A source in reject mode fails fast: its refusal is fatal, so
/// reqwest-retry hands it straight back. With
/// [`retry_local_refusals(true)`](Self::retry_local_refusals) (default
/// off) it is transient; reqwest-retry then waits its own backoff, and
/// [`RateLimitMiddleware`](super::RateLimitMiddleware) waits whatever is
/// left of the refusal's `retry_after` before it asks the limiter again.
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use reqwest_retry::RetryTransientMiddleware;
/// use tollgate::reqwest::{Backoff, RateLimitMiddleware, RateLimitStrategy};
/// use tollgate::{OnLimit, Registry, Source};
///
/// # fn main() -> Result<(), tollgate::Error> {
/// let registry = Registry::builder()
///     .source(Source::new("api").host("api.example.com").limit("2/s".parse()?).on_limit(OnLimit::Reject))
///     .build()?;
/// // The limiter's refusals are retried after their `retry_after`.
/// let strategy = RateLimitStrategy::default().retry_local_refusals(true);
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(RetryTransientMiddleware::new_with_policy_and_strategy(Backoff::default(), strategy))
///     .with(RateLimitMiddleware::new(registry))
///     .build();
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RateLimitStrategy {
    retry_local_refusals: bool,
}

impl RateLimitStrategy {
    /// The strategy with the limiter's own refusals fatal (the default).
    pub fn new() -> Self {
        RateLimitStrategy::default()
    }

    /// `true`: the limiter's own refusals (`RateLimited` from a source in
    /// reject mode or past its `max_wait`, `InFlightFull`) are transient,
    /// and the next attempt waits out the refusal's `retry_after`.
    /// `false`, the default: they are fatal, so reject means reject.
    pub fn retry_local_refusals(mut self, yes: bool) -> Self {
        self.retry_local_refusals = yes;
        self
    }
}

impl RetryableStrategy for RateLimitStrategy {
    fn handle(
        &self,
        res: &Result<reqwest::Response, reqwest_middleware::Error>,
    ) -> Option<Retryable> {
        let (failure, safe) = match res {
            Ok(response) => (
                failure_of_response(response, &SignalConfig::default())?,
                response
                    .extensions()
                    .get::<SafeRequest>()
                    .is_some_and(|s| s.0),
            ),
            Err(e) => (failure_of(e), false),
        };
        if failure.is_local_refusal() {
            return Some(if self.retry_local_refusals {
                Retryable::Transient
            } else {
                Retryable::Fatal
            });
        }
        Some(match decide(&failure, safe) {
            Some(_) => Retryable::Transient,
            None => Retryable::Fatal,
        })
    }
}

/// The `base · 2^attempt` schedule of [`backoff::Backoff`] as reqwest-retry's
/// `RetryPolicy`. The default waits up to 1 s, 2 s, 4 s (full jitter), then
/// gives up. `Retry-After` is honoured by the rate-limit middleware, not
/// here: reqwest-retry's policy never sees the response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff(pub backoff::Backoff);

impl From<backoff::Backoff> for Backoff {
    fn from(b: backoff::Backoff) -> Self {
        Backoff(b)
    }
}

impl RetryPolicy for Backoff {
    fn should_retry(&self, _request_start_time: SystemTime, n_past_retries: u32) -> RetryDecision {
        match self.0.delay(n_past_retries) {
            Some(delay) => RetryDecision::Retry {
                execute_after: SystemTime::now() + delay.min(Duration::from_secs(86_400)),
            },
            None => RetryDecision::DoNotRetry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: u16, headers: &[(&str, &str)], safe: Option<bool>) -> reqwest::Response {
        let mut b = http::Response::builder().status(code);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = reqwest::Response::from(b.body("").unwrap());
        if let Some(s) = safe {
            r.extensions_mut().insert(SafeRequest(s));
        }
        r
    }

    /// The strategy's answer by name (`Retryable` has no `Debug`).
    fn verdict(r: reqwest::Response) -> &'static str {
        match RateLimitStrategy::default().handle(&Ok(r)) {
            Some(Retryable::Transient) => "transient",
            Some(Retryable::Fatal) => "fatal",
            None => "success",
        }
    }

    #[test]
    fn classification_follows_the_tag() {
        for code in [408, 502, 503, 504] {
            assert_eq!(
                verdict(response(code, &[], Some(true))),
                "transient",
                "{code}"
            );
            assert_eq!(verdict(response(code, &[], Some(false))), "fatal", "{code}");
            assert_eq!(
                verdict(response(code, &[], None)),
                "fatal",
                "untagged {code}"
            );
        }
        for (code, headers) in [
            (429, &[][..]),
            (503, &[("retry-after", "2")][..]),
            (403, &[("x-ratelimit-remaining", "0")][..]),
        ] {
            assert_eq!(
                verdict(response(code, headers, Some(false))),
                "transient",
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 410, 422, 500, 501] {
            assert_eq!(verdict(response(code, &[], Some(true))), "fatal", "{code}");
        }
        assert_eq!(verdict(response(200, &[], Some(true))), "success");
    }

    #[test]
    fn the_policy_follows_the_schedule() {
        let b = Backoff(backoff::Backoff::default().jitter(backoff::Jitter::None));
        let start = SystemTime::now();
        for n in 0..3 {
            let RetryDecision::Retry { execute_after } = b.should_retry(start, n) else {
                panic!("retry {n}")
            };
            let wait = execute_after
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let want = Duration::from_secs(1 << n);
            assert!(
                wait <= want && wait + Duration::from_millis(100) >= want,
                "{n}: {wait:?}"
            );
        }
        assert!(matches!(
            b.should_retry(start, 3),
            RetryDecision::DoNotRetry
        ));
    }
}
