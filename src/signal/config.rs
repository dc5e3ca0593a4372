//! [`SignalConfig`]: how server signals are read and applied, which
//! header [`Dialect`]s are read at all, and the [`HeaderFamily`]s a user
//! declares.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::HeaderFamily;
use crate::Error;

/// A family of rate-limit headers that [`Signal::parse`](super::Signal::parse)
/// can read. Each can be switched off ([`SignalConfig::without`]), for
/// example for a server known to send one of them wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// `Retry-After` (RFC 9110 §10.2.3), with the non-standard fractional
    /// and UNIX-timestamp forms.
    RetryAfter,
    /// `RateLimit` and `RateLimit-Policy` of
    /// draft-ietf-httpapi-ratelimit-headers -07 to -11 (structured fields).
    Ietf,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` of the
    /// drafts up to -06.
    IetfLegacy,
    /// `X-RateLimit-*` and `X-Rate-Limit-*`: GitHub, Reddit, Discord, Envoy,
    /// X and many others.
    XRateLimit,
    /// OpenAI's `x-ratelimit-{limit,remaining,reset}-requests`.
    OpenAi,
    /// Anthropic's `anthropic-ratelimit-requests-{limit,remaining,reset}`.
    Anthropic,
    /// Discogs' `X-Discogs-Ratelimit`, `-Used`, `-Remaining`.
    Discogs,
    /// The families the generic rules find by the shape of their names
    /// (`x-<vendor>-ratelimit-*`, `x-ratelimit-remaining-minute`,
    /// `x-limit-per-second`, `x-ratelimit-retry-after`, …); see the
    /// [module docs](super#generic-rules).
    Generic,
    /// The [`HeaderFamily`]s declared with [`SignalConfig::with_family`].
    Declared,
}

impl Dialect {
    /// Every dialect, in the order they are read. A slice, so that a
    /// dialect added later is not a breaking change.
    pub const ALL: &'static [Dialect] = &[
        Dialect::RetryAfter,
        Dialect::Ietf,
        Dialect::IetfLegacy,
        Dialect::XRateLimit,
        Dialect::OpenAi,
        Dialect::Anthropic,
        Dialect::Discogs,
        Dialect::Generic,
        Dialect::Declared,
    ];

    /// The dialect's name, as [`FromStr`] reads it back.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::RetryAfter => "retry-after",
            Dialect::Ietf => "ietf",
            Dialect::IetfLegacy => "ietf-legacy",
            Dialect::XRateLimit => "x-ratelimit",
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Discogs => "discogs",
            Dialect::Generic => "generic",
            Dialect::Declared => "declared",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dialect {
    type Err = Error;

    /// Reads a [`Dialect::name`]; case does not matter.
    fn from_str(s: &str) -> Result<Self, Error> {
        Dialect::ALL
            .iter()
            .copied()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
                Error::config(
                    "signal dialect",
                    format!("unknown dialect `{s}`: use one of {}", names.join(", ")),
                )
            })
    }
}

/// A set of [`Dialect`]s, kept in one integer. Like any set it defaults to empty ([`Dialects::NONE`]);
/// [`SignalConfig::default`] reads [`Dialects::ALL`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dialects(u16);

impl Dialects {
    /// Every dialect.
    pub const ALL: Dialects = {
        let mut bits = 0;
        let mut i = 0;
        while i < Dialect::ALL.len() {
            bits |= Dialect::ALL[i].bit();
            i += 1;
        }
        Dialects(bits)
    };

    /// No dialect at all: only the status (429, 503) is read.
    pub const NONE: Dialects = Dialects(0);

    /// Whether `dialect` is in the set.
    pub const fn contains(self, dialect: Dialect) -> bool {
        self.0 & dialect.bit() != 0
    }

    /// The set with `dialect` added.
    pub const fn with(self, dialect: Dialect) -> Dialects {
        Dialects(self.0 | dialect.bit())
    }

    /// The set with `dialect` removed.
    pub const fn without(self, dialect: Dialect) -> Dialects {
        Dialects(self.0 & !dialect.bit())
    }

    /// The dialects in both sets.
    pub const fn intersect(self, other: Dialects) -> Dialects {
        Dialects(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The dialects in the set, in [`Dialect::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Dialect> {
        Dialect::ALL
            .iter()
            .copied()
            .filter(move |d| self.contains(*d))
    }
}

impl Default for Dialects {
    fn default() -> Self {
        Dialects::NONE
    }
}

