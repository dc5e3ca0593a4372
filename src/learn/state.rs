//! One bucket set's learning: the quotas its server announced, and the
//! control rate (a probe and slow start after a refusal, or the adaptive
//! controller). It turns what responses say into the limits it adds to the
//! set; the set applies them like any other limit.

use std::time::Duration;

use super::cubic::{Cubic, Meter, MAX_RATE};
use super::{Learn, LearnedLimit, Origin};
use crate::clock::Timestamp;
use crate::signal::ServerQuota;
use crate::{Policy, Signal, SignalConfig};

/// How many announced quotas a set keeps at once (the slowest two by rate:
/// a short burst window and a long one are the common pair).
pub(crate) const QUOTA_SLOTS: usize = 2;
/// The limits a learning set adds: the quotas, then the control rate.
pub(crate) const EXTRA_LIMITS: usize = QUOTA_SLOTS + 1;
/// After slow start, the rate climbs by this fraction of its threshold per
/// second of successes (TCP's additive increase, in rates).
const CLIMB: f64 = 0.1;

#[derive(Clone, Debug)]
struct Heard {
    quota: ServerQuota,
    policy: Policy,
    at: Timestamp,
}

#[derive(Clone, Debug, Default)]
enum Control {
    /// No control rate.
    #[default]
    Off,
    /// After a refusal with no rate known: one request goes when the
    /// deferral ends, the next only after a success (or `gap` later).
    Probe { gap: f64, before: f64, at: f64 },
    /// After the probe's success: the rate doubles every `1 / rate` seconds
    /// of successes up to `threshold` (half the rate sent before the
    /// refusal, as TCP's slow-start threshold), then climbs by [`CLIMB`] of
    /// it each second; lifted after the learning expiry with no refusal.
    SlowStart {
        rate: f64,
        grown_at: f64,
        threshold: f64,
        refused_at: f64,
    },
    /// The adaptive controller has a rate.
    Adaptive,
}

/// What a bucket set learned, behind its own lock (taken under the
/// source's configuration lock, before any bucket's policy lock).
#[derive(Clone, Debug)]
pub(crate) struct Learner {
    settings: Learn,
    heard: [Option<Heard>; QUOTA_SLOTS],
    control: Control,
    cubic: Cubic,
    /// Every response: what the client sends.
    sent: Meter,
    /// Responses not refused: what the server takes.
    taken: Meter,
    /// When the control rate was last cut: a refusal of a request sent
    /// before it speaks of the old rate and cuts nothing more (one cut per
    /// round trip, as TCP's congestion control).
    cut_at: Timestamp,
}

impl Learner {
    pub(crate) fn new(settings: Learn) -> Self {
        Learner {
            settings,
            heard: Default::default(),
            control: Control::Off,
            cubic: Cubic::default(),
            sent: Meter::default(),
            taken: Meter::default(),
            cut_at: Timestamp::ZERO,
        }
    }

    /// The limits this set adds now: one per quota slot, then the control
    /// rate (unlimited where nothing is known).
    pub(crate) fn policies(&self) -> [Policy; EXTRA_LIMITS] {
        let mut out = [Policy::unlimited(); EXTRA_LIMITS];
        for (o, h) in out.iter_mut().zip(&self.heard) {
            if let Some(h) = h {
                *o = h.policy;
            }
        }
        out[QUOTA_SLOTS] = self
            .control_rate()
            .and_then(|r| Policy::new(1.0, r).ok())
            .unwrap_or(Policy::unlimited());
        out
    }

    fn control_rate(&self) -> Option<f64> {
        match self.control {
            Control::Off => None,
            Control::Probe { gap, .. } => Some(1.0 / gap),
            Control::SlowStart { rate, .. } => Some(rate),
            Control::Adaptive => self.cubic.rate(),
        }
    }

    /// Whether a quota is known (then a refusal needs no probe: the
    /// requests that waited leave at its rate).
    fn knows_a_rate(&self) -> bool {
        self.heard.iter().any(Option::is_some)
    }

    /// Whether the set holds nothing learned: a fresh one is the same.
    pub(crate) fn is_idle(&self) -> bool {
        !self.knows_a_rate() && matches!(self.control, Control::Off)
    }

