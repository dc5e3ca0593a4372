//! What every bucket set of a source shares ([`SourceContext`]), the
//! source's limits as configured and in force ([`SourceConfig`]), and what
//! a request costs ([`Cost`]).

use super::source::OnLimit;
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};
use crate::{Error, Policy, SignalConfig};

/// What every bucket set of a source shares: its settings, its
/// configuration (behind the first lock of the registry's lock order), and
/// the registry's signal settings.
pub(crate) struct SourceContext {
    pub name: std::sync::Arc<str>,
    pub on_limit: OnLimit,
    pub max_in_flight: Option<usize>,
    pub signals: SignalConfig,
    pub price: Option<super::Price>,
    /// Which limits the price weighs (bit `i` for limit `i`); the others
    /// count requests.
    pub priced: u64,
    /// Shadow mode: measure what enforcing would do, enforce nothing.
    pub shadow: bool,
    pub lanes: Option<super::Lanes>,
    /// How the source learns, if it does.
    pub learn: Option<crate::learn::Learn>,
    pub meters: super::meters::Meters,
    /// The Redis store that keeps the source's buckets, and what they do
    /// while it fails; `None`: this process keeps them.
    pub store: super::store::SourceStore,
    config: Mutex<SourceConfig>,
    /// Bumped under `config` after every change, so a set made from an
    /// older configuration can tell and catch up.
    version: AtomicU64,
}

impl SourceContext {
    /// The context of source `s`; `signals` and `shadow` as the registry
    /// resolved them, `priced` the mask of limits its price weighs.
    pub(super) fn new(
        s: &super::Source,
        signals: SignalConfig,
        shadow: bool,
        priced: u64,
        config: SourceConfig,
    ) -> Self {
        SourceContext {
            meters: super::meters::Meters::new(&s.name),
            shadow,
            lanes: s.lanes,
            learn: s.learn,
            name: s.name.as_str().into(),
            on_limit: s.on_limit,
            max_in_flight: s.max_in_flight,
            signals,
            price: s.price.clone(),
            priced,
            config: Mutex::new(config),
            version: AtomicU64::new(0),
            store: super::store::SourceStore::default(),
        }
    }

    /// Keeps the source's buckets in `store`.
    pub(super) fn with_store(mut self, store: super::store::SourceStore) -> Self {
        self.store = store;
        self
    }

    /// The configuration lock: first in the registry's lock order.
    pub(super) fn config(&self) -> MutexGuard<'_, SourceConfig> {
        self.config.lock()
    }

    /// Replaces the configuration (under its lock) and bumps the version.
    pub(super) fn replace(&self, guard: &mut MutexGuard<'_, SourceConfig>, config: SourceConfig) {
        **guard = config;
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// What a request of weight `tokens` to `target` costs: `tokens` from a
    /// limit that counts requests, `tokens` times its price from a priced one.
    #[inline]
    pub(super) fn cost_of(&self, target: &super::Target<'_>, tokens: f64) -> Cost {
        match &self.price {
            None => Cost::plain(tokens),
            Some(p) => Cost {
                requests: tokens,
                priced: tokens * p.of(target.method(), target.path()),
            },
        }
    }
}

/// A source's limits as configured, the slow-down factor, and the limits
/// in force, which are checked when made: a configuration that cannot be
/// built is refused, never replaced by a looser one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SourceConfig {
    pub configured: Vec<Policy>,
    pub factor: f64,
    effective: Vec<Policy>,
}

impl SourceConfig {
    /// `configured` slowed to `factor`, or why that cannot be built.
    pub(super) fn new(configured: Vec<Policy>, factor: f64) -> Result<Self, Error> {
        let effective = if configured.is_empty() {
            vec![Policy::unlimited()]
        } else {
            configured
                .iter()
                .map(|p| p.scaled(factor))
                .collect::<Result<_, _>>()?
        };
        Ok(SourceConfig {
            configured,
            factor,
            effective,
        })
    }

    /// The limits in force, before any server's word.
    pub(super) fn effective(&self) -> &[Policy] {
        &self.effective
    }

    /// The limits in force for a set whose server announced `server_rate`
    /// (infinite: none): each limit faster than it is lowered to the rate
    /// times `signals.safety`, never below `signals.floor` of its own rate,
    /// and never raised. A server rate at or above a limit leaves it as it
    /// is, so a window policy that matches the server stays exact.
    pub(super) fn for_server_rate(&self, server_rate: f64, signals: &SignalConfig) -> Vec<Policy> {
        self.effective
            .iter()
            .map(|p| {
                let rate = p.tokens_per_second();
                if p.is_unlimited() || server_rate >= rate * (1.0 - 1e-9) {
                    return *p;
                }
                let lowered = (server_rate * signals.safety).max(rate * signals.floor);
                // The floor's policy is valid whenever the lowered one is not
                // (it is the faster of the two); a limit too slow for either
                // stays as it is, which is never looser than before.
                Policy::new(p.capacity(), lowered)
                    .or_else(|_| p.scaled(signals.floor))
                    .unwrap_or_else(|e| {
                        tracing::warn!(limit = %p, server_rate, error = %e, "a server's lower rate cannot be held; the limit stays");
                        *p
                    })
            })
            .collect()
    }
}

/// What a request takes: `requests` from a limit that counts requests,
/// `priced` from a limit its source's [`Price`](super::Price) weighs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cost {
    pub requests: f64,
    pub priced: f64,
}

impl Cost {
    /// The same weight from every limit.
    pub(super) fn plain(tokens: f64) -> Cost {
        Cost {
            requests: tokens,
            priced: tokens,
        }
    }
}
