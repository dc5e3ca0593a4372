//! [`Permit`]: one admitted request, held until its response arrives; and
//! applying what that response says ([`Signal`]) to the bucket set that
//! admitted it, so every later request to that host slows down together.
//!
//! * `Retry-After`, or `remaining = 0` with a reset: the set is deferred
//!   ([`TokenBucket::defer_until`](crate::TokenBucket::defer_until)): a floor
//!   under every slot that no later policy change lowers.
//! * `remaining = 0` with a reset that cannot be read
//!   ([`Signal::reset_unknown`]): deferred by the quota's window (else the
//!   default wait), doubled for each such answer in a row up to
//!   [`SignalConfig::max_wait`](crate::SignalConfig), never the short default
//!   alone; a response that says requests remain starts the count over.
//! * An announced quota slower than the set's limits lowers their rate to
//!   the quota times [`SignalConfig::safety`](crate::SignalConfig), never below
//!   [`SignalConfig::floor`](crate::SignalConfig) of it and never above the
//!   configuration; a later, faster quota raises it back, at most to the
//!   configuration. The rate is recorded and applied under the source's
//!   configuration lock, so two responses read at once leave the rate and the
//!   limits of the same one.

use crate::sync::Arc;
use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::buckets::Buckets;
use crate::clock::Timestamp;
use crate::Signal;

/// Admission of one request: held until its response arrives, it keeps the
/// source's `max_in_flight` slot and tells [`observe`](Self::observe) which
/// buckets a server signal belongs to.
#[must_use = "the permit holds the in-flight slot until the response arrives"]
pub struct Permit {
    buckets: Option<Arc<Buckets>>,
    _in_flight: Option<OwnedSemaphorePermit>,
    /// Nanoseconds (a `Duration` would take 16 bytes).
    waited: u64,
    admitted_at: Timestamp,
    /// What Redis left at admission, for a set kept there; NaN otherwise
    /// (not an `Option`, which would make every permit 8 bytes larger).
    remaining: f64,
}

impl Permit {
    pub(super) fn new(
        buckets: Arc<Buckets>,
        in_flight: Option<OwnedSemaphorePermit>,
        waited: Duration,
        admitted_at: Timestamp,
    ) -> Self {
        buckets.context.meters.admitted(waited, in_flight.is_some());
        Permit {
            buckets: Some(buckets),
            _in_flight: in_flight,
            waited: crate::clock::duration_nanos(waited),
            admitted_at,
            remaining: f64::NAN,
        }
    }

    /// A permit from a shared store (Redis), which left `remaining` tokens.
    pub(super) fn with_remaining(mut self, remaining: f64) -> Self {
        self.remaining = remaining;
        self
    }

    pub(super) fn pass_through(now: Timestamp) -> Self {
        Permit {
            buckets: None,
            _in_flight: None,
            waited: 0,
            admitted_at: now,
            remaining: f64::NAN,
        }
    }

    /// Whether a server deferred the set that admitted the request since
    /// (a deferral still ahead): a request not yet sent must wait it out.
    #[cfg(feature = "tower")]
    pub(crate) fn is_deferred(&self) -> bool {
        use crate::clock::Clock;
        self.buckets
            .as_deref()
            .is_some_and(|b| b.deferred_until() > b.clock().now())
    }

    /// Gives up the in-flight slot to a new admission of the same request
    /// (its metric gauge counted down, as the new permit counts it again).
    #[cfg(feature = "tower")]
    pub(super) fn take_in_flight(&mut self) -> Option<OwnedSemaphorePermit> {
        let slot = self._in_flight.take();
        #[cfg(feature = "metrics")]
        if let (Some(b), Some(_)) = (&self.buckets, &slot) {
            b.context.meters.released();
        }
        slot
    }

    /// The slot the request was admitted at, on the registry's clock.
    pub fn admitted_at(&self) -> Timestamp {
        self.admitted_at
    }

    /// The source that admitted the request; `None` when it passed through.
    pub fn source(&self) -> Option<&str> {
        self.buckets.as_deref().map(|b| &**b.source())
    }

    /// The host whose own bucket set admitted it (per-host sources only).
    pub fn host(&self) -> Option<&str> {
        self.buckets.as_deref().and_then(|b| b.host.as_deref())
    }