    /// Drops quotas not heard again within the expiry. Returns whether any
    /// was dropped.
    pub(crate) fn expire(&mut self, now: Timestamp) -> bool {
        let expiry = self.settings.expire_after;
        let mut dropped = false;
        for slot in &mut self.heard {
            if slot
                .as_ref()
                .is_some_and(|h| now.saturating_duration_since(h.at) >= expiry)
            {
                *slot = None;
                dropped = true;
            }
        }
        dropped
    }

    /// Takes in one response read at `now` to a request sent at `sent_at`.
    /// Returns whether the limits it adds changed, and whether the refusal
    /// was bare and left to the controller (then no default wait applies).
    pub(crate) fn observe(
        &mut self,
        now: Timestamp,
        sent_at: Timestamp,
        signal: &Signal,
        config: &SignalConfig,
    ) -> Observed {
        let before = self.policies();
        self.expire(now);
        let secs = now.as_nanos() as f64 / 1e9;
        self.sent.count(secs);
        if !signal.limited {
            self.taken.count(secs);
        }
        for q in &signal.quotas {
            self.hear(*q, now, config);
        }
        let bare = signal.limited && signal.dialects.is_empty();
        let mut leave_to_controller = false;
        let fresh = sent_at >= self.cut_at;
        // A server counts in windows of a second or more: a refusal soon
        // after a cut mostly speaks of requests its window still holds.
        let may_cut = fresh && now.saturating_duration_since(self.cut_at) >= CUT_SPACING
            || self.cut_at == Timestamp::ZERO;
        if signal.limited {
            let sent = self.sent.rate(secs);
            if self.settings.adaptive {
                if may_cut {
                    // From what the server took, not what was sent: a
                    // client far over the limit sends many times it.
                    self.cubic.throttled(secs, self.taken.rate(secs));
                    self.control = Control::Adaptive;
                    self.cut_at = now;
                }
                leave_to_controller = bare;
            } else if fresh && !self.knows_a_rate() {
                let gap = signal
                    .retry_after
                    .unwrap_or(config.default_wait)
                    .as_secs_f64()
                    .max(MIN_GAP);
                // A refusal during the climb: the rate then in force is the
                // better measure of what the server took.
                let before = match self.control {
                    Control::SlowStart { rate, .. } => rate.min(sent),
                    _ => sent,
                };
                self.control = Control::Probe {
                    gap,
                    before,
                    at: secs,
                };
                self.cut_at = now;
            }
        } else if fresh {
            self.succeeded(secs);
        }
        Observed {
            changed: self.policies() != before,
            leave_to_controller,
        }
    }

    fn succeeded(&mut self, secs: f64) {
        let sent = self.sent.rate(secs);
        self.control = match std::mem::take(&mut self.control) {
            Control::Off => Control::Off,
            Control::Adaptive => {
                self.cubic.succeeded(secs, sent);
                Control::Adaptive
            }
            Control::Probe { gap, before, at } => Control::SlowStart {
                rate: 1.0 / gap,
                grown_at: secs,
                threshold: (before / 2.0).max(1.0 / gap),
                refused_at: at,
            },
            Control::SlowStart {
                rate,
                grown_at,
                threshold,
                refused_at,
            } => {
                let expiry = self.settings.expire_after.as_secs_f64();
                let grown = if secs - refused_at >= expiry || rate >= MAX_RATE {
                    None
                } else if rate < threshold && secs - grown_at >= 1.0 / rate {
                    Some(((rate * 2.0).min(threshold), secs))
                } else if rate >= threshold && secs - grown_at >= 1.0 {
                    Some((rate + CLIMB * threshold * (secs - grown_at).floor(), secs))
                } else {
                    Some((rate, grown_at))
                };
                match grown {
                    None => Control::Off,
                    Some((rate, grown_at)) => Control::SlowStart {
                        rate,
                        grown_at,
                        threshold,
                        refused_at,
                    },
                }
            }
        };
    }

