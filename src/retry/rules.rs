//! The decision table: which failed attempts may be repeated, and how long
//! to wait first. Pure functions of the failure and of whether the request
//! is safe to repeat; the adapters read their own request and result types
//! into a [`Failure`] and ask [`decide`].

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};

use crate::{signal, Error, Signal, SignalConfig};

/// Marks one request as safe to repeat even though its method is not
/// idempotent (for example a POST that the server deduplicates by a field
/// of its body). Put it in the request's extensions: `http::Request::extensions_mut`
/// for tower, `RequestBuilder::with_extension` for reqwest-middleware.
///
/// ```
/// let mut req = http::Request::post("https://api.example.com/items").body(()).unwrap();
/// req.extensions_mut().insert(tollgate::retry::SafeToRetry);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SafeToRetry;

/// What went wrong with one attempt, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No connection was made, so no byte of the request was sent.
    Connect,
    /// The rate limiter refused before sending, and said exactly when the
    /// request would be admitted.
    Refused(Duration),
    /// A source's `max_in_flight` slots were all taken; nothing was sent.
    InFlightFull,
    /// The attempt timed out. The request may have been sent and processed.
    Timeout,
    /// Another transport error after the connection was made (a reset, an
    /// incomplete response): the request may have been processed.
    Transport,
    /// The server answered with an error status.
    Response {
        /// The status (4xx or 5xx).
        status: StatusCode,
        /// The server's valid `Retry-After`, when it sent one (not capped).
        retry_after: Option<Duration>,
        /// The response says the quota is spent (`remaining = 0` in a
        /// rate-limit header), as GitHub answers with 403.
        quota_spent: bool,
    },
    /// Not worth another try: a configuration error, a request that cannot
    /// be built, a body that failed.
    Permanent,
}

/// How long to wait before the retry that [`decide`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// The backoff schedule's delay for this attempt.
    Backoff,
    /// Exactly this long: the server's `Retry-After` or the limiter's
    /// `retry_after` (the adapters cap it at [`SignalConfig::max_wait`]).
    Exactly(Duration),
}

/// RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE are
/// idempotent; POST, PATCH, CONNECT and unknown methods are not.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// An idempotent method, or any request that carries an `Idempotency-Key`
/// header (the server promises to apply it once).
pub fn is_safe_to_repeat(method: &Method, headers: &HeaderMap) -> bool {
    is_idempotent(method) || headers.contains_key("idempotency-key")
}

/// The table of the [module docs](super): whether a failure may be retried,
/// given whether the request is safe to repeat, and how long to wait.
/// `None`: hand the result back. The attempt count, the budget and whether
/// the limiter's own refusals are retried at all
/// ([`RetryRules::retry_local_refusals`](super::RetryRules::retry_local_refusals),
/// off by default) are the caller's to check.
pub fn decide(failure: &Failure, safe_to_repeat: bool) -> Option<Wait> {
    match *failure {
        // Nothing reached the server: repeating cannot do anything twice.
        Failure::Connect | Failure::InFlightFull => Some(Wait::Backoff),
        Failure::Refused(after) => Some(Wait::Exactly(after)),
        Failure::Timeout | Failure::Transport => safe_to_repeat.then_some(Wait::Backoff),
        Failure::Response {
            status,
            retry_after,
            quota_spent,
        } => {
            let wait = retry_after.map_or(Wait::Backoff, Wait::Exactly);
            match status.as_u16() {
                // The server refused to process it: safe for any method.
                429 => Some(wait),
                403 if quota_spent => Some(wait),
                503 if retry_after.is_some() => Some(wait),
                // It may have been processed (a gateway lost the answer).
                408 | 502 | 503 | 504 if safe_to_repeat => Some(wait),
                _ => None,
            }
        }
        Failure::Permanent => None,
    }
}

impl Failure {
    /// A refusal by the rate limiter itself ([`Failure::Refused`],
    /// [`Failure::InFlightFull`]): the adapters hand it back unless
    /// [`RetryRules::retry_local_refusals`](super::RetryRules::retry_local_refusals)
    /// says otherwise.
    pub fn is_local_refusal(&self) -> bool {
        matches!(self, Failure::Refused(_) | Failure::InFlightFull)
    }

    /// The failure a response stands for, or `None` when its status is not
    /// an error (1xx, 2xx, 3xx). `now` is the wall clock, for a
    /// `Retry-After` given as an HTTP-date.
    pub fn from_response(
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
        signals: &SignalConfig,
    ) -> Option<Failure> {
        if !(status.is_client_error() || status.is_server_error()) {
            return None;
        }
        // A 403 is a rate limit only when the signal reader says so: a
        // `Retry-After`, or a spent quota (GitHub's answer).
        let quota_spent =
            status == StatusCode::FORBIDDEN && Signal::parse(status, headers, now, signals).limited;
        Some(Failure::Response {
            status,
            retry_after: signal::retry_after(headers, now),
            quota_spent,
        })
    }

