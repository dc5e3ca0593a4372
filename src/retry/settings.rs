//! [`RetryRules`]: the settings both retry adapters share, and the one
//! function that turns a failed attempt into "retry after this long" or
//! "hand the result back".

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};

use super::rules::{decide, is_safe_to_repeat, Failure, Wait};
use super::RetryBudget;
use crate::backoff::Backoff;
use crate::{SignalConfig, Target};

type Predicate = dyn Fn(&Method, &Target<'_>) -> bool + Send + Sync;

/// Which requests with a non-idempotent method count as safe to repeat.
#[derive(Clone)]
enum NonIdempotent {
    Never,
    Always,
    When(Arc<Predicate>),
}

/// How a retry adapter decides: the backoff schedule, the cap on waits a
/// server gives, which non-idempotent requests may be repeated, and the
/// [`RetryBudget`]. Cheap to clone; clones share the budget.
///
/// The tower [`RetryPolicy`](crate::tower::RetryPolicy) and the reqwest
/// `RetryMiddleware` both take one, so both follow the same table (see the
/// [module docs](super)).
///
/// ```
/// use tollgate::backoff::Backoff;
/// use tollgate::retry::{RetryBudget, RetryRules};
///
/// let rules = RetryRules::new(Backoff::default())
///     .budget(RetryBudget::default())
///     // Our upload endpoint deduplicates by a field of the body.
///     .retry_non_idempotent_when(|_method, target| {
///         target.host() == "uploads.example.com"
///     });
/// # let _ = rules;
/// ```
#[derive(Clone)]
#[must_use]
pub struct RetryRules {
    backoff: Backoff,
    signals: SignalConfig,
    non_idempotent: NonIdempotent,
    budget: Option<RetryBudget>,
    retry_local_refusals: bool,
}

impl Default for RetryRules {
    /// [`Backoff::default`] (1 s, 2 s, 4 s with full jitter, 3 retries),
    /// `Retry-After` capped at 10 minutes, non-idempotent requests repeated
    /// only when the server cannot have processed them, the rate limiter's
    /// own refusals handed straight back, and a [`RetryBudget::default`]
    /// (20 % of requests plus 10 a second, per host).
    fn default() -> Self {
        RetryRules::new(Backoff::default())
    }
}

impl fmt::Debug for RetryRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let non_idempotent = match self.non_idempotent {
            NonIdempotent::Never => "never",
            NonIdempotent::Always => "always",
            NonIdempotent::When(_) => "when the predicate says so",
        };
        f.debug_struct("RetryRules")
            .field("backoff", &self.backoff)
            .field("signals", &self.signals)
            .field("non_idempotent", &non_idempotent)
            .field("budget", &self.budget)
            .field("retry_local_refusals", &self.retry_local_refusals)
            .finish()
    }
}

/// One request as the rules see it; the adapters build it from their own
/// request type.
#[cfg_attr(not(any(feature = "tower", feature = "reqwest")), allow(dead_code))]
pub(crate) struct Attempted<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub target: Target<'a>,
    /// The request carries [`SafeToRetry`](super::SafeToRetry).
    pub marked: bool,
}

// The crate-private half is for the adapters, which features may leave out.
#[cfg_attr(not(any(feature = "tower", feature = "reqwest")), allow(dead_code))]
impl RetryRules {
    /// Rules with this backoff schedule and the other defaults.
    pub fn new(backoff: Backoff) -> Self {
        RetryRules {
            backoff,
            signals: SignalConfig::default(),
            non_idempotent: NonIdempotent::Never,
            budget: Some(RetryBudget::default()),
            retry_local_refusals: false,
        }
    }

    /// The cap on server-given waits ([`SignalConfig::max_wait`]).
    pub fn signals(mut self, signals: SignalConfig) -> Self {
        self.signals = signals;
        self
    }