    /// Records a quota the server announced: it replaces the one of the same
    /// window, or fills a free slot, or replaces the slot heard longest ago.
    fn hear(&mut self, quota: ServerQuota, now: Timestamp, config: &SignalConfig) {
        let Some(policy) = quota_policy(quota, config.safety) else {
            return;
        };
        let heard = Heard {
            quota,
            policy,
            at: now,
        };
        let slot = self
            .heard
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.quota.window == quota.window))
            .or_else(|| self.heard.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                (0..QUOTA_SLOTS)
                    .min_by_key(|&i| self.heard[i].as_ref().map_or(Timestamp::ZERO, |h| h.at))
                    .unwrap_or(0)
            });
        self.heard[slot] = Some(heard);
    }

    /// The controller's rate, if it has one.
    pub(crate) fn adaptive_rate(&self) -> Option<f64> {
        match self.control {
            Control::Adaptive => self.cubic.rate(),
            _ => None,
        }
    }

    /// What this set learned, for a snapshot at `now`.
    pub(crate) fn learned(&self, now: Timestamp) -> Vec<LearnedLimit> {
        let mut out: Vec<LearnedLimit> = self
            .heard
            .iter()
            .flatten()
            .map(|h| LearnedLimit {
                policy: h.policy,
                origin: Origin::Announced {
                    quota: h.quota.quota,
                    window: h.quota.window,
                },
                expires_in: Some(
                    (h.at + self.settings.expire_after).saturating_duration_since(now),
                ),
            })
            .collect();
        if let Some(rate) = self.control_rate() {
            let origin = match self.control {
                Control::Adaptive => Origin::Adaptive,
                Control::Probe { .. } => Origin::Probe,
                _ => Origin::SlowStart,
            };
            if let Ok(policy) = Policy::new(1.0, rate) {
                out.push(LearnedLimit {
                    policy,
                    origin,
                    expires_in: None,
                });
            }
        }
        out
    }
}

/// The shortest time between two cuts of the control rate.
const CUT_SPACING: Duration = Duration::from_secs(1);

/// The shortest probe gap, seconds: a refusal with a tiny `Retry-After`
/// still spaces the requests that follow it.
const MIN_GAP: f64 = 0.1;

/// What [`Learner::observe`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    pub changed: bool,
    pub leave_to_controller: bool,
}

/// The limit a quota of `q` per `w` becomes: at most `⌈q · safety⌉` in any
/// window `w`, a tenth of it (at least one) at once and the rest spread
/// evenly. `None` for a quota too small to pace by.
pub(crate) fn quota_policy(quota: ServerQuota, safety: f64) -> Option<Policy> {
    let w = quota.window.as_secs_f64();
    let n = (quota.quota * safety).max(1.0);
    if !(n.is_finite() && w > 0.0 && w.is_finite()) {
        return None;
    }
    let burst = (n / 10.0).floor().max(1.0);
    // c + ⌈r·w⌉ − 1 ≤ ⌈n⌉ with r = (n − c + 1) / w.
    let rate = (n - burst + 1.0) / w;
    Policy::new(burst, rate).ok()
}