impl fmt::Debug for Dialects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Dialect::name))
            .finish()
    }
}

impl From<Dialect> for Dialects {
    fn from(d: Dialect) -> Self {
        Dialects::NONE.with(d)
    }
}

impl FromIterator<Dialect> for Dialects {
    fn from_iter<I: IntoIterator<Item = Dialect>>(iter: I) -> Self {
        iter.into_iter().fold(Dialects::NONE, Dialects::with)
    }
}

/// How signals are read and applied: the one place they are configured.
/// Every field can be set (the fields are public, and each has a `with_`
/// method; declared families are added with [`with_family`](Self::with_family)
/// and shared, so a clone is cheap); [`SignalConfig::validate`] says
/// whether the values make sense.
///
/// ```
/// use std::time::Duration;
/// use tollgate::signal::{Dialect, SignalConfig};
///
/// let config = SignalConfig::default()
///     .with_max_wait(Duration::from_secs(120))
///     .with_safety(0.8)
///     .without(Dialect::OpenAi);
/// config.validate()?;
/// assert!(!config.dialects.contains(Dialect::OpenAi));
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct SignalConfig {
    /// The longest wait taken from a server (default 10 minutes): an absurd
    /// `Retry-After` cannot stall a client for days. Must be above zero.
    pub max_wait: Duration,
    /// The wait after a 429 or 503 (or a rate-limit 403) that gives no hint
    /// of its own (default 1 s). At most `max_wait`.
    pub default_wait: Duration,
    /// A server's rate below a configured limit is used at this fraction
    /// (default 0.9), so that a client lowered to it stays clear of the
    /// edge. In (0, 1].
    pub safety: f64,
    /// A server's rate never lowers a limit below this fraction of its
    /// configured rate (default 0.05): a bogus tiny quota cannot stop a
    /// source. In [0, 1].
    pub floor: f64,
    /// The header dialects read (default: all).
    pub dialects: Dialects,
    /// Declared families, read before the generic rules; `None` when there
    /// are none, so the default allocates nothing.
    families: Option<Arc<[HeaderFamily]>>,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            max_wait: Duration::from_secs(600),
            default_wait: Duration::from_secs(1),
            safety: 0.9,
            floor: 0.05,
            dialects: Dialects::ALL,
            families: None,
        }
    }
}

impl SignalConfig {
    /// The same config with another cap on server-given waits.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The same config with another wait for a bare 429 or 503.
    pub fn with_default_wait(mut self, wait: Duration) -> Self {
        self.default_wait = wait;
        self
    }

    /// The same config with another safety factor.
    pub fn with_safety(mut self, safety: f64) -> Self {
        self.safety = safety;
        self
    }

    /// The same config with another floor.
    pub fn with_floor(mut self, floor: f64) -> Self {
        self.floor = floor;
        self
    }

    /// The same config reading exactly `dialects`.
    pub fn with_dialects(mut self, dialects: Dialects) -> Self {
        self.dialects = dialects;
        self
    }

    /// The same config with `dialect` switched off.
    pub fn without(mut self, dialect: Dialect) -> Self {
        self.dialects = self.dialects.without(dialect);
        self
    }

    /// The same config reading one more family, for a shape no generic
    /// rule can tell apart (a reset in milliseconds that looks like
    /// seconds, say). Declared families are read before the built-in and
    /// generic ones; the headers they name are read by them alone; and
    /// what they say is merged with the rest, the tightest winning. They
    /// apply to the requests of the source this config is given to
    /// ([`Source::signals`](crate::Source::signals)), or of every source
    /// ([`RegistryBuilder::signals`](crate::RegistryBuilder::signals)).
    ///
    /// ```
    /// use tollgate::signal::{HeaderFamily, ResetKind, SignalConfig, Unit};
    ///
    /// let config = SignalConfig::default().with_family(
    ///     HeaderFamily::new()
    ///         .remaining("x-foo-left")
    ///         .reset("x-foo-reset")
    ///         .reset_unit(Unit::Milliseconds)
    ///         .reset_kind(ResetKind::Delta),
    /// );
    /// assert_eq!(config.families().len(), 1);
    /// ```
    pub fn with_family(mut self, family: HeaderFamily) -> Self {
        let mut all = self.families().to_vec();
        all.push(family);
        self.families = Some(all.into());
        self
    }

