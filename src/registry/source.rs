//! [`Source`]: the public description of a named source — its limits, the
//! rules that route requests to it, and how it behaves at its limit. The
//! registry turns each into bucket sets ([`buckets`](super::buckets)).

use std::time::Duration;

use crate::{Error, Policy};

/// What a source does with a request that has to wait for its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnLimit {
    /// Wait for the slot, or refuse with [`RateLimited`](crate::RateLimited) if it lies further
    /// than `max_wait` (when set). The default, with no `max_wait`.
    Wait {
        /// The longest wait accepted; `None` waits as long as it takes.
        max_wait: Option<Duration>,
    },
    /// Refuse at once with [`RateLimited`](crate::RateLimited) instead of waiting.
    ///
    /// The retry adapters hand such a refusal straight back too, even when
    /// they wrap the limiter; to have them retry it after its
    /// `retry_after`, opt in with
    /// [`RetryRules::retry_local_refusals`](crate::retry::RetryRules::retry_local_refusals)
    /// (default off).
    Reject,
}

impl Default for OnLimit {
    fn default() -> Self {
        OnLimit::Wait { max_wait: None }
    }
}

impl OnLimit {
    pub(crate) fn max_wait(self) -> Duration {
        match self {
            OnLimit::Wait { max_wait } => max_wait.unwrap_or(Duration::MAX),
            OnLimit::Reject => Duration::ZERO,
        }
    }
}

/// Whether the hosts a source matches share one bucket set or get one each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// One bucket set for every host the source matches (the default).
    #[default]
    PerSource,
    /// One bucket set per matched host (idle, full ones are evicted).
    PerHost,
}

/// A named source: its limits, the hosts (and path) routed to it, and how
/// it behaves at its limit. Checked when the registry is built.
///
/// The defaults, said once: a request over the limit waits for its slot
/// with no cap on the wait ([`OnLimit::Wait`] with `max_wait: None`; say
/// [`OnLimit::Reject`] to be refused at once); all its hosts share one
/// bucket set ([`Scope::PerSource`]; [`per_host`](Source::per_host) gives each
/// its own); no cap on requests in flight; and no limit at all is an error
/// at `build()`, so say [`Policy::unlimited`](crate::Policy::unlimited) on
/// purpose. A host rule without a port matches every port.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{OnLimit, Policy, Source};
///
/// let jikan = Source::new("jikan")
///     .limit("3/s".parse()?)
///     .limit("60/min".parse()?)
///     .host("api.jikan.moe");
/// let search = Source::new("github-search")
///     .limit(Policy::per_minute(30.0)?)
///     .host("api.github.com")
///     .path("/search")
///     .max_in_flight(4)
///     .on_limit(OnLimit::Wait { max_wait: Some(Duration::from_secs(10)) });
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use = "a source does nothing until it is given to `RegistryBuilder::source`"]
pub struct Source {
    pub(crate) name: String,
    pub(crate) limits: Vec<Policy>,
    pub(crate) hosts: Vec<String>,
    pub(crate) path: Option<String>,
    pub(crate) scope: Scope,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) on_limit: OnLimit,
    /// Why a limit could not be built (by a preset): the registry refuses
    /// to build rather than run the source looser than meant. The message,
    /// which is all the registry reports, so that sources compare.
    pub(crate) invalid: Option<String>,
    /// How this source reads servers' signals, when not the registry's way.
    pub(crate) signals: Option<crate::SignalConfig>,
    pub(crate) price: Option<super::Price>,
    /// Which limits the price weighs, by position (none marked: all).
    pub(crate) priced: Vec<usize>,
    pub(crate) shadow: bool,
    pub(crate) lanes: Option<super::Lanes>,
    pub(crate) learn: Option<crate::learn::Learn>,
    /// Where its buckets live: this process, or a shared store.
    pub(crate) store: super::store::Choice,
}

