//! The crate's errors: one [`Error`] enum for everything a caller can get wrong
//! or be refused, and the [`RateLimited`] refusal it carries.
//!
//! Every message says what to change. Errors are values: nothing in tollgate
//! panics on bad input, and nothing waits forever.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A request was refused because its tokens are not available soon enough.
///
/// Returned by [`TokenBucket::try_acquire`](crate::TokenBucket::try_acquire), by
/// [`TokenBucket::reserve`](crate::TokenBucket::reserve) when the slot lies beyond
/// `max_wait`, and by the adapters for a source in reject mode. Nothing was
/// consumed: retrying after [`retry_after`](Self::retry_after) succeeds unless
/// someone else takes the tokens first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    // Nanoseconds, not a `Duration`: building one costs a division on the
    // refusal path, which is hot for callers that poll.
    retry_after_nanos: u64,
    source: Option<Arc<str>>,
}

impl RateLimited {
    /// A refusal with no source name.
    pub fn new(retry_after: Duration) -> Self {
        Self::from_nanos(crate::clock::duration_nanos(retry_after))
    }

    #[inline]
    pub(crate) fn from_nanos(retry_after_nanos: u64) -> Self {
        RateLimited {
            retry_after_nanos,
            source: None,
        }
    }

    /// How long until the request would be admitted, exact to the nanosecond
    /// at the moment of the refusal.
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_after_nanos)
    }

    /// The registry source that refused, when the refusal came through a registry.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The same refusal, naming the source that gave it.
    pub fn with_source(mut self, source: Arc<str>) -> Self {
        self.source = Some(source);
        self
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(
                f,
                "rate limited by source `{s}`: retry after {:?}",
                self.retry_after()
            ),
            None => write!(f, "rate limited: retry after {:?}", self.retry_after()),
        }
    }
}

impl std::error::Error for RateLimited {}

/// Everything tollgate can refuse or reject.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The tokens are not available soon enough; see [`RateLimited`].
    RateLimited(RateLimited),
    /// A token count was zero, negative, NaN or infinite.
    InvalidTokens {
        /// The count that was asked for.
        tokens: f64,
    },
    /// More tokens were asked for than the bucket can ever hold, so the
    /// request could never be served.
    InsufficientCapacity {
        /// The count that was asked for.
        tokens: f64,
        /// The bucket's capacity (its burst).
        capacity: f64,
    },
    /// A policy could not be built or parsed.
    InvalidPolicy {
        /// What was given (the text parsed, or the constructor and its arguments).
        input: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// A registry source name that is not registered.
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The names that are registered.
        known: Vec<String>,
    },
    /// A request for a host that no rule matches, with the registry set to
    /// refuse unknown hosts (or a request that names no host at all).
    UnknownHost {
        /// The normalised host, or an empty string when the request had none.
        host: String,
    },
    /// A registry could not be built, or a runtime change was refused.
    InvalidConfig {
        /// Where: a source name, a rule, or `line N, key K` for a TOML file.
        location: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// A source's [`max_in_flight`](crate::Source::max_in_flight) slots were
    /// all taken, and the source refuses rather than waits (reject mode, or a
    /// `max_wait` that ran out). Unlike [`Error::RateLimited`] there is no
    /// exact time to retry at: a slot frees when a response arrives, so
    /// retries, where opted in with
    /// [`RetryRules::retry_local_refusals`](crate::retry::RetryRules::retry_local_refusals),
    /// follow their backoff schedule.
    InFlightFull {
        /// The source whose slots are taken.
        source: String,
        /// How many requests it lets be in flight at once.
        max_in_flight: usize,
    },
    /// The state store (for example Redis) failed and the source fails closed.
    Store {
        /// What the store said.
        message: String,
    },
    /// A synchronous check (`try_acquire`, `check`) of a source whose
    /// limits live in a shared store (Redis), which only an asynchronous
    /// call can ask.
    AsyncOnly {
        /// The source.
        source: String,
    },
}

impl Error {
    /// The refusal, when this error is one.
    pub fn as_rate_limited(&self) -> Option<&RateLimited> {
        match self {
            Error::RateLimited(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn config(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            location: location.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn policy(input: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidPolicy {
            input: input.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RateLimited(r) => r.fmt(f),
            Error::InvalidTokens { tokens } => write!(
                f,
                "invalid token count {tokens}: ask for a finite number greater than zero"
            ),
            Error::InsufficientCapacity { tokens, capacity } => write!(
                f,
                "{tokens} tokens can never be served by a bucket of capacity {capacity}: \
                 ask for at most {capacity}, or raise the policy's burst"
            ),
            Error::InvalidPolicy { input, reason } => {
                write!(f, "invalid policy `{input}`: {reason}")
            }
            Error::UnknownSource { name, known } => write!(
                f,
                "no source named `{name}`; registered sources: [{}]",
                known.join(", ")
            ),
            Error::UnknownHost { host } if host.is_empty() => write!(
                f,
                "the request names no host (no URI authority and no Host header); \
                 send an absolute URI, or choose a default source or pass-through for unknown hosts"
            ),
            Error::UnknownHost { host } => write!(
                f,
                "no rule matches host `{host}`; add a source for it, or choose a default \
                 source or pass-through for unknown hosts"
            ),
            Error::InvalidConfig { location, reason } => {
                write!(f, "invalid configuration at {location}: {reason}")
            }
            Error::InFlightFull {
                source,
                max_in_flight,
            } => write!(
                f,
                "source `{source}` has all {max_in_flight} of its in-flight slots taken: \
                 retry once a response arrives, raise max_in_flight, or let the source wait"
            ),
            Error::Store { message } => write!(f, "rate-limit store failed: {message}"),
            Error::AsyncOnly { source } => write!(
                f,
                "source `{source}` keeps its limits in Redis, which a synchronous check cannot \
                 ask: use `Registry::admit` or `acquire` (with `OnLimit::Reject` they answer \
                 after one round trip), or keep the source in process with `Source::in_process`"
            ),
        }
    }
}

/// The message of [`Error::RateLimited`] is the [`RateLimited`]'s own, so
/// the error names no `source()`: a reporter that walks the chain (`{:#}` of
/// `anyhow`) prints it once, not twice.
impl std::error::Error for Error {}

impl From<RateLimited> for Error {
    fn from(r: RateLimited) -> Self {
        Error::RateLimited(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn assert<T: Send + Sync + 'static + std::error::Error>() {}
        assert::<Error>();
        assert::<RateLimited>();
    }

    #[test]
    fn messages_say_what_to_change() {
        let e = Error::InsufficientCapacity {
            tokens: 5.0,
            capacity: 3.0,
        };
        assert!(e.to_string().contains("at most 3"), "{e}");
        let e = Error::UnknownSource {
            name: "x".into(),
            known: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "no source named `x`; registered sources: [a, b]"
        );
    }
}
