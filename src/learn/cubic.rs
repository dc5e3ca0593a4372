//! The adaptive controller: a client rate found from bare refusals, as a
//! small pure state machine of time (seconds on the registry's clock) and
//! what each response said. It owns no bucket and reads no clock; the
//! bucket set turns its rate into a limit.
//!
//! The shape is the CUBIC client rate limiter of the AWS SDKs' adaptive
//! retry mode (smithy-rs, `client_rate_limiter.rs`; the same constants in
//! botocore's `retries/throttling.py`): off until the first throttle; on a
//! throttle the rate drops to [`BETA`] of what the client was sending and
//! the curve's plateau is set there; between throttles the rate follows
//! `SCALE · (t − K)³ + plateau`, flat near the rate that was last refused and
//! steep away from it, and never far above what the client actually
//! sends. Measured against a server that refuses above an unannounced
//! 7/s (`tests/adaptive.rs`, from 10 s to 40 s), the SDKs' cuts and
//! constants refused 7.2 % of requests and used 37 % of the limit: every
//! refusal cut again, down to the floor, while the server's one-second
//! window still held what was sent before the cut. With the cuts below and
//! the SDKs' scale and cap, 9.4 % refused and 87 % used: the curve is back
//! at the refused rate within `K ≈ 1.7 s`, so every ten requests or so meet
//! the limit again. The changes, each towards fewer refusals at the same
//! use of the limit (4.7 % refused, 88 % used):
//!
//! * a throttle cuts from the rate the server *took* (responses not
//!   refused), not the rate sent, and the first one from what was taken
//!   since the start when no half-second has been measured yet (the SDK
//!   cuts from zero, and then needs seconds to climb back);
//! * [`SCALE`] is 0.1, not 0.4: at 7/s the curve takes 2.8 s back to its
//!   plateau, and the cycle of one refusal holds about 25 requests;
//! * the rate grows to at most 1.5 times what is sent, not twice: requests
//!   already waiting keep the slots they were given at the older rate, so
//!   what is sent lags what is allowed, and a wider cap overshoots;
//! * the registry cuts at most once a second, and only for a request sent
//!   after the last cut (`state.rs`), and a throttle below the last
//!   plateau lowers the next one (CUBIC's fast convergence, RFC 8312 §4.6).

/// The cut on a throttle: the new rate is this fraction of the sending rate
/// (the SDKs' `BETA`).
pub(crate) const BETA: f64 = 0.7;
/// How fast the rate grows away from the plateau, in requests per second
/// per second cubed (the SDKs' `SCALE_CONSTANT` is 0.4; see above).
pub(crate) const SCALE: f64 = 0.1;
/// The lowest rate the controller sets, requests per second (the SDKs'
/// `MIN_FILL_RATE`).
pub(crate) const MIN_RATE: f64 = 0.5;
/// The weight of the newest half-second in the measured sending rate (the
/// SDKs' `SMOOTH`).
pub(crate) const SMOOTH: f64 = 0.8;
/// The span of one measurement of the sending rate, seconds (the SDKs'
/// half-second buckets).
pub(crate) const MEASURE_SPAN: f64 = 0.5;
/// The highest rate the controller sets: above it, it would never bind.
pub(crate) const MAX_RATE: f64 = 1e6;

/// A rate of responses, requests per second, smoothed over half-second
/// spans: one meter counts every response (what the client sends), one the
/// responses that were not refused (what the server takes).
#[derive(Clone, Debug, Default)]
pub(crate) struct Meter {
    /// Start of the span being counted; `None` before the first response.
    span_start: Option<f64>,
    /// Responses in that span.
    count: u32,
    /// The first response ever, and how many came since.
    first: Option<f64>,
    total: u64,
    /// The smoothed rate (zero until a span completes).
    rate: f64,
}

impl Meter {
    /// Counts one response at `now`.
    pub(crate) fn count(&mut self, now: f64) {
        self.first.get_or_insert(now);
        self.total = self.total.saturating_add(1);
        let start = *self.span_start.get_or_insert(now);
        let span = now - start;
        if span >= MEASURE_SPAN {
            let current = f64::from(self.count) / span;
            self.rate = if self.rate == 0.0 {
                current
            } else {
                SMOOTH * current + (1.0 - SMOOTH) * self.rate
            };
            self.span_start = Some(now);
            self.count = 0;
        }
        self.count += 1;
    }

    /// The measured sending rate at `now`: the smoothed rate, or, before a
    /// span has completed, the responses so far over the time since the first
    /// (at least one span).
    pub(crate) fn rate(&self, now: f64) -> f64 {
        if self.rate > 0.0 {
            return self.rate;
        }
        match self.first {
            Some(first) => self.total as f64 / (now - first).max(MEASURE_SPAN),
            None => 0.0,
        }
    }
}

