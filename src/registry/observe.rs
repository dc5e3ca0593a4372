//! Applying what servers say ([`Signal`]) to the bucket set that admitted a
//! request, so every later request to that host slows down together.
//!
//! * `Retry-After`, or `remaining = 0` with a reset: the set is deferred
//!   ([`TokenBucket::defer_until`](crate::TokenBucket::defer_until)) until then.
//! * An announced quota slower than the set's limits lowers their rate to
//!   the quota times [`SignalConfig::safety`](crate::SignalConfig), never below
//!   [`SignalConfig::floor`](crate::SignalConfig) of it and never above the
//!   configuration; a later, faster quota raises it back, at most to the
//!   configuration.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

use super::{Permit, Registry};
use crate::clock::Clock;
use crate::Signal;

impl Registry {
    /// Reads a response's status and headers and applies the signal to the
    /// bucket set that admitted its request. Returns what was read.
    pub fn observe(&self, permit: &Permit, status: StatusCode, headers: &HeaderMap) -> Signal {
        permit.observe(status, headers)
    }

    /// Applies a signal (see [`Registry::observe`]).
    pub fn apply_signal(&self, permit: &Permit, signal: &Signal) {
        permit.apply_signal(signal)
    }
}

impl Permit {
    /// [`Registry::observe`], from the permit alone: it knows its bucket set
    /// and its source.
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap) -> Signal {
        let Some(buckets) = self.buckets.as_deref() else {
            return Signal::default(); // passed through: nothing to slow down
        };
        if !crate::signal::may_signal(status, headers) {
            return Signal::default();
        }
        let signal = Signal::parse(status, headers, SystemTime::now(), &buckets.context.signals);
        self.apply_signal(&signal);
        signal
    }

    /// [`Registry::apply_signal`], from the permit alone.
    pub fn apply_signal(&self, signal: &Signal) {
        let Some(buckets) = self.buckets.as_deref() else {
            return;
        };
        let source = &*buckets.source;
        let host = buckets.host.as_deref().unwrap_or("");
        if let Some(wait) = signal.retry_after {
            let until = buckets.clock().now() + wait;
            buckets.defer_until(until);
            tracing::info!(
                source,
                host,
                wait_ms = wait.as_secs_f64() * 1e3,
                "deferred by the server"
            );
        }
        if let Some(quota) = signal.quota {
            let rate = quota.per_second();
            let old = f64::from_bits(buckets.server_rate.swap(rate.to_bits(), Ordering::Relaxed));
            if old != rate {
                let context = &buckets.context;
                let config = context.config.lock().unwrap_or_else(|e| e.into_inner());
                let policies = config.effective_capped(rate, &context.signals);
                if policies != buckets.policies() {
                    tracing::info!(
                        source,
                        host,
                        server_quota = quota.quota,
                        window_s = quota.window.as_secs_f64(),
                        limits = ?policies,
                        "rate set from the server's quota"
                    );
                    buckets.set_policies(&policies);
                }
            }
        }
    }
}
