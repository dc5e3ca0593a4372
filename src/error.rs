//! The crate's errors: one opaque [`Error`] for everything a caller can get
//! wrong or be refused, its [`ErrorKind`], and the [`RateLimited`] refusal.
//!
//! [`Error`] is a struct with private fields, not an enum: the kinds and the
//! data each carries can grow without breaking a caller's `match`. Ask it
//! what it is with [`kind`](Error::kind) or a predicate
//! ([`is_rate_limited`](Error::is_rate_limited), [`is_store`](Error::is_store),
//! ...), and read what it knows with an accessor
//! ([`retry_after`](Error::retry_after), [`host`](Error::host), ...). It is
//! `Clone`, and four words wide: a refusal, which callers that poll meet at
//! every turn, is kept inline and costs no allocation (a
//! `TokenBucket::try_acquire` refused costs what governor's does); every
//! other kind is boxed, so a `Result<_, Error>` stays small on the paths
//! that succeed.
//!
//! An error keeps what caused it: a [`Store`](ErrorKind::Store) error's
//! [`source()`](std::error::Error::source) is the `redis::RedisError` it
//! comes from. Its `Display` is its own message only, so a reporter that
//! walks the chain (`{:#}` of `anyhow`) prints each cause once.
//!
//! Every message says what to change. Errors are values: nothing in tollgate
//! panics on bad input, and nothing waits forever.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A request was refused because its tokens are not available soon enough.
///
/// Returned by [`TokenBucket::try_acquire`](crate::TokenBucket::try_acquire), by
/// [`TokenBucket::reserve`](crate::TokenBucket::reserve) when the slot lies beyond
/// `max_wait`, and by the adapters for a source in reject mode (inside an
/// [`Error`]: see [`Error::as_rate_limited`]). Nothing was consumed: retrying
/// after [`retry_after`](Self::retry_after) succeeds unless someone else
/// takes the tokens first.
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

/// What an [`Error`] is, from [`Error::kind`]: one value per kind, without
/// its data. New kinds may be added, so a `match` needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The tokens are not available soon enough; see [`RateLimited`] and
    /// [`Error::retry_after`].
    RateLimited,
    /// A token count was zero, negative, NaN or infinite.
    InvalidTokens,
    /// More tokens were asked for than the bucket can ever hold, so the
    /// request could never be served.
    InsufficientCapacity,
    /// A policy could not be built or parsed.
    InvalidPolicy,
    /// A registry source name that is not registered
    /// ([`Error::source_name`] is the name asked for).
    UnknownSource,
    /// A request for a host that no rule matches, with the registry set to
    /// refuse unknown hosts, or a request that names no host at all
    /// ([`Error::host`]).
    UnknownHost,
    /// A registry could not be built, or a runtime change was refused
    /// ([`Error::location`] says where).
    InvalidConfig,
    /// A source's [`max_in_flight`](crate::Source::max_in_flight) slots were
    /// all taken, and the source refuses rather than waits (reject mode, or a
    /// `max_wait` that ran out). Unlike [`ErrorKind::RateLimited`] there is no
    /// exact time to retry at: a slot frees when a response arrives, so
    /// retries, where opted in with
    /// [`RetryRules::retry_local_refusals`](crate::retry::RetryRules::retry_local_refusals),
    /// follow their backoff schedule.
    InFlightFull,
    /// The state store (for example Redis) failed and the source fails
    /// closed; [`source()`](std::error::Error::source) is the store's own
    /// error, when there is one.
    Store,
    /// A synchronous check (`try_acquire`, `check`) of a source whose
    /// limits live in a shared store (Redis), which only an asynchronous
    /// call can ask.
    AsyncOnly,
}

/// What caused an [`Error`]: shared, so the error stays `Clone`.
pub(crate) type Cause = Arc<dyn StdError + Send + Sync>;

/// Everything tollgate can refuse or reject: opaque, see the
/// [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tollgate::{ErrorKind, Policy, TokenBucket};
///
/// let bucket = TokenBucket::new(Policy::per_second(1.0)?);
/// bucket.try_acquire(1.0)?;
/// let refused = bucket.try_acquire(1.0).unwrap_err();
/// assert_eq!(refused.kind(), ErrorKind::RateLimited);
/// assert!(refused.retry_after() > Some(Duration::ZERO));
///
/// let bad = bucket.try_acquire(f64::NAN).unwrap_err();
/// assert!(bad.is_invalid_tokens() && bad.retry_after().is_none());
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Kept,
}

/// A refusal inline, as callers that poll meet it at every turn (no
/// allocation, and as fast as a `RateLimited` of its own); every other
/// kind boxed, so that a `Result<_, Error>` stays four words whatever a
/// kind carries.
#[derive(Clone)]
enum Kept {
    Limited(RateLimited),
    Other(Heavy),
}

