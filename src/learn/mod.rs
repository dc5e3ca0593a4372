//! Learning the limits of hosts nobody configured: a source told to learn
//! ([`Source::learn`](crate::Source::learn)) is paced by what its servers
//! announce, and, where they announce nothing, by a rate found from their
//! refusals.
//!
//! ```
//! use tollgate::learn::Learn;
//! use tollgate::{Registry, Source, UnknownHost};
//!
//! let registry = Registry::builder()
//!     .source(
//!         Source::new("elsewhere")                         // no limit: starts unlimited, on purpose
//!             .learn_with(Learn::default().adaptive(true)) // and finds a rate from bare 429s
//!             .per_host(),                                 // every host learns its own
//!     )
//!     .unknown_hosts(UnknownHost::Default("elsewhere".into()))
//!     .build()?;
//! # let _ = registry;
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! [`Registry::snapshot`](crate::Registry::snapshot) lists what each set
//! learned and where it came from. In TOML: `learn = true`,
//! `adaptive = true`, `learn_expiry = "10min"`.
//!
//! # Three rates, the slowest wins
//!
//! A learning source's bucket set carries, beside the limits it was
//! configured with (its *ceiling*; none at all is allowed: the source then
//! starts unlimited, on purpose), limits that it learns:
//!
//! | limit | set by | lifted |
//! |---|---|---|
//! | up to two announced quotas | a response's `RateLimit-Policy`, `X-RateLimit-Limit` with a known window, or a vendor's quota: `q` per `w` becomes at most `⌈q · safety⌉` in any window `w` ([`SignalConfig::safety`](crate::SignalConfig), 0.9 by default), a tenth of it at once | when no response announced it for [`Learn::expire_after`] (10 minutes by default) |
//! | a control rate | a refusal (429, 503) with no quota known: one probe, then a slow start; or, for an [`adaptive`](Learn::adaptive) source, the controller below | slow start ends by itself; the controller stays on once started |
//!
//! They are limits of the same bucket set as the configured ones, so a
//! request waits for the latest slot among all of them and takes from all
//! at once: the window bound, every deferral and FIFO order hold unchanged,
//! and no learned limit can make a source faster than its ceiling. A
//! learned limit keeps the tokens the bucket had, as every policy change
//! does, and a set that holds one is never evicted (a server's word is
//! kept). [`Registry::snapshot`](crate::Registry::snapshot) lists each
//! learned limit and where it came from ([`LearnedLimit`]).
//!
//! # No herd after a deferral
//!
//! A `Retry-After` defers the whole set; the requests that waited then
//! leave at the rate the set knows. With a quota known, that is its rate.
//! With none known, the refusal also sets a *probe* rate of one request per
//! deferral: one request goes when the deferral ends, and the next only
//! after it. Its success starts a *slow start* at that rate, doubling every
//! `1 / rate` seconds of successes until it passes the rate sent before the
//! refusal (or has doubled 8 times), and then lifts. A refusal meanwhile
//! starts over. So a server that only ever says `Retry-After` sees at most
//! one refused request per deferral from requests sent after the refusal
//! came back.
//!
//! # Adaptive discovery from bare refusals
//!
//! An adaptive source ([`Learn::adaptive`]) runs a controller that is off
//! until the first throttle, then cuts on each 429/503 and grows between
//! them. Two shapes were measured against a simulated server that refuses
//! above an unannounced 7/s (`tests/adaptive.rs`; figures in
//! BENCHMARKS.md):
//!
//! * the CUBIC client rate limiter of the AWS SDKs' adaptive retry mode
//!   (β 0.7, scale 0.4, half-second measurements smoothed at 0.8, per
//!   endpoint): a *rate*, cut to 70 % of what was sent on a throttle and
//!   grown on a cubic curve that flattens at the rate last refused;
//! * the client-side throttling of Google's SRE book (ch. 21; Envoy's
//!   admission control filter): requests are dropped locally with
//!   probability `max(0, (requests − K·accepts) / (requests + 1))`, `K = 2`.
//!
//! The controller is the CUBIC one. Client-side throttling protects an
//! overloaded backend by shedding load, but its steady state *sends* `K`
//! times what is accepted, so half of what reaches a rate-limited server is
//! refused; a rate, being a limit like any other, paces requests instead
//! of dropping them, and shares the window bound. Where a bare refusal
//! comes without `Retry-After`, an adaptive source's controller is the
//! answer to it: the default wait of [`SignalConfig`](crate::SignalConfig)
//! does not also apply (a `Retry-After`, or an exhausted quota with its
//! reset, still defers the set). The controller's rate shows in
//! [`snapshot`](crate::Registry::snapshot) (a [`LearnedLimit`] of origin
//! [`Origin::Adaptive`]) and, with the feature `metrics`, in the gauge
//! `tollgate_learned_rate`.
//!
//! # What lives where
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Learn`], the settings; [`LearnedLimit`] and [`Origin`], what a snapshot shows |
//! | `state.rs` | one set's learning: quotas heard, probe and slow start, the limits it adds |
//! | `cubic.rs` | the adaptive controller and the sending-rate meter, pure functions of time |
//!
//! A set's learning sits behind its own lock, taken under the source's
//! configuration lock (the first of the registry's lock order) and before
//! any bucket's policy lock; nothing else is done under it.
//!
//! Sources kept in Redis do not learn (yet): the registry refuses the pair
//! at `build()` and names the fix (`Source::in_process`).

pub(crate) mod cubic;
pub(crate) mod state;

use std::time::Duration;

/// How a source learns ([`Source::learn_with`](crate::Source::learn_with)).
///
/// ```
/// use std::time::Duration;
/// use tollgate::{learn::Learn, Registry, Source, UnknownHost};
///
/// // Every host nobody configured gets its own learning set.
/// let registry = Registry::builder()
///     .source(
///         Source::new("elsewhere")
///             .learn_with(Learn::default().adaptive(true).expire_after(Duration::from_secs(300)))
///             .per_host(),
///     )
///     .unknown_hosts(UnknownHost::Default("elsewhere".into()))
///     .build()?;
/// # let _ = registry;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct Learn {
    /// How long a learned quota holds without a response announcing it
    /// again (default 10 minutes), after which the source is back at its
    /// ceiling. Above zero.
    pub expire_after: Duration,
    /// Whether bare refusals drive the adaptive controller (default off).
    pub adaptive: bool,
}

