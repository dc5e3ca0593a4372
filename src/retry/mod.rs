//! When a failed request may be sent again, and how many retries a host may
//! get: the rules both retry adapters follow (the tower
//! [`RetryPolicy`](crate::tower::RetryPolicy), and the reqwest
//! `RetryMiddleware` and `RateLimitStrategy`). The backoff schedule itself
//! is [`backoff`](crate::backoff); the adapters only read their request and
//! result into a [`Failure`] and ask [`RetryRules`].
//!
//! # Safe to repeat
//!
//! A request is safe to repeat when its method is idempotent (RFC 9110
//! §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), when it carries an
//! `Idempotency-Key` header, when it carries the [`SafeToRetry`] extension,
//! or when the rules opt it in
//! ([`retry_non_idempotent`](RetryRules::retry_non_idempotent),
//! [`retry_non_idempotent_when`](RetryRules::retry_non_idempotent_when)).
//! Any other request (POST, PATCH, an unknown method) is repeated only when
//! the server cannot have processed it.
//!
//! | failure | safe to repeat | POST, PATCH, other | wait |
//! |---|---|---|---|
//! | connect error (no byte sent) | retry | retry | backoff |
//! | refused by the rate limiter (`RateLimited`) | no¹ | no¹ | its `retry_after` |
//! | `max_in_flight` full (`ErrorKind::InFlightFull`) | no¹ | no¹ | backoff |
//! | timeout (may have been sent) | retry | **no** | backoff |
//! | other transport error (reset, incomplete answer) | retry | **no** | backoff |
//! | 408 | retry | **no** | backoff, or `Retry-After` |
//! | 429 | retry | retry | `Retry-After`, else backoff |
//! | 403 with `remaining: 0` (GitHub) | retry | retry | `Retry-After`, else backoff |
//! | 502, 504 | retry | **no** | backoff, or `Retry-After` |
//! | 503 without `Retry-After` | retry | **no** | backoff |
//! | 503 with `Retry-After` | retry | retry | `Retry-After` |
//! | any other status, tollgate's configuration errors | no | no | — |
//!
//! ¹ Reject means reject: a source in reject mode
//! ([`OnLimit::Reject`](crate::OnLimit::Reject)), or past its `max_wait`,
//! fails fast with its refusal even when the retry layer wraps the
//! limiter. [`RetryRules::retry_local_refusals`]`(true)` retries these
//! refusals (any method: nothing was sent), waiting the wait given.
//!
//! `Retry-After` is capped at [`SignalConfig::max_wait`](crate::SignalConfig)
//! (10 minutes by default). Backoff is `base · 2^attempt` with full jitter
//! (1 s, 2 s, 4 s by default); after `max_retries` (3) the last result goes
//! back to the caller.
//!
//! # The budget
//!
//! Every allowed retry also draws on a [`RetryBudget`]: by default 20 % of
//! the requests to a host plus 10 retries a second, over a sliding 10 s.
//! Over the budget the last result goes back to the caller, so a host that
//! is down gets at most that share of extra attempts, however many callers
//! retry. Build it with [`RetryBudget::per_source`] to share it among a
//! registry source's hosts.
//!
//! One set of rules, with its budget, can serve both adapters and every
//! clone of them:
//!
//! ```
//! use std::time::Duration;
//! use tollgate::backoff::Backoff;
//! use tollgate::retry::{RetryBudget, RetryRules};
//! use tollgate::{presets, Registry};
//!
//! let registry = Registry::builder().source(presets::musicbrainz()).build()?;
//! let budget = RetryBudget::new(0.1, 1.0, Duration::from_secs(10))?.per_source(registry.clone());
//! let rules = RetryRules::new(Backoff::default().base(Duration::from_millis(500)).max_retries(5))
//!     .budget(budget)
//!     // This API deduplicates POSTs by a field of the body: opt them in.
//!     .retry_non_idempotent_when(|_method, target| target.host() == "api.example.com");
//! # #[cfg(feature = "tower")]
//! let tower_policy = tollgate::tower::RetryPolicy::with_rules(rules.clone());
//! # #[cfg(feature = "reqwest")]
//! let reqwest_retry = tollgate::reqwest::RetryMiddleware::new(rules);
//! # Ok::<(), tollgate::Error>(())
//! ```

mod budget;
mod rules;
mod settings;

pub use budget::RetryBudget;
pub use rules::{decide, is_idempotent, is_safe_to_repeat, Failure, SafeToRetry, Wait};
pub use settings::RetryRules;

#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) use settings::Attempted;