impl Source {
    /// A source with no limits (unlimited until one is added) and no rules.
    pub fn new(name: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            limits: Vec::new(),
            hosts: Vec::new(),
            path: None,
            scope: Scope::PerSource,
            max_in_flight: None,
            on_limit: OnLimit::default(),
            invalid: None,
            signals: None,
            price: None,
            priced: Vec::new(),
            shadow: false,
            lanes: None,
            learn: None,
            store: super::store::Choice::default(),
        }
    }

    /// Adds a limit; every limit applies at once.
    pub fn limit(mut self, policy: Policy) -> Self {
        self.limits.push(policy);
        self
    }

    /// Adds a limit counted in the source's [`price`](Self::price) (points)
    /// rather than in requests, beside limits that count requests: GitHub's
    /// hourly quota counts requests, its secondary limit points.
    pub fn priced_limit(mut self, policy: Policy) -> Self {
        self.priced.push(self.limits.len());
        self.limits.push(policy);
        self
    }

    /// [`priced_limit`](Self::priced_limit) for a limit that may have failed
    /// to build (see [`try_limit`](Self::try_limit)).
    pub fn try_priced_limit(self, policy: Result<Policy, Error>) -> Self {
        match policy {
            Ok(p) => self.priced_limit(p),
            Err(e) => self.try_limit(Err(e)),
        }
    }

    /// Adds a limit that may have failed to build; a failure is kept and
    /// reported by [`RegistryBuilder::build`](crate::RegistryBuilder::build),
    /// so the source never runs with fewer limits than meant.
    pub fn try_limit(mut self, policy: Result<Policy, Error>) -> Self {
        match policy {
            Ok(p) => self.limits.push(p),
            Err(e) => {
                self.invalid.get_or_insert_with(|| e.to_string());
            }
        }
        self
    }

    /// Routes a host pattern here: `api.example.com`, `*.example.com`, `*`,
    /// each with an optional `:port`. Without a port the rule matches every
    /// port (`api.example.com` covers `:443`, `:80` and `:8080`); with one,
    /// only that port. `*.example.com` matches the subdomains, not
    /// `example.com` itself. See [`rules`](crate::registry::rules).
    pub fn host(mut self, pattern: impl Into<String>) -> Self {
        self.hosts.push(pattern.into());
        self
    }

    /// Routes only paths under `prefix` (on segment boundaries) of this
    /// source's hosts.
    pub fn path(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(prefix.into());
        self
    }

    /// One bucket set per matched host instead of one for the source.
    pub fn per_host(mut self) -> Self {
        self.scope = Scope::PerHost;
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// At most `n` requests in flight at once (held from admission until the
    /// response arrives); per bucket set.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// How this source reads and applies what its servers say, instead of
    /// the registry's [`RegistryBuilder::signals`](crate::RegistryBuilder::signals):
    /// for example with a dialect switched off
    /// (`SignalConfig::default().without(Dialect::OpenAi)`). Checked when the
    /// registry is built.
    pub fn signals(mut self, config: crate::SignalConfig) -> Self {
        self.signals = Some(config);
        self
    }

    /// Prices requests by method and path (see [`Price`](super::Price)): a
    /// request takes its price from each limit added with
    /// [`priced_limit`](Self::priced_limit), or from every limit when none
    /// was. Checked when the registry is built: every cost must fit the
    /// burst of every limit it weighs.
    pub fn price(mut self, price: super::Price) -> Self {
        self.price = Some(price);
        self
    }

    /// Shadow mode: the source measures what it would have delayed or
    /// refused ([`Registry::shadow_stats`](crate::Registry::shadow_stats),
    /// and the `tollgate_shadow_*` metrics) and enforces nothing: every
    /// request goes at once. Its buckets keep the schedule an enforcing
    /// source would, so the figures are those of the same limit rolled out
    /// for real. For trying a new limit safely.
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Learns the limits its servers announce, and slows down together
    /// after a refusal instead of releasing every waiting request at once
    /// (see [`learn`](crate::learn)). The source's limits, if any, stay its
    /// ceiling; with none it starts unlimited, on purpose. The learned
    /// quotas expire after 10 minutes without a response announcing them
    /// again; [`learn_with`](Self::learn_with) sets that and turns on the
    /// adaptive controller for servers that announce nothing.
    ///
    /// ```
    /// use tollgate::{Registry, Source, UnknownHost};
    ///
    /// let registry = Registry::builder()
    ///     .source(Source::new("elsewhere").learn().per_host())
    ///     .unknown_hosts(UnknownHost::Default("elsewhere".into()))
    ///     .build()?;
    /// # let _ = registry;
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    pub fn learn(self) -> Self {
        self.learn_with(crate::learn::Learn::default())
    }

    /// [`learn`](Self::learn) with these settings.
    pub fn learn_with(mut self, learn: crate::learn::Learn) -> Self {
        self.learn = Some(learn);
        self
    }

    /// Priority lanes: waiting requests are served interactive first, batch
    /// after, with batch guaranteed its share (see [`Lanes`](super::Lanes)).
    /// A request's lane comes from its target ([`Target::with_lane`](super::Target::with_lane)),
    /// which the adapters read from the request.
    pub fn lanes(mut self, lanes: super::Lanes) -> Self {
        self.lanes = Some(lanes);
        self
    }

    /// What to do at the limit: wait (the default) or reject.
    pub fn on_limit(mut self, on_limit: OnLimit) -> Self {
        self.on_limit = on_limit;
        self
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limits as configured.
    pub fn limits(&self) -> &[Policy] {
        &self.limits
    }

    /// The host patterns routed here.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The path prefix, if any.
    pub fn path_prefix(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The scope.
    pub fn scope_mode(&self) -> Scope {
        self.scope
    }

    /// What the source does at its limit.
    pub fn on_limit_mode(&self) -> OnLimit {
        self.on_limit
    }

    /// The in-flight cap, if any.
    pub fn in_flight_cap(&self) -> Option<usize> {
        self.max_in_flight
    }
}