impl Default for Learn {
    fn default() -> Self {
        Learn {
            expire_after: state::DEFAULT_EXPIRY,
            adaptive: false,
        }
    }
}

impl Learn {
    /// The same settings with another expiry for learned quotas.
    pub fn expire_after(mut self, expire_after: Duration) -> Self {
        self.expire_after = expire_after;
        self
    }

    /// The same settings with the adaptive controller on or off.
    pub fn adaptive(mut self, adaptive: bool) -> Self {
        self.adaptive = adaptive;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        if self.expire_after.is_zero() {
            return Err(crate::Error::config(
                "Learn::expire_after",
                "a zero expiry forgets every quota at once: use a positive one, such as 10 minutes",
            ));
        }
        Ok(())
    }
}

/// A limit a bucket set learned, as [`Registry::snapshot`](crate::Registry::snapshot)
/// shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct LearnedLimit {
    /// The limit in force.
    pub policy: crate::Policy,
    /// Where it came from.
    pub origin: Origin,
    /// How long until it expires unless announced again (announced quotas
    /// only).
    pub expires_in: Option<Duration>,
}

/// Where a [`LearnedLimit`] came from.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Origin {
    /// A quota the server announced: `quota` requests per `window`.
    Announced {
        /// Requests per window.
        quota: f64,
        /// The window.
        window: Duration,
    },
    /// One request per deferral, after a refusal with no rate known.
    Probe,
    /// The slow start after a probe's success.
    SlowStart,
    /// The adaptive controller's rate.
    Adaptive,
}
