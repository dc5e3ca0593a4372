//! [`RegistryBuilder`]: checks every source and rule, then builds the
//! [`Registry`].

use crate::sync::Arc;
use std::fmt;

use super::buckets::{Buckets, SourceConfig, SourceContext};
use super::hosts::{HostTable, DEFAULT_MAX_HOSTS};
use super::rules::Router;
use super::{names, Inner, Registry, Scope, Source, SourceState, Unknown};
use crate::clock::{Clock, SharedClock};
use crate::{Error, SignalConfig};

/// What the registry does with a request that no rule matches (or that
/// names no host).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownHost {
    /// Send it without limit (the default).
    #[default]
    PassThrough,
    /// Use the named source.
    Default(String),
    /// Refuse it with [`ErrorKind::UnknownHost`](crate::ErrorKind::UnknownHost).
    Reject,
}

/// Builds a [`Registry`]; see [`Registry::builder`].
///
/// Every setting has a default, said here: unknown hosts pass through
/// unlimited ([`UnknownHost::PassThrough`]), servers' signals are read with
/// [`SignalConfig::default`](crate::SignalConfig) (waits capped at 10
/// minutes), per-host sources keep at most [`DEFAULT_MAX_HOSTS`]
/// host sets, the clock is [`FastClock`](crate::FastClock), and nothing is
/// in shadow mode. `build()` checks everything at once and names what to
/// change:
///
/// ```
/// use tollgate::{presets, Registry, Source, UnknownHost};
///
/// let registry = Registry::builder()
///     .source(presets::musicbrainz())
///     .source(Source::new("api").limit("10/s".parse()?).host("api.example.com"))
///     .unknown_hosts(UnknownHost::Reject)
///     .build()?;
/// assert_eq!(registry.names(), ["musicbrainz", "api"]);
///
/// let missing_limit = Registry::builder().source(Source::new("quiet").host("quiet.example.com")).build();
/// assert!(missing_limit.unwrap_err().to_string().contains("Policy::unlimited()"));
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct RegistryBuilder {
    pub(super) sources: Vec<Source>,
    pub(super) unknown: UnknownHost,
    clock: Option<SharedClock>,
    pub(super) max_hosts: Option<usize>,
    signals: SignalConfig,
    shadow: bool,
    /// The store every source keeps its buckets in, unless it chooses.
    pub(super) store: super::store::RegistryStore,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("sources", &self.sources)
            .field("unknown", &self.unknown)
            .finish_non_exhaustive()
    }
}

impl RegistryBuilder {
    /// Adds a source.
    pub fn source(mut self, source: Source) -> Self {
        self.sources.push(source);
        self
    }

    /// Adds several sources.
    pub fn sources(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.sources.extend(sources);
        self
    }

    /// What to do with requests no rule matches.
    pub fn unknown_hosts(mut self, unknown: UnknownHost) -> Self {
        self.unknown = unknown;
        self
    }

    /// The clock every bucket reads and sleeps on (default
    /// [`FastClock`](crate::FastClock), which follows tokio's paused time in
    /// tests); [`TokioClock`](crate::TokioClock) for exact paused-time tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(SharedClock::new(clock));
        self
    }

    /// How many per-host bucket sets each per-host source keeps at most
    /// (default [`DEFAULT_MAX_HOSTS`]).
    pub fn max_hosts(mut self, n: usize) -> Self {
        self.max_hosts = Some(n);
        self
    }

    /// Shadow mode for every source (see [`Source::shadow`]): measure,
    /// enforce nothing.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// How server signals are read and applied (caps, safety factor, floor).
    pub fn signals(mut self, config: SignalConfig) -> Self {
        self.signals = config;
        self
    }

    /// Checks every source and rule and builds the registry.
    pub fn build(self) -> Result<Registry, Error> {
        self.signals.validate()?;
        let clock = self.clock.unwrap_or_default();
        let set_clock: super::buckets::SetClock = std::sync::Arc::new(clock.clone());
        let max_hosts = self.max_hosts.unwrap_or(DEFAULT_MAX_HOSTS);
        if max_hosts == 0 {
            return Err(Error::config(
                "max_hosts",
                "keep at least one host per source",
            ));
        }
        let mut router = Router::default();
        let mut contexts = Vec::with_capacity(self.sources.len());
        let mut seen = std::collections::HashSet::with_capacity(self.sources.len());
        for (i, s) in self.sources.iter().enumerate() {
            let at = || format!("source `{}`", s.name);
            check(s, i, at)?;
            if !seen.insert(s.name.as_str()) {
                return Err(Error::config(
                    at(),
                    "the name is used twice; give each source its own",
                ));
            }
            for h in &s.hosts {
                router
                    .add(h, s.path.as_deref(), i)
                    .map_err(|e| e.relocate(|location| format!("{location} in {}", at())))?;
            }
            no_limit(s, &at)?;
            let config = SourceConfig::new(s.limits.clone(), 1.0)?;
            let policies = config.effective().to_vec();
            let shadow = s.shadow || self.shadow;
            let context = SourceContext::new(
                s,
                s.signals.clone().unwrap_or_else(|| self.signals.clone()),
                shadow,
                priced_mask(s),
                config,
            );
            let store = super::store::SourceStore::of(&self.store, s, shadow)
                .map_err(|e| e.relocate(|_| at()))?;
            let context = context.with_store(store);
            contexts.push((Arc::new(context), policies));
        }
        // The sources' own sets are made together, after everything else a
        // source allocates, so that they lie side by side: the lines a
        // request reads then span a few hundred bytes per source rather
        // than a kilobyte (fewer pages, fewer TLB misses at 10,000
        // sources).
        let mut states = Vec::with_capacity(self.sources.len());
        for (s, (context, policies)) in self.sources.iter().zip(contexts) {
            let shared = Arc::new(Buckets::new(context.clone(), None, &policies, &set_clock));
            states.push(SourceState {
                scope: s.scope,
                context,
                shared,
                hosts: (s.scope == Scope::PerHost).then(|| Box::new(HostTable::new(max_hosts))),
            });
        }
        let unknown = match &self.unknown {
            UnknownHost::PassThrough => Unknown::PassThrough,
            UnknownHost::Reject => Unknown::Reject,
            UnknownHost::Default(name) => match states.iter().position(|s| s.name() == name) {
                Some(i) => Unknown::Source(i),
                None => {
                    return Err(Error::config(
                        "unknown_hosts",
                        format!(
                            "the default source `{name}` is not registered; registered: [{}]",
                            names(&states).join(", ")
                        ),
                    ))
                }
            },
        };
        router.attach(|i| states[i].hosts.is_none().then(|| states[i].shared.clone()));
        let has_lanes = self.sources.iter().any(|s| s.lanes.is_some());
        Ok(Registry {
            inner: Arc::new(Inner {
                has_lanes,
                sources: states.into_boxed_slice(),
                router,
                unknown,
                clock,
                set_clock,
            }),
        })
    }
}

