//! Runtime control: changing a source's limits ([`Registry::set_policy`],
//! [`Registry::set_limits`]), slowing every source down
//! ([`Registry::slow_down`]), and [`SourceHandle`] for work that is not an
//! HTTP request.
//!
//! A change is checked whole before any of it applies: a limit that cannot
//! be built is an error and leaves every source as it was, never a looser
//! limit. It is applied under the source's configuration lock (first in the
//! lock order), to each bucket set capped by what its server said.

use std::fmt;

use super::acquire::Acquire;
use super::admission::Admission;
use super::buckets::SourceConfig;
use super::{Permit, Registry, SourceState};
use crate::{Error, Policy};

impl Registry {
    /// A source by name, for work that is not an HTTP request. For a
    /// per-host source this is its source-wide bucket set.
    pub fn source(&self, name: &str) -> Result<SourceHandle, Error> {
        Ok(SourceHandle {
            registry: self.clone(),
            index: self.index(name)?,
        })
    }

    /// Replaces the one limit of source `name`, keeping every bucket's level
    /// and every server's deferral and rate.
    pub fn set_policy(&self, name: &str, policy: Policy) -> Result<(), Error> {
        self.set_limits(name, vec![policy])
    }

    /// Replaces the limits of source `name` (as many as it has), keeping
    /// every bucket's level and every server's deferral and rate.
    pub fn set_limits(&self, name: &str, limits: Vec<Policy>) -> Result<(), Error> {
        let state = &self.inner.sources[self.index(name)?];
        let mut config = state.context.config();
        let have = config.configured.len().max(1);
        if limits.len() != have {
            return Err(Error::config(
                format!("source `{name}`"),
                format!("it has {have} limit(s); give exactly {have} policies"),
            ));
        }
        if let Some(price) = &state.context.price {
            // The same check as `build`: every price must fit each limit it
            // weighs, or priced requests would fail from now on.
            let weighed: Vec<Policy> = limits
                .iter()
                .enumerate()
                .filter(|(i, _)| (state.context.priced >> i) & 1 == 1)
                .map(|(_, p)| *p)
                .collect();
            price
                .check(&weighed)
                .map_err(|reason| Error::config(format!("source `{name}`"), reason))?;
        }
        let next = SourceConfig::new(limits, config.factor)?;
        tracing::info!(source = name, from = ?config.configured, to = ?next.configured, "policy changed");
        state.context.replace(&mut config, next);
        apply(state, &config);
        Ok(())
    }

    /// Slows every source to `factor` of its configured rates (burst kept):
    /// `factor` in (0, 1], and 1 restores the configuration. Never faster
    /// than configured. If any source's slower limits cannot be built, no
    /// source changes and the error says which.
    pub fn slow_down(&self, factor: f64) -> Result<(), Error> {
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(Error::config(
                "slow_down",
                format!("the factor must be above 0 and at most 1 (never faster than configured), not {factor}"),
            ));
        }
        // Check every source first, so a refusal changes none.
        let mut next = Vec::with_capacity(self.inner.sources.len());
        for state in self.inner.sources.iter() {
            let configured = state.context.config().configured.clone();
            next.push(SourceConfig::new(configured, factor).map_err(|e| {
                Error::config(
                    format!("source `{}`", state.name()),
                    format!("cannot slow down by {factor}: {e}"),
                )
            })?);
        }
        for (state, next) in self.inner.sources.iter().zip(next) {
            let mut config = state.context.config();
            // Limits set meanwhile win; scale them instead.
            let next = if next.configured == config.configured {
                next
            } else {
                SourceConfig::new(config.configured.clone(), factor)?
            };
            state.context.replace(&mut config, next);
            tracing::info!(source = state.name(), factor, "rates scaled");
            apply(state, &config);
        }
        Ok(())
    }
}

