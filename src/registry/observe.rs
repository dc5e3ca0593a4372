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
        if permit.buckets.is_none() || !crate::signal::may_signal(status, headers) {
            return Signal::default();
        }
        let signal = Signal::parse(status, headers, SystemTime::now(), &self.inner.signals);
        self.apply_signal(permit, &signal);
        signal
    }

    /// Applies a signal (see [`Registry::observe`]).
    pub fn apply_signal(&self, permit: &Permit, signal: &Signal) {
        let Some(buckets) = permit.buckets.as_deref() else {
            return; // passed through: nothing to slow down
        };
        let state = &self.inner.sources[buckets.source_index];
        let host = buckets.host.as_deref().unwrap_or("");
        if let Some(wait) = signal.retry_after {
            let until = self.inner.clock.now() + wait;
            buckets.defer_until(until);
            tracing::info!(
                source = &*state.name,
                host,
                wait_ms = wait.as_secs_f64() * 1e3,
                "deferred by the server"
            );
        }
        if let Some(quota) = signal.quota {
            let rate = quota.per_second();
            let old = f64::from_bits(buckets.server_rate.swap(rate.to_bits(), Ordering::Relaxed));
            if old != rate {
                let config = state.config.lock().unwrap_or_else(|e| e.into_inner());
                let policies = config.effective_capped(rate, &self.inner.signals);
                if policies != buckets.policies() {
                    tracing::info!(
                        source = &*state.name,
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