    /// `true`: every request counts as safe to repeat, whatever its
    /// method (for APIs whose POSTs are idempotent by design). `false`, the
    /// default: a POST, a PATCH or an unknown method is repeated only when
    /// the server cannot have processed it.
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.non_idempotent = if yes {
            NonIdempotent::Always
        } else {
            NonIdempotent::Never
        };
        self
    }

    /// A non-idempotent request counts as safe to repeat when `f` says so,
    /// given its method and target (host, port, path). For a per-source
    /// opt-in, ask a [`Registry`](crate::Registry) in `f`:
    /// `registry.source_for(target)`.
    pub fn retry_non_idempotent_when(
        mut self,
        f: impl Fn(&Method, &Target<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.non_idempotent = NonIdempotent::When(Arc::new(f));
        self
    }

    /// `false`, the default: a refusal by the rate limiter itself (a
    /// [`RateLimited`](crate::RateLimited) from a source in reject mode or
    /// past its `max_wait`, or an [`InFlightFull`](crate::ErrorKind::InFlightFull))
    /// goes straight back to the caller, so reject means reject even with
    /// the retry layer outside the limiter. `true`: such a refusal is
    /// retried after its `retry_after` (an `InFlightFull` after the
    /// backoff), within `max_retries` and the budget, for any method, since
    /// nothing was sent.
    ///
    /// ```
    /// use tollgate::retry::RetryRules;
    ///
    /// // Wait out the limiter's refusals too, as if the source waited.
    /// let rules = RetryRules::default().retry_local_refusals(true);
    /// assert!(rules.retries_local_refusals());
    /// ```
    pub fn retry_local_refusals(mut self, yes: bool) -> Self {
        self.retry_local_refusals = yes;
        self
    }

    /// Whether the rate limiter's own refusals are retried (see
    /// [`retry_local_refusals`](Self::retry_local_refusals)).
    pub fn retries_local_refusals(&self) -> bool {
        self.retry_local_refusals
    }

    /// The budget retries draw on (default: [`RetryBudget::default`]).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// No budget: every allowed failure is retried up to the backoff's
    /// `max_retries`.
    pub fn without_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The backoff schedule.
    pub fn backoff_schedule(&self) -> &Backoff {
        &self.backoff
    }

    /// The signal settings (the cap on server-given waits).
    pub fn signal_config(&self) -> &SignalConfig {
        &self.signals
    }

    /// The budget, if any.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    pub(crate) fn safe_to_repeat(&self, r: &Attempted<'_>) -> bool {
        r.marked
            || is_safe_to_repeat(r.method, r.headers)
            || match &self.non_idempotent {
                NonIdempotent::Never => false,
                NonIdempotent::Always => true,
                NonIdempotent::When(f) => f(r.method, &r.target),
            }
    }

    /// A request starts: it pays into the budget.
    pub(crate) fn started(&self, r: &Attempted<'_>) {
        if let Some(b) = &self.budget {
            b.deposit(&r.target);
        }
    }

    /// The wait before retrying after `failure` on retry number `attempt`
    /// (from 0), or `None` to hand the result back: the limiter's own
    /// refusals unless opted in, then the table, then the backoff's
    /// `max_retries`, then the budget.
    pub(crate) fn next_retry(
        &self,
        r: &Attempted<'_>,
        failure: &Failure,
        attempt: u32,
    ) -> Option<Duration> {
        if failure.is_local_refusal() && !self.retry_local_refusals {
            tracing::debug!(
                ?failure,
                "not retried: the rate limiter refused it (retry_local_refusals is off)"
            );
            return None;
        }
        let Some(wait) = decide(failure, self.safe_to_repeat(r)) else {
            tracing::debug!(?failure, method = %r.method, "not retried: the request may have been processed");
            return None;
        };
        let backoff = self.backoff.delay(attempt)?;
        if let Some(b) = &self.budget {
            if !b.try_withdraw(&r.target) {
                tracing::debug!(
                    host = r.target.host(),
                    "not retried: the retry budget is spent"
                );
                return None;
            }
        }
        let delay = match wait {
            Wait::Backoff => backoff,
            Wait::Exactly(d) => d.min(self.signals.max_wait),
        };
        tracing::debug!(
            ?failure,
            attempt,
            delay_ms = delay.as_secs_f64() * 1e3,
            "retrying"
        );
        Some(delay)
    }
}
