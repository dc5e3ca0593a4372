//! What a source counts: shadow-mode figures (always kept, see
//! [`ShadowStats`]) and, with the feature `metrics`, counters, histograms
//! and a gauge through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Metric handles are registered once per source when the registry is
//! built, with the recorder installed then (install it first), so the hot
//! path only bumps a handle: without the feature this module compiles to
//! nothing there.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `tollgate_admitted_total` | counter | `source` | requests admitted |
//! | `tollgate_waited_total` | counter | `source` | admitted after a wait |
//! | `tollgate_wait_seconds` | histogram | `source` | how long each waited |
//! | `tollgate_refused_total` | counter | `source`, `reason` (`rate`, `in_flight`) | refused |
//! | `tollgate_deferred_total` | counter | `source` | deferrals a server asked for |
//! | `tollgate_deferred_seconds` | histogram | `source` | how long each deferral |
//! | `tollgate_lowered_total` | counter | `source` | rates lowered by a server's quota |
//! | `tollgate_shadow_would_wait_total` | counter | `source` | shadow mode: would have waited |
//! | `tollgate_shadow_would_wait_seconds` | histogram | `source` | shadow mode: how long |
//! | `tollgate_shadow_would_refuse_total` | counter | `source` | shadow mode: would have refused |
//! | `tollgate_in_flight` | gauge | `source` | requests admitted, response not yet seen |
//! | `tollgate_learned_rate` | gauge | `source` | the adaptive controller's latest rate, requests per second ([`learn`](crate::learn)) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a source in shadow mode would have done, had it enforced its
/// limits (see [`Source::shadow`](crate::Source::shadow)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShadowStats {
    /// Requests that would have waited for their slot.
    pub would_wait: u64,
    /// How long they would have waited, in all.
    pub would_wait_for: Duration,
    /// Requests that would have been refused.
    pub would_refuse: u64,
}

#[derive(Default)]
pub(crate) struct Shadow {
    would_wait: AtomicU64,
    would_wait_nanos: AtomicU64,
    would_refuse: AtomicU64,
}

impl Shadow {
    pub(super) fn stats(&self) -> ShadowStats {
        ShadowStats {
            would_wait: self.would_wait.load(Ordering::Relaxed),
            would_wait_for: Duration::from_nanos(self.would_wait_nanos.load(Ordering::Relaxed)),
            would_refuse: self.would_refuse.load(Ordering::Relaxed),
        }
    }
}

/// The refusal a metric counts.
#[derive(Clone, Copy)]
pub(crate) enum Refusal {
    Rate,
    InFlight,
}

/// A source's meters: shadow figures, and metric handles with `metrics`.
pub(crate) struct Meters {
    pub shadow: Shadow,
    #[cfg(feature = "metrics")]
    handles: handles::Handles,
}

impl Meters {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn new(source: &str) -> Self {
        Meters {
            shadow: Shadow::default(),
            #[cfg(feature = "metrics")]
            handles: handles::Handles::new(source),
        }
    }

    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn admitted(&self, waited: Duration, in_flight: bool) {
        #[cfg(feature = "metrics")]
        self.handles.admitted(waited, in_flight);
    }

    #[cfg(feature = "metrics")]
    #[inline]
    pub(super) fn released(&self) {
        self.handles.in_flight.decrement(1.0);
    }

    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn refused(&self, why: Refusal) {
        #[cfg(feature = "metrics")]
        match why {
            Refusal::Rate => self.handles.refused_rate.increment(1),
            Refusal::InFlight => self.handles.refused_in_flight.increment(1),
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn deferred(&self, wait: Duration) {
        #[cfg(feature = "metrics")]
        {
            self.handles.deferred.increment(1);
            self.handles.deferred_seconds.record(wait.as_secs_f64());
        }
    }

    pub(super) fn lowered(&self) {
        #[cfg(feature = "metrics")]
        self.handles.lowered.increment(1);
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn learned_rate(&self, rate: f64) {
        #[cfg(feature = "metrics")]
        self.handles.learned_rate.set(rate);
    }

    pub(super) fn would_wait(&self, wait: Duration) {
        let s = &self.shadow;
        s.would_wait.fetch_add(1, Ordering::Relaxed);
        s.would_wait_nanos
            .fetch_add(crate::clock::duration_nanos(wait), Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.handles.would_wait.increment(1);
            self.handles.would_wait_seconds.record(wait.as_secs_f64());
        }
    }

    pub(super) fn would_refuse(&self) {
        self.shadow.would_refuse.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.handles.would_refuse.increment(1);
    }
}

#[cfg(feature = "metrics")]
mod handles {
    use std::time::Duration;

    use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

    pub(super) struct Handles {
        admitted: Counter,
        waited: Counter,
        wait_seconds: Histogram,
        pub refused_rate: Counter,
        pub refused_in_flight: Counter,
        pub deferred: Counter,
        pub deferred_seconds: Histogram,
        pub lowered: Counter,
        pub would_wait: Counter,
        pub would_wait_seconds: Histogram,
        pub would_refuse: Counter,
        pub in_flight: Gauge,
        pub learned_rate: Gauge,
    }

    impl Handles {
        pub(super) fn new(source: &str) -> Self {
            let s = source.to_string();
            Handles {
                admitted: counter!("tollgate_admitted_total", "source" => s.clone()),
                waited: counter!("tollgate_waited_total", "source" => s.clone()),
                wait_seconds: histogram!("tollgate_wait_seconds", "source" => s.clone()),
                refused_rate: counter!("tollgate_refused_total", "source" => s.clone(), "reason" => "rate"),
                refused_in_flight: counter!("tollgate_refused_total", "source" => s.clone(), "reason" => "in_flight"),
                deferred: counter!("tollgate_deferred_total", "source" => s.clone()),
                deferred_seconds: histogram!("tollgate_deferred_seconds", "source" => s.clone()),
                lowered: counter!("tollgate_lowered_total", "source" => s.clone()),
                would_wait: counter!("tollgate_shadow_would_wait_total", "source" => s.clone()),
                would_wait_seconds: histogram!("tollgate_shadow_would_wait_seconds", "source" => s.clone()),
                would_refuse: counter!("tollgate_shadow_would_refuse_total", "source" => s.clone()),
                in_flight: gauge!("tollgate_in_flight", "source" => s.clone()),
                learned_rate: gauge!("tollgate_learned_rate", "source" => s),
            }
        }

        #[inline]
        pub(super) fn admitted(&self, waited: Duration, in_flight: bool) {
            self.admitted.increment(1);
            if !waited.is_zero() {
                self.waited.increment(1);
                self.wait_seconds.record(waited.as_secs_f64());
            }
            if in_flight {
                self.in_flight.increment(1.0);
            }
        }
    }
}