/// The learned settings' default expiry, also said in [`Learn`]'s docs.
pub(crate) const DEFAULT_EXPIRY: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Dialects;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_nanos((secs * 1e9) as u64)
    }

    fn quota(q: f64, w: u64) -> ServerQuota {
        ServerQuota {
            quota: q,
            window: Duration::from_secs(w),
        }
    }

    fn announced(quotas: &[ServerQuota], limited: bool) -> Signal {
        Signal {
            quotas: quotas.to_vec(),
            limited,
            dialects: Dialects::from(crate::signal::Dialect::Ietf),
            ..Signal::default()
        }
    }

    #[test]
    fn a_quota_becomes_a_window_policy_under_it() {
        for (q, w) in [(5.0, 1), (60.0, 60), (5000.0, 3600), (1.0, 1), (7.0, 10)] {
            let p = quota_policy(quota(q, w), 0.9).unwrap();
            let most = p.max_in_window(Duration::from_secs(w));
            assert!(most <= q + 1e-9, "{q}/{w}s: {p} admits {most}");
            assert!(
                most >= (q * 0.9).floor(),
                "{q}/{w}s: {p} admits only {most}"
            );
        }
    }

    #[test]
    fn quotas_are_learned_refreshed_and_expire() {
        let config = SignalConfig::default();
        let mut l = Learner::new(Learn::default().expire_after(Duration::from_secs(60)));
        assert!(l.is_idle());
        let o = l.observe(
            at(1.0),
            at(1.0),
            &announced(&[quota(5.0, 1)], false),
            &config,
        );
        assert!(o.changed);
        assert!((l.policies()[0].tokens_per_second() - 4.5).abs() < 1e-9);
        // Refreshed at 50 s, so still there at 100 s.
        l.observe(
            at(50.0),
            at(50.0),
            &announced(&[quota(5.0, 1)], false),
            &config,
        );
        assert!(!l.expire(at(100.0)));
        assert!(l.expire(at(110.0)));
        assert!(l.is_idle());
        assert!(l.policies().iter().all(Policy::is_unlimited));
    }

    #[test]
    fn two_windows_two_slots_and_a_third_replaces_the_oldest() {
        let config = SignalConfig::default();
        let mut l = Learner::new(Learn::default());
        l.observe(
            at(1.0),
            at(1.0),
            &announced(&[quota(100.0, 60), quota(1000.0, 86400)], false),
            &config,
        );
        let p = l.policies();
        assert!(!p[0].is_unlimited() && !p[1].is_unlimited() && p[2].is_unlimited());
        l.observe(
            at(2.0),
            at(2.0),
            &announced(&[quota(10.0, 1)], false),
            &config,
        );
        let windows: Vec<_> = l.learned(at(2.0)).iter().map(|x| x.origin).collect();
        assert_eq!(windows.len(), 2);
        assert!(windows.contains(&Origin::Announced {
            quota: 10.0,
            window: Duration::from_secs(1)
        }));
    }

    #[test]
    fn a_bare_refusal_with_nothing_known_probes_then_slow_starts() {
        let config = SignalConfig::default();
        let mut l = Learner::new(Learn::default());
        for i in 0..20 {
            l.observe(
                at(f64::from(i) * 0.01),
                at(f64::from(i) * 0.01),
                &Signal::default(),
                &config,
            );
        }
        let mut refused = Signal {
            limited: true,
            retry_after: Some(Duration::from_secs(2)),
            ..Signal::default()
        };
        refused.dialects = Dialects::from(crate::signal::Dialect::RetryAfter);
        let o = l.observe(at(0.2), at(0.2), &refused, &config);
        assert!(o.changed && !o.leave_to_controller);
        assert!((l.policies()[QUOTA_SLOTS].tokens_per_second() - 0.5).abs() < 1e-9);
        // The probe's success: slow start from one per gap, doubling.
        l.observe(at(2.3), at(2.3), &Signal::default(), &config);
        let r0 = l.policies()[QUOTA_SLOTS].tokens_per_second();
        l.observe(at(4.4), at(4.4), &Signal::default(), &config);
        let r1 = l.policies()[QUOTA_SLOTS].tokens_per_second();
        assert!((r1 - 2.0 * r0).abs() < 1e-9, "{r0} {r1}");
        // Up to half the rate sent before (40/s), then a climb of a tenth
        // of that each second; lifted after the expiry with no refusal.
        let mut t = 4.4;
        let mut last = r1;
        while t < 40.0 {
            t += 0.5;
            l.observe(at(t), at(t), &Signal::default(), &config);
            let r = l.policies()[QUOTA_SLOTS].tokens_per_second();
            assert!(r >= last && r <= last * 2.0 + 1e-9, "{last} -> {r}");
            last = r;
        }
        assert!(last > 20.0 && last <= 20.0 + 2.0 * 40.0, "{last}");
        while t < 700.0 {
            t += 1.0;
            l.observe(at(t), at(t), &Signal::default(), &config);
        }
        assert!(l.is_idle());
    }

    #[test]
    fn adaptive_takes_bare_refusals_without_a_probe() {
        let config = SignalConfig::default();
        let mut l = Learner::new(Learn::default().adaptive(true));
        for i in 0..100 {
            l.observe(
                at(f64::from(i) * 0.05),
                at(f64::from(i) * 0.05),
                &Signal::default(),
                &config,
            );
        }
        let bare = Signal {
            limited: true,
            retry_after: Some(Duration::from_secs(1)),
            ..Signal::default()
        };
        let o = l.observe(at(5.0), at(5.0), &bare, &config);
        assert!(o.changed && o.leave_to_controller);
        let r = l.adaptive_rate().unwrap();
        assert!((r - 20.0 * 0.7).abs() < 1.5, "{r}");
    }
}