    /// How long the request waited for its slot.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited)
    }

    /// Tokens available now in the tightest limit of the set that admitted
    /// the request (infinite when it passed through): what a server answers
    /// as its remaining quota. For a source kept in Redis: what Redis left
    /// at the request's slot.
    pub fn available(&self) -> f64 {
        if !self.remaining.is_nan() {
            return self.remaining;
        }
        self.buckets
            .as_deref()
            .map_or(f64::INFINITY, |b| b.available())
    }

    /// The limits in force for the set that admitted the request (after
    /// slow-downs and any server's rate); empty when it passed through.
    pub fn limits(&self) -> Vec<crate::Policy> {
        self.buckets
            .as_deref()
            .map_or_else(Vec::new, |b| b.policies())
    }

    /// Reads a response's status and headers and applies the signal to the
    /// bucket set that admitted this request. Returns what was read.
    // Inlined, so that an adapter that drops what was read builds no
    // `Signal` for the responses that carry none (most of them).
    #[inline]
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap) -> Signal {
        let Some(buckets) = self.buckets.as_deref() else {
            return Signal::default(); // passed through: nothing to slow down
        };
        if !buckets.context.signals.may_signal(status, headers) {
            // A learning set counts every response (its controller grows on
            // successes); the others need not look.
            if buckets.learns() {
                buckets.learn_from(&Signal::default(), self.admitted_at);
            }
            return Signal::default();
        }
        self.read_signal(buckets, status, headers)
    }

    #[inline(never)]
    fn read_signal(&self, buckets: &Buckets, status: StatusCode, headers: &HeaderMap) -> Signal {
        let signal = Signal::parse(status, headers, SystemTime::now(), &buckets.context.signals);
        self.apply_signal(&signal);
        signal
    }

    /// Applies a signal read elsewhere (see [`observe`](Self::observe)).
    pub fn apply_signal(&self, signal: &Signal) {
        let Some(buckets) = self.buckets.as_deref() else {
            return;
        };
        let source = &**buckets.source();
        let host = buckets.host.as_deref().unwrap_or("");
        // A learning set takes in quotas and refusals as limits of its own
        // (the configured ones stay its ceiling, never lowered by a server);
        // an adaptive set answers a bare refusal with its controller alone.
        let learned = buckets.learn_from(signal, self.admitted_at);
        let retry_after = match learned {
            Some(o) if o.leave_to_controller => None,
            _ => buckets.backoff(signal),
        };
        if let Some(wait) = retry_after {
            buckets.defer_for(wait);
            buckets.context.meters.deferred(wait);
            tracing::info!(
                source,
                host,
                wait_ms = wait.as_secs_f64() * 1e3,
                "deferred by the server"
            );
        }
        if let Some(quota) = signal.quota.filter(|_| learned.is_none()) {
            let rate = quota.per_second();
            // Most responses repeat the rate on record: nothing to do.
            if rate.is_finite() && rate > 0.0 && buckets.server_rate() != rate {
                let before = buckets.policies();
                let config = buckets.context.config();
                let policies = buckets.set_server_rate(rate, &config);
                if policies != before {
                    if policies
                        .iter()
                        .zip(&before)
                        .any(|(now, was)| now.tokens_per_second() < was.tokens_per_second())
                    {
                        buckets.context.meters.lowered();
                    }
                    tracing::info!(
                        source,
                        host,
                        server_quota = quota.quota,
                        window_s = quota.window.as_secs_f64(),
                        limits = ?policies,
                        "rate set from the server's quota"
                    );
                }
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Permit {
    fn drop(&mut self) {
        if let (Some(b), Some(_)) = (&self.buckets, &self._in_flight) {
            b.context.meters.released();
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("source", &self.source())
            .field("host", &self.host())
            .field("waited", &self.waited())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    /// Every request carries a permit through its adapter's future: keep it
    /// small (a set, an in-flight slot, the wait, the slot, and what Redis
    /// left).
    #[test]
    fn a_permit_stays_within_48_bytes() {
        assert!(std::mem::size_of::<super::Permit>() <= 48);
    }
}
