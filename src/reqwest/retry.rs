//! [`RateLimitStrategy`] (reqwest-retry's `RetryableStrategy`) and
//! [`Backoff`] (its `RetryPolicy`).

use std::time::{Duration, SystemTime};

use reqwest_retry::{
    default_on_request_failure, RetryDecision, RetryPolicy, Retryable, RetryableStrategy,
};

use crate::backoff;
use crate::Signal;

/// Which outcomes are worth another try: 429, 503, 408, 502 and 504,
/// connection errors and timeouts, other 5xx, and a 403 that says it is a
/// rate limit (`Retry-After`, or a spent quota such as
/// `x-ratelimit-remaining: 0`, as GitHub answers) are transient;
/// other 4xx are fatal, and so is a rejection by the rate limiter itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct RateLimitStrategy;

impl RateLimitStrategy {
    fn classify(status: http::StatusCode, headers: &http::HeaderMap) -> Option<Retryable> {
        if status.is_success() || status.is_redirection() || status.is_informational() {
            return None;
        }
        let code = status.as_u16();
        if backoff::is_transient(status) || status.is_server_error() {
            return Some(Retryable::Transient);
        }
        // GitHub answers rate limits with 403 too; the signal reader knows
        // which 403s those are.
        let config = crate::SignalConfig::default();
        if code == 403 && Signal::parse(status, headers, SystemTime::now(), &config).limited {
            return Some(Retryable::Transient);
        }
        Some(Retryable::Fatal)
    }
}

impl RetryableStrategy for RateLimitStrategy {
    fn handle(
        &self,
        res: &Result<reqwest::Response, reqwest_middleware::Error>,
    ) -> Option<Retryable> {
        match res {
            Ok(response) => Self::classify(response.status(), response.headers()),
            Err(e) => default_on_request_failure(e),
        }
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
    use http::{HeaderMap, HeaderValue, StatusCode};

    #[test]
    fn classification() {
        let none = HeaderMap::new();
        let mut spent = HeaderMap::new();
        spent.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        for code in [429, 503, 408, 502, 504, 500] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    RateLimitStrategy::classify(s, &none),
                    Some(Retryable::Transient)
                ),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 410, 422] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    RateLimitStrategy::classify(s, &none),
                    Some(Retryable::Fatal)
                ),
                "{code}"
            );
        }
        let mut secondary = HeaderMap::new();
        secondary.insert("retry-after", HeaderValue::from_static("60"));
        let mut reddit = HeaderMap::new();
        reddit.insert("x-ratelimit-remaining", HeaderValue::from_static("0.0"));
        let mut left = HeaderMap::new();
        left.insert("x-ratelimit-remaining", HeaderValue::from_static("12"));
        for (headers, transient) in [
            (&spent, true),
            (&secondary, true),
            (&reddit, true),
            (&left, false),
        ] {
            assert_eq!(
                matches!(
                    RateLimitStrategy::classify(StatusCode::FORBIDDEN, headers),
                    Some(Retryable::Transient)
                ),
                transient,
                "{headers:?}"
            );
        }
        assert!(RateLimitStrategy::classify(StatusCode::OK, &none).is_none());
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