/// Every kind but a refusal, boxed behind a trait object: dropping one is a
/// call through its vtable, so the drop of an `Error` is small enough to be
/// inlined where a refusal is dropped. Behind a `Box<Inner>`, that drop was
/// a call of its own on every refusal (the glue of every kind's fields),
/// about a tenth of the time of a refused `try_acquire`.
struct Heavy(Box<dyn AsInner>);

trait AsInner: Send + Sync {
    fn get(&self) -> &Inner;
    fn get_mut(&mut self) -> &mut Inner;
    fn cloned(&self) -> Heavy;
}

impl AsInner for Inner {
    fn get(&self) -> &Inner {
        self
    }
    fn get_mut(&mut self) -> &mut Inner {
        self
    }
    fn cloned(&self) -> Heavy {
        Heavy(Box::new(self.clone()))
    }
}

impl Clone for Heavy {
    fn clone(&self) -> Self {
        self.0.cloned()
    }
}

impl std::ops::Deref for Heavy {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.0.get()
    }
}

impl std::ops::DerefMut for Heavy {
    fn deref_mut(&mut self) -> &mut Inner {
        self.0.get_mut()
    }
}

#[derive(Clone)]
struct Inner {
    repr: Repr,
    cause: Option<Cause>,
}

/// Each kind but a refusal, with its data.
#[derive(Clone, Debug)]
enum Repr {
    InvalidTokens {
        tokens: f64,
    },
    InsufficientCapacity {
        tokens: f64,
        capacity: f64,
    },
    InvalidPolicy {
        /// The text parsed, or the constructor and its arguments.
        input: String,
        reason: String,
    },
    UnknownSource {
        name: String,
        known: Vec<String>,
    },
    UnknownHost {
        /// Normalised; empty when the request named none.
        host: String,
    },
    InvalidConfig {
        /// A source name, a rule, or `line N, key K` for a TOML file.
        location: String,
        reason: String,
    },
    InFlightFull {
        source: String,
        max_in_flight: usize,
    },
    // Only a Redis store fails.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Store {
        message: String,
    },
    AsyncOnly {
        source: String,
    },
}

impl Error {
    fn new(repr: Repr) -> Self {
        Error {
            inner: Kept::Other(Heavy(Box::new(Inner { repr, cause: None }))),
        }
    }

    /// What a boxed error is (`None` for a refusal).
    #[inline]
    fn other(&self) -> Option<&Repr> {
        match &self.inner {
            Kept::Limited(_) => None,
            Kept::Other(b) => Some(&b.repr),
        }
    }

    /// What this error is.
    pub fn kind(&self) -> ErrorKind {
        let Some(repr) = self.other() else {
            return ErrorKind::RateLimited;
        };
        match repr {
            Repr::InvalidTokens { .. } => ErrorKind::InvalidTokens,
            Repr::InsufficientCapacity { .. } => ErrorKind::InsufficientCapacity,
            Repr::InvalidPolicy { .. } => ErrorKind::InvalidPolicy,
            Repr::UnknownSource { .. } => ErrorKind::UnknownSource,
            Repr::UnknownHost { .. } => ErrorKind::UnknownHost,
            Repr::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            Repr::InFlightFull { .. } => ErrorKind::InFlightFull,
            Repr::Store { .. } => ErrorKind::Store,
            Repr::AsyncOnly { .. } => ErrorKind::AsyncOnly,
        }
    }