    /// The failure an error stands for, read along its `source()` chain:
    /// tollgate's refusals; tower's `Elapsed` and an I/O `TimedOut` are
    /// timeouts; an I/O error that no connection was made
    /// (`ConnectionRefused`, `AddrNotAvailable`, `HostUnreachable`,
    /// `NetworkUnreachable`, as hyper-util's connector reports them) is a
    /// connect error; tollgate's configuration errors are permanent;
    /// anything else is a [`Failure::Transport`], which is retried only for
    /// a request that is safe to repeat.
    pub fn from_error(err: &(dyn StdError + 'static)) -> Failure {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(e) = e.downcast_ref::<Error>() {
                return match e.retry_after() {
                    Some(after) => Failure::Refused(after),
                    None if e.is_in_flight_full() => Failure::InFlightFull,
                    None => Failure::Permanent,
                };
            }
            #[cfg(feature = "tower")]
            if e.is::<tower::timeout::error::Elapsed>() {
                return Failure::Timeout;
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable => return Failure::Connect,
                    io::ErrorKind::TimedOut => return Failure::Timeout,
                    _ => {}
                }
            }
            next = e.source();
        }
        Failure::Transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> Failure {
        Failure::Response {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: retry_after.map(Duration::from_secs),
            quota_spent: false,
        }
    }

    #[test]
    fn methods_per_rfc_9110() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(&m.parse().unwrap()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!is_idempotent(&m.parse().unwrap()), "{m}");
        }
        let mut headers = HeaderMap::new();
        assert!(!is_safe_to_repeat(&Method::POST, &headers));
        headers.insert("Idempotency-Key", "8e03978e".parse().unwrap());
        assert!(is_safe_to_repeat(&Method::POST, &headers));
    }

    #[test]
    fn a_request_that_may_have_been_processed_is_repeated_only_when_safe() {
        for f in [
            Failure::Timeout,
            Failure::Transport,
            status(408, None),
            status(502, None),
            status(503, None),
            status(504, None),
        ] {
            assert_eq!(decide(&f, true), Some(Wait::Backoff), "{f:?}");
            assert_eq!(decide(&f, false), None, "{f:?}");
        }
        let two = Some(Wait::Exactly(Duration::from_secs(2)));
        for f in [status(429, Some(2)), status(503, Some(2))] {
            assert_eq!(decide(&f, false), two, "{f:?}");
            assert_eq!(decide(&f, true), two, "{f:?}");
        }
        assert_eq!(decide(&status(429, None), false), Some(Wait::Backoff));
        assert_eq!(decide(&Failure::Connect, false), Some(Wait::Backoff));
        for f in [status(400, None), status(500, None), Failure::Permanent] {
            assert_eq!(decide(&f, true), None, "{f:?}");
        }
    }

    #[test]
    fn errors_are_read_along_their_chain() {
        #[derive(Debug)]
        struct Wrapper<E>(E);
        impl<E> std::fmt::Display for Wrapper<E> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl<E: StdError + 'static> StdError for Wrapper<E> {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(Failure::from_error(&refused), Failure::Connect);
        let reset = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(Failure::from_error(&reset), Failure::Transport);
        let unknown = Error::unknown_host("x");
        assert_eq!(Failure::from_error(&unknown), Failure::Permanent);
        let refused = Error::from(crate::RateLimited::new(Duration::from_secs(2)));
        assert_eq!(
            Failure::from_error(&Wrapper(refused)),
            Failure::Refused(Duration::from_secs(2))
        );
        let full = Error::in_flight_full("s", 1);
        assert_eq!(Failure::from_error(&full), Failure::InFlightFull);
    }

    #[test]
    fn a_403_counts_only_when_the_quota_is_spent() {
        let mut headers = HeaderMap::new();
        let now = SystemTime::now();
        let cfg = SignalConfig::default();
        let f = Failure::from_response(StatusCode::FORBIDDEN, &headers, now, &cfg).unwrap();
        assert_eq!(decide(&f, true), None);
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        let f = Failure::from_response(StatusCode::FORBIDDEN, &headers, now, &cfg).unwrap();
        assert_eq!(decide(&f, false), Some(Wait::Backoff));
        assert_eq!(
            Failure::from_response(StatusCode::OK, &headers, now, &cfg),
            None
        );
    }
}