/// Applies `config` (under its lock) to every bucket set of the source.
fn apply(state: &SourceState, config: &SourceConfig) {
    state.shared.apply(config);
    if let Some(table) = &state.hosts {
        table.for_each(|b| {
            b.apply(config);
        });
    }
}

/// A source picked by name: acquire from it directly.
///
/// Its getters read what [`Source`](super::Source)'s getters of the same
/// name read ([`on_limit_mode`](Self::on_limit_mode),
/// [`in_flight_cap`](Self::in_flight_cap), [`limits`](Self::limits)): a
/// getter is named apart from the builder's setter of the same setting
/// (`Source::on_limit(..)` sets, `on_limit_mode()` reads), and means the
/// same on both types.
///
/// The methods without a suffix ([`acquire`](Self::acquire),
/// [`try_acquire`](Self::try_acquire)) take from the source's own bucket
/// set; those ending in `_key` ([`admit_key`](Self::admit_key),
/// [`check_key`](Self::check_key)) take from the set of one key (a client,
/// a host) of a per-host source, made on first use as a request's host
/// would make it.
#[derive(Clone)]
pub struct SourceHandle {
    registry: Registry,
    index: usize,
}

impl SourceHandle {
    pub(super) fn state(&self) -> &SourceState {
        &self.registry.inner.sources[self.index]
    }

    /// Whether the source's sets answer a synchronous check
    /// ([`check_key`](Self::check_key)): not when a shared store decides
    /// their admissions.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn answers_now(&self) -> bool {
        !self.state().shared.is_remote()
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        self.state().name()
    }

    /// What the source does at its limit.
    pub fn on_limit_mode(&self) -> super::OnLimit {
        self.state().context.on_limit
    }

    /// How many requests the source lets be in flight at once, if capped.
    pub fn in_flight_cap(&self) -> Option<usize> {
        self.state().context.max_in_flight
    }

    /// Waits for `tokens` as the source says (see [`Registry::acquire`]).
    pub fn acquire(&self, tokens: f64) -> Acquire {
        self.registry.acquire_on(self.index, tokens)
    }

    /// Takes `tokens` now or refuses.
    pub fn try_acquire(&self, tokens: f64) -> Result<Permit, Error> {
        self.registry.try_acquire_on(self.index, tokens)
    }

    /// Admits `tokens` for `key`'s own bucket set in a per-host source (a
    /// key is any string; it is not routed, normalised or matched against
    /// rules), as [`Registry::admit`] does for a request; in a source with
    /// one bucket set for all, every key shares it. What a server guard
    /// calls per client key.
    #[inline]
    pub fn admit_key(&self, key: &str, tokens: f64) -> Result<Admission, Error> {
        self.registry.admit_on(
            self.index,
            key,
            super::buckets::Cost::plain(tokens),
            super::Lane::Interactive,
        )
    }

    /// Admits `tokens` for `key`'s own bucket set now, or refuses, without
    /// a [`Permit`]: [`Registry::check`] for a client key (see
    /// [`admit_key`](Self::admit_key)). A source's `max_in_flight` refuses
    /// when full but holds no slot; a source kept in Redis refuses with
    /// [`ErrorKind::AsyncOnly`](crate::ErrorKind::AsyncOnly).
    #[inline]
    pub fn check_key(&self, key: &str, tokens: f64) -> Result<(), Error> {
        let now = crate::clock::Clock::now(&self.registry.inner.clock);
        self.registry
            .check_on(self.index, key, super::buckets::Cost::plain(tokens), now)
    }

    /// Tokens available now in the tightest limit (for a source kept in
    /// Redis, this process's view only: see `redis_bucket`, feature `redis`).
    pub fn available(&self) -> f64 {
        self.state().shared.available()
    }

    /// The limits in force (after any slow-down), before any server's word.
    pub fn limits(&self) -> Vec<Policy> {
        self.state().context.config().effective().to_vec()
    }
}

impl fmt::Debug for SourceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
