//! [`RetryPolicy`]: a `tower::retry::Policy` with exponential backoff that
//! honours `Retry-After`.

use std::borrow::Borrow;
use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use crate::backoff::{is_transient, Backoff};
use crate::signal::Dialect;
use crate::{Error, RateLimited, Signal, SignalConfig};

/// Retries transient failures: responses 429, 503, 502, 504 and 408, a
/// 403 that [`Signal`] reads as a rate limit (GitHub's `Retry-After` or
/// spent quota), and errors (connection failures, timeouts, and a source's rate-limit
/// rejection), but not tollgate's configuration errors. The delay is the
/// server's `Retry-After` (or the rejection's `retry_after`) when given,
/// capped by [`SignalConfig::max_wait`], else [`Backoff`]'s
/// `base · 2^attempt` with full jitter; after `max_retries` (default 3) it
/// gives up and returns the last result. A request whose body cannot be
/// cloned ([`TryCloneBody`]) is not retried.
///
/// Sleeps on tokio's timer, so `tokio::time::pause()` makes tests instant.
#[derive(Clone, Debug, Default)]
pub struct RetryPolicy {
    backoff: Backoff,
    signals: SignalConfig,
    attempt: u32,
}

impl RetryPolicy {
    /// A policy with this backoff schedule.
    pub fn new(backoff: Backoff) -> Self {
        RetryPolicy {
            backoff,
            ..Self::default()
        }
    }

    /// The cap on server-given waits (and the other signal settings).
    pub fn signals(mut self, signals: SignalConfig) -> Self {
        self.signals = signals;
        self
    }

    /// Retries made so far for this request.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

impl RetryPolicy {
    fn next_delay(&mut self, server_wait: Option<Duration>) -> Option<Duration> {
        let backoff = self.backoff.delay(self.attempt)?;
        self.attempt += 1;
        Some(server_wait.map_or(backoff, |w| w.min(self.signals.max_wait)))
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
        _request: &mut http::Request<B>,
        result: &mut Result<http::Response<ResB>, E>,
    ) -> Option<Self::Future> {
        let server_wait = match result {
            Ok(response)
                if is_transient(response.status())
                    || response.status() == http::StatusCode::FORBIDDEN =>
            {
                let s = Signal::parse(
                    response.status(),
                    response.headers(),
                    SystemTime::now(),
                    &self.signals,
                );
                if response.status() == http::StatusCode::FORBIDDEN && !s.limited {
                    return None; // a 403 that is not about rate limits
                }
                // Only an explicit wait wins over the schedule; the default
                // wait of a bare 429 is the registry's business.
                s.dialects
                    .contains(Dialect::RetryAfter)
                    .then_some(s.retry_after)
                    .flatten()
            }
            Ok(_) => return None,
            Err(e) => {
                let e: &(dyn StdError + Send + Sync) = (*e).borrow();
                if let Some(r) = e.downcast_ref::<RateLimited>() {
                    Some(r.retry_after())
                } else if let Some(Error::InFlightFull { .. }) = e.downcast_ref::<Error>() {
                    None // a slot frees when a response arrives: the schedule decides
                } else if e.downcast_ref::<Error>().is_some() {
                    return None;
                } else {
                    None
                }
            }
        };
        let delay = self.next_delay(server_wait)?;
        tracing::debug!(
            attempt = self.attempt,
            delay_ms = delay.as_secs_f64() * 1e3,
            "retrying"
        );
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &http::Request<B>) -> Option<http::Request<B>> {
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

/// A request body that may be copied for a retry. A streaming body that
/// cannot be replayed returns `None`, and its request is not retried.
pub trait TryCloneBody: Sized {
    /// A copy of the body, if it can be made.
    fn try_clone_body(&self) -> Option<Self>;
}

macro_rules! clone_body {
    ($($t:ty),*) => {$(
        impl TryCloneBody for $t {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

clone_body!((), String, Vec<u8>, &'static str, &'static [u8]);

impl<T: TryCloneBody> TryCloneBody for Option<T> {
    fn try_clone_body(&self) -> Option<Self> {
        match self {
            None => Some(None),
            Some(b) => b.try_clone_body().map(Some),
        }
    }
}