    /// The limiter refused: the tokens are not available soon enough.
    /// [`retry_after`](Self::retry_after) says when they are.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.inner, Kept::Limited(_))
    }

    /// The refusal, when this error is one.
    pub fn as_rate_limited(&self) -> Option<&RateLimited> {
        match &self.inner {
            Kept::Limited(r) => Some(r),
            Kept::Other(_) => None,
        }
    }

    /// How long until a refused request would be admitted, when this error
    /// is a refusal ([`RateLimited::retry_after`]); `None` otherwise, an
    /// [`InFlightFull`](ErrorKind::InFlightFull) included, which knows no
    /// time.
    pub fn retry_after(&self) -> Option<Duration> {
        self.as_rate_limited().map(RateLimited::retry_after)
    }

    /// A source's `max_in_flight` slots were all taken, and it refuses
    /// rather than waits.
    pub fn is_in_flight_full(&self) -> bool {
        matches!(self.other(), Some(Repr::InFlightFull { .. }))
    }

    /// The shared store (Redis) failed; [`source()`](StdError::source) is
    /// its own error, when there is one.
    pub fn is_store(&self) -> bool {
        matches!(self.other(), Some(Repr::Store { .. }))
    }

    /// A mistake in the setup, not in one request: a policy that cannot be
    /// built or parsed, an invalid configuration, or a source name that is
    /// not registered.
    pub fn is_config(&self) -> bool {
        matches!(
            self.other(),
            Some(
                Repr::InvalidPolicy { .. }
                    | Repr::InvalidConfig { .. }
                    | Repr::UnknownSource { .. }
            )
        )
    }

    /// A request for a host that no rule matches, with the registry set to
    /// refuse such hosts, or a request that names no host.
    pub fn is_unknown_host(&self) -> bool {
        matches!(self.other(), Some(Repr::UnknownHost { .. }))
    }

    /// A token count that can never be served: zero, negative, NaN or
    /// infinite ([`ErrorKind::InvalidTokens`]), or more than the bucket can
    /// hold ([`ErrorKind::InsufficientCapacity`]). Never worth a retry.
    pub fn is_invalid_tokens(&self) -> bool {
        matches!(
            self.other(),
            Some(Repr::InvalidTokens { .. } | Repr::InsufficientCapacity { .. })
        )
    }

    /// The registry source the error is about: the one that refused (a
    /// refusal through a registry, [`InFlightFull`](ErrorKind::InFlightFull)),
    /// the one that only answers asynchronously
    /// ([`AsyncOnly`](ErrorKind::AsyncOnly)), or the name that is not
    /// registered ([`UnknownSource`](ErrorKind::UnknownSource)).
    pub fn source_name(&self) -> Option<&str> {
        let repr = match &self.inner {
            Kept::Limited(r) => return r.source(),
            Kept::Other(b) => &b.repr,
        };
        match repr {
            Repr::InFlightFull { source, .. } | Repr::AsyncOnly { source } => Some(source),
            Repr::UnknownSource { name, .. } => Some(name),
            _ => None,
        }
    }

    /// How many requests the source lets be in flight at once, for an
    /// [`InFlightFull`](ErrorKind::InFlightFull).
    pub fn in_flight_cap(&self) -> Option<usize> {
        match self.other()? {
            Repr::InFlightFull { max_in_flight, .. } => Some(*max_in_flight),
            _ => None,
        }
    }

    /// The normalised host no rule matches, for an
    /// [`UnknownHost`](ErrorKind::UnknownHost): empty when the request named
    /// none.
    pub fn host(&self) -> Option<&str> {
        match self.other()? {
            Repr::UnknownHost { host } => Some(host),
            _ => None,
        }
    }

    /// Where an [`InvalidConfig`](ErrorKind::InvalidConfig) is: a source, a
    /// rule, a setting, or `line N, key K` in a TOML file.
    pub fn location(&self) -> Option<&str> {
        match self.other()? {
            Repr::InvalidConfig { location, .. } => Some(location),
            _ => None,
        }
    }

    /// What is wrong with an [`InvalidConfig`](ErrorKind::InvalidConfig) or
    /// an [`InvalidPolicy`](ErrorKind::InvalidPolicy), and what to write
    /// instead: the message without the [`location`](Self::location) or
    /// the input.
    pub fn reason(&self) -> Option<&str> {
        match self.other()? {
            Repr::InvalidConfig { reason, .. } | Repr::InvalidPolicy { reason, .. } => Some(reason),
            _ => None,
        }
    }

    // Constructors and readers for the crate, one per kind.

    #[cold]
    pub(crate) fn invalid_tokens(tokens: f64) -> Self {
        Error::new(Repr::InvalidTokens { tokens })
    }

    #[cold]
    pub(crate) fn insufficient_capacity(tokens: f64, capacity: f64) -> Self {
        Error::new(Repr::InsufficientCapacity { tokens, capacity })
    }

    pub(crate) fn policy(input: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::new(Repr::InvalidPolicy {
            input: input.into(),
            reason: reason.into(),
        })
    }

    pub(crate) fn unknown_source(name: impl Into<String>, known: Vec<String>) -> Self {
        Error::new(Repr::UnknownSource {
            name: name.into(),
            known,
        })
    }

    pub(crate) fn unknown_host(host: impl Into<String>) -> Self {
        Error::new(Repr::UnknownHost { host: host.into() })
    }

    pub(crate) fn config(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::new(Repr::InvalidConfig {
            location: location.into(),
            reason: reason.into(),
        })
    }

    pub(crate) fn in_flight_full(source: impl Into<String>, max_in_flight: usize) -> Self {
        Error::new(Repr::InFlightFull {
            source: source.into(),
            max_in_flight,
        })
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn store(message: impl Into<String>) -> Self {
        Error::new(Repr::Store {
            message: message.into(),
        })
    }

    pub(crate) fn async_only(source: impl Into<String>) -> Self {
        Error::new(Repr::AsyncOnly {
            source: source.into(),
        })
    }

    /// The same error, caused by `cause` (what [`source()`](StdError::source)
    /// gives). The message must not repeat the cause's: a chain prints both.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn with_cause(mut self, cause: Cause) -> Self {
        // A refusal has no cause, and is never given one.
        if let Kept::Other(b) = &mut self.inner {
            b.cause = Some(cause);
        }
        self
    }

    /// What caused this error, shared, to hand to another.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn cause(&self) -> Option<&Cause> {
        match &self.inner {
            Kept::Limited(_) => None,
            Kept::Other(b) => b.cause.as_ref(),
        }
    }

    /// The message of a [`Store`](ErrorKind::Store) error, without the
    /// prefix `Display` adds.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn store_message(&self) -> Option<&str> {
        match self.other()? {
            Repr::Store { message } => Some(message),
            _ => None,
        }
    }

    /// For the crate's logs: the message (a store's without its prefix),
    /// then each cause after `: `, which `Display` leaves to `source()`.
    #[cfg_attr(not(any(feature = "redis", feature = "server")), allow(dead_code))]
    pub(crate) fn detail(&self) -> impl fmt::Display + '_ {
        struct Detail<'a>(&'a Error);
        impl fmt::Display for Detail<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0.store_message() {
                    Some(message) => f.write_str(message)?,
                    None => fmt::Display::fmt(self.0, f)?,
                }
                let mut next = self.0.source();
                while let Some(cause) = next {
                    write!(f, ": {cause}")?;
                    next = cause.source();
                }
                Ok(())
            }
        }
        Detail(self)
    }

    /// An [`InvalidConfig`](ErrorKind::InvalidConfig) placed where `at`
    /// says, given where it was; any other error unchanged.
    pub(crate) fn relocate(mut self, at: impl FnOnce(&str) -> String) -> Self {
        if let Kept::Other(b) = &mut self.inner {
            if let Repr::InvalidConfig { location, .. } = &mut b.repr {
                *location = at(location);
            }
        }
        self
    }

    /// A refusal that names `source`; any other error unchanged.
    pub(crate) fn name_source(mut self, source: &Arc<str>) -> Self {
        if let Kept::Limited(r) = &mut self.inner {
            r.source = Some(source.clone());
        }
        self
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("Error");
        match &self.inner {
            Kept::Limited(r) => d.field(r),
            Kept::Other(b) => match &b.cause {
                Some(cause) => d.field(&b.repr).field(cause),
                None => d.field(&b.repr),
            },
        };
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let repr = match &self.inner {
            Kept::Limited(r) => return r.fmt(f),
            Kept::Other(b) => &b.repr,
        };
        match repr {
            Repr::InvalidTokens { tokens } => write!(
                f,
                "invalid token count {tokens}: ask for a finite number greater than zero"
            ),
            Repr::InsufficientCapacity { tokens, capacity } => write!(
                f,
                "{tokens} tokens can never be served by a bucket of capacity {capacity}: \
                 ask for at most {capacity}, or raise the policy's burst"
            ),
            Repr::InvalidPolicy { input, reason } => {
                write!(f, "invalid policy `{input}`: {reason}")
            }
            Repr::UnknownSource { name, known } => write!(
                f,
                "no source named `{name}`; registered sources: [{}]",
                known.join(", ")
            ),
            Repr::UnknownHost { host } if host.is_empty() => write!(
                f,
                "the request names no host (no URI authority and no Host header); \
                 send an absolute URI, or choose a default source or pass-through for unknown hosts"
            ),
            Repr::UnknownHost { host } => write!(
                f,
                "no rule matches host `{host}`; add a source for it, or choose a default \
                 source or pass-through for unknown hosts"
            ),
            Repr::InvalidConfig { location, reason } => {
                write!(f, "invalid configuration at {location}: {reason}")
            }
            Repr::InFlightFull {
                source,
                max_in_flight,
            } => write!(
                f,
                "source `{source}` has all {max_in_flight} of its in-flight slots taken: \
                 retry once a response arrives, raise max_in_flight, or let the source wait"
            ),
            Repr::Store { message } => write!(f, "rate-limit store failed: {message}"),
            Repr::AsyncOnly { source } => write!(
                f,
                "source `{source}` keeps its limits in Redis, which a synchronous check cannot \
                 ask: use `Registry::admit` or `acquire` (with `OnLimit::Reject` they answer \
                 after one round trip), or keep the source in process with `Source::in_process`"
            ),
        }
    }
}

/// `source()` is the cause the error keeps (a store's own error). A
/// refusal's message is the [`RateLimited`]'s own, and it names no
/// `source()`: a reporter that walks the chain prints it once, not twice.
impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let Kept::Other(b) = &self.inner else {
            return None;
        };
        let cause: &(dyn StdError + 'static) = b.cause.as_deref()?;
        Some(cause)
    }
}

impl From<RateLimited> for Error {
    #[inline]
    fn from(r: RateLimited) -> Self {
        Error {
            inner: Kept::Limited(r),
        }
    }
}

#[cfg(test)]
mod tests;