    /// The declared families, in the order added.
    pub fn families(&self) -> &[HeaderFamily] {
        self.families.as_deref().unwrap_or(&[])
    }

    /// [`may_signal`](super::may_signal), seeing the headers of this
    /// config's declared families too.
    pub fn may_signal(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        super::may_signal(status, headers)
            || self
                .families()
                .iter()
                .any(|f| f.names().any(|n| headers.contains_key(n)))
    }

    /// Checks every field; the error names the field and the value to use.
    ///
    /// ```
    /// use tollgate::SignalConfig;
    ///
    /// assert!(SignalConfig::default().with_safety(f64::NAN).validate().is_err());
    /// assert!(SignalConfig::default().with_floor(-0.1).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_wait.is_zero() {
            return Err(Error::config(
                "SignalConfig::max_wait",
                "a zero cap would drop every wait a server asks for: use a positive cap, \
                 such as 10 minutes",
            ));
        }
        if self.default_wait > self.max_wait {
            return Err(Error::config(
                "SignalConfig::default_wait",
                format!(
                    "{:?} is above max_wait ({:?}): lower default_wait or raise max_wait",
                    self.default_wait, self.max_wait
                ),
            ));
        }
        if !(self.safety > 0.0 && self.safety <= 1.0) {
            return Err(Error::config(
                "SignalConfig::safety",
                format!(
                    "{} is not in (0, 1]: use a fraction such as 0.9 (a lowered rate 10% \
                     under the server's)",
                    self.safety
                ),
            ));
        }
        if !(self.floor >= 0.0 && self.floor <= 1.0) {
            return Err(Error::config(
                "SignalConfig::floor",
                format!(
                    "{} is not in [0, 1]: use a fraction of the configured rate such as 0.05",
                    self.floor
                ),
            ));
        }
        for (i, family) in self.families().iter().enumerate() {
            let location = format!("SignalConfig::families[{i}]");
            family.check(&location)?;
            let mut earlier = self.families()[..i].iter().flat_map(HeaderFamily::names);
            if let Some(name) = earlier.find(|n| family.names().any(|m| m == *n)) {
                return Err(Error::config(
                    location,
                    format!("`{name}` is read by an earlier family too: keep it in one"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn dialect_sets() {
        let all = Dialects::ALL;
        assert_eq!(all.iter().count(), Dialect::ALL.len());
        let some = all.without(Dialect::OpenAi).without(Dialect::Discogs);
        assert!(!some.contains(Dialect::OpenAi) && some.contains(Dialect::Ietf));
        assert_eq!(some.iter().count(), Dialect::ALL.len() - 2);
        assert!(Dialects::NONE.is_empty() && Dialects::NONE.iter().next().is_none());
        let two: Dialects = [Dialect::Ietf, Dialect::RetryAfter].into_iter().collect();
        assert_eq!(format!("{two:?}"), r#"{"retry-after", "ietf"}"#);
        for &d in Dialect::ALL {
            assert_eq!(d.name().parse::<Dialect>().unwrap(), d);
        }
        let e = "opneai".parse::<Dialect>().unwrap_err().to_string();
        assert!(e.contains("`opneai`") && e.contains("openai"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let ok = SignalConfig::default();
        ok.validate().unwrap();
        let o = || ok.clone();
        let foo = || HeaderFamily::new().remaining("x-foo-left");
        let cases = [
            (o().with_max_wait(Duration::ZERO), "max_wait"),
            (
                o().with_default_wait(Duration::from_secs(601)),
                "default_wait",
            ),
            (o().with_safety(0.0), "safety"),
            (o().with_safety(1.5), "safety"),
            (o().with_safety(f64::NAN), "safety"),
            (o().with_safety(-0.5), "safety"),
            (o().with_floor(f64::NAN), "floor"),
            (o().with_floor(-0.01), "floor"),
            (o().with_floor(1.01), "floor"),
            (o().with_family(HeaderFamily::new()), "families[0]"),
            (o().with_family(foo()).with_family(foo()), "families[1]"),
            (
                o().with_family(foo())
                    .with_family(HeaderFamily::new().limit("X-Foo")),
                "families[1]",
            ),
        ];
        for (config, field) in cases {
            let e = config.validate().expect_err(field);
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{config:?}: {e:?}");
            assert_eq!(e.location(), Some(&*format!("SignalConfig::{field}")));
        }
        o().with_safety(1.0).with_floor(0.0).validate().unwrap();
        o().with_family(foo()).validate().unwrap();
    }
}