/// The controller's state: off, or a rate and the curve it follows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cubic {
    /// Whether a throttle has been seen (off until then: no limit).
    enabled: bool,
    /// The rate in force, requests per second.
    rate: f64,
    /// The curve's plateau: the rate sent when last throttled.
    plateau: f64,
    /// When the last throttle came, seconds.
    throttled_at: f64,
    /// Seconds from a throttle until the curve is back at its plateau.
    k: f64,
}

impl Cubic {
    /// The rate in force, or `None` while off.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.enabled.then_some(self.rate)
    }

    /// A throttle (a 429 or 503) at `now`, with the client sending at
    /// `sent` requests per second: the rate drops to `BETA` of it.
    pub(crate) fn throttled(&mut self, now: f64, sent: f64) -> f64 {
        let sent = if self.enabled {
            sent.min(self.rate).max(MIN_RATE)
        } else {
            sent.max(MIN_RATE)
        };
        // Fast convergence (RFC 8312 §4.6): refused below the last plateau,
        // the server takes less than it did; the new plateau sits lower.
        self.plateau = if self.enabled && sent < self.plateau {
            sent * (1.0 + BETA) / 2.0
        } else {
            sent
        };
        self.k = (self.plateau - sent * BETA).max(0.0) / SCALE;
        self.k = self.k.cbrt();
        self.throttled_at = now;
        self.enabled = true;
        self.rate = clamp(sent * BETA);
        self.rate
    }

    /// A response that was not refused, at `now`, with the client sending
    /// at `sent`: the rate follows the curve, at most twice `sent`. Off
    /// stays off.
    pub(crate) fn succeeded(&mut self, now: f64, sent: f64) -> Option<f64> {
        if !self.enabled {
            return None;
        }
        let t = (now - self.throttled_at).max(0.0) - self.k;
        let curve = SCALE * t * t * t + self.plateau;
        // A client that sends below its rate learns nothing about the
        // server far above what it sends (the SDKs cap at twice, here 1.5
        // times: see the module docs); the rate never falls below the cut
        // it started from on a success.
        let capped = curve.min((1.5 * sent).max(self.plateau * BETA));
        self.rate = clamp(capped);
        Some(self.rate)
    }
}

fn clamp(rate: f64) -> f64 {
    if rate.is_finite() {
        rate.clamp(MIN_RATE, MAX_RATE)
    } else {
        MAX_RATE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_until_the_first_throttle() {
        let mut c = Cubic::default();
        assert_eq!(c.rate(), None);
        assert_eq!(c.succeeded(1.0, 50.0), None);
        assert_eq!(c.throttled(2.0, 10.0), 7.0);
        assert_eq!(c.rate(), Some(7.0));
    }

    #[test]
    fn the_curve_returns_to_its_plateau_after_k() {
        let mut c = Cubic::default();
        c.throttled(0.0, 10.0);
        let k = (10.0f64 * (1.0 - BETA) / SCALE).cbrt();
        // Just after the cut it is near the cut, at k at the plateau, then
        // above it.
        let early = c.succeeded(0.01, 100.0).unwrap();
        assert!((early - 7.0).abs() < 0.1, "{early}");
        let at_k = c.succeeded(k, 100.0).unwrap();
        assert!((at_k - 10.0).abs() < 1e-9, "{at_k}");
        assert!(c.succeeded(k + 1.0, 100.0).unwrap() > 10.0);
        // Never far above what the client sends.
        assert!(c.succeeded(k + 5.0, 4.0).unwrap() <= 7.0);
    }

    #[test]
    fn every_throttle_cuts_from_the_lower_of_rate_and_sending() {
        let mut c = Cubic::default();
        c.throttled(0.0, 20.0);
        assert_eq!(c.rate(), Some(14.0));
        // Sending faster than allowed does not raise the plateau.
        let r = c.throttled(0.1, 40.0);
        assert!((r - 14.0 * BETA).abs() < 1e-9, "{r}");
        // Rates stay within bounds whatever comes in.
        assert_eq!(c.throttled(0.2, 0.0), MIN_RATE);
        assert_eq!(c.throttled(0.3, f64::NAN), MIN_RATE);
    }

    #[test]
    fn the_meter_smooths_half_second_spans() {
        let mut m = Meter::default();
        assert_eq!(m.rate(0.0), 0.0);
        // 10 per second for two seconds.
        for i in 0..20 {
            m.count(f64::from(i) * 0.1);
        }
        let r = m.rate(2.0);
        assert!((r - 10.0).abs() < 1.0, "{r}");
        // Before a span completes: what was sent so far.
        let mut m = Meter::default();
        m.count(0.0);
        m.count(0.05);
        m.count(0.1);
        assert!((m.rate(0.1) - 6.0).abs() < 1e-9, "{}", m.rate(0.1));
    }
}