/// Which limits a source's price weighs: those marked, or all when none is.
fn priced_mask(s: &Source) -> u64 {
    if s.price.is_none() {
        return 0;
    }
    if s.priced.is_empty() {
        // Every configured limit; a learned limit counts requests.
        return match s.limits.len() {
            64.. => u64::MAX,
            n => (1u64 << n) - 1,
        };
    }
    s.priced.iter().fold(0, |m, &i| m | (1u64 << i))
}

/// The checks of one source against those before it.
fn check(s: &Source, i: usize, at: impl Fn() -> String) -> Result<(), Error> {
    if s.name.trim().is_empty() {
        return Err(Error::config(
            format!("source #{}", i + 1),
            "the name is empty",
        ));
    }
    if let Some(signals) = &s.signals {
        signals
            .validate()
            .map_err(|e| Error::config(at(), format!("its signal settings: {e}")))?;
    }
    let extra = if s.learn.is_some() {
        crate::learn::state::EXTRA_LIMITS
    } else {
        0
    };
    if s.limits.len() + extra > 64 {
        return Err(Error::config(
            at(),
            format!(
                "a source holds at most 64 limits{}",
                if extra > 0 {
                    ", and learning takes 3 of them"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(learn) = &s.learn {
        learn
            .validate()
            .map_err(|e| Error::config(at(), format!("its learning settings: {e}")))?;
    }
    if let Some(price) = &s.price {
        let mask = priced_mask(s);
        let weighed: Vec<_> = (0..s.limits.len())
            .filter(|i| (mask >> i) & 1 == 1)
            .map(|i| s.limits[i])
            .collect();
        price
            .check(&weighed)
            .map_err(|reason| Error::config(at(), reason))?;
    }
    if let Some(e) = &s.invalid {
        return Err(Error::config(
            at(),
            format!("a limit could not be built: {e}"),
        ));
    }
    if let Some(lanes) = &s.lanes {
        super::lanes::check(lanes).map_err(|e| Error::config(at(), e.to_string()))?;
    }
    if s.max_in_flight == Some(0) {
        return Err(Error::config(at(), "max_in_flight must be at least 1"));
    }
    if s.path.is_some() && s.hosts.is_empty() {
        return Err(Error::config(
            at(),
            "a path prefix needs a host; add `.host(..)`",
        ));
    }
    Ok(())
}

/// A source with no limit would admit everything: refused unless said on
/// purpose (`Policy::unlimited()`) or learned (`Source::learn`). Checked
/// after its rules, so a rule's own error comes first.
fn no_limit(s: &Source, at: &impl Fn() -> String) -> Result<(), Error> {
    if s.limits.is_empty() && s.learn.is_none() && s.invalid.is_none() {
        return Err(Error::config(
            at(),
            "it has no limit, so it would admit everything: add one (`.limit(\"10/s\".parse()?)`), \
             say so on purpose (`.limit(Policy::unlimited())`; in TOML `limits = [\"unlimited\"]`), \
             or let it learn its servers' limits (`.learn()`)",
        ));
    }
    Ok(())
}
