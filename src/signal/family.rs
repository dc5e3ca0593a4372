//! Header families as data: [`HeaderFamily`] names the headers of one
//! family and says how its reset is written. The built-in table
//! (`vendor.rs`), the families the generic rules find (`generic.rs`) and
//! the ones a user declares are all read by the one function here.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::values::{count, reset_as, retry_after};
use super::{combined, ietf, single, Reading, ServerQuota};
use crate::Error;

/// The unit of a family's numeric reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// Seconds (the default), decimals allowed.
    #[default]
    Seconds,
    /// Milliseconds, decimals allowed.
    Milliseconds,
}

/// How a family writes the time its quota is restored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetKind {
    /// Decided by the value (the default): a number by size (see
    /// [`EPOCH_THRESHOLD_SECS`](super::EPOCH_THRESHOLD_SECS)), else an
    /// ISO 8601 time or an HTTP-date.
    #[default]
    BySize,
    /// A number of [`Unit`]s from now.
    Delta,
    /// A number of [`Unit`]s since the UNIX epoch.
    Epoch,
    /// A Go duration (`6m0s`, `1.5s`, `12ms`), as OpenAI writes it.
    GoDuration,
    /// An ISO 8601 / RFC 3339 time (`2023-11-14T22:13:50Z`, with a
    /// fraction, an offset or minutes only) or an HTTP-date.
    Timestamp,
}

/// One family of rate-limit headers: the names of its limit, remaining,
/// reset and retry-after headers, how its reset is written, and the window
/// of its limit when the headers do not say it.
///
/// For shapes no generic rule can tell apart, such as a reset in
/// milliseconds whose values look like seconds, declare the family and add
/// it with [`SignalConfig::with_family`](super::SignalConfig::with_family).
/// A declared family belongs to the [`SignalConfig`](super::SignalConfig)
/// that holds it, so it applies to the requests of the source given that
/// config ([`Source::signals`](crate::Source::signals)); scope a source to
/// part of a host with [`Source::path`](crate::Source::path).
///
/// ```
/// use std::time::Duration;
/// use tollgate::signal::{HeaderFamily, ResetKind, SignalConfig, Unit};
///
/// let foo = HeaderFamily::new()
///     .limit("x-foo-limit")
///     .remaining("x-foo-left")
///     .reset("x-foo-reset")
///     .reset_unit(Unit::Milliseconds)
///     .reset_kind(ResetKind::Delta)
///     .window(Duration::from_secs(1));
/// let config = SignalConfig::default().with_family(foo);
/// config.validate()?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HeaderFamily {
    /// The limit: a number, or a list with `w=` windows.
    pub limit: Option<Cow<'static, str>>,
    /// Requests left: a number, or a list item with a `w=` window.
    pub remaining: Option<Cow<'static, str>>,
    /// Requests used, counted down from the limit when `remaining` is absent.
    pub used: Option<Cow<'static, str>>,
    /// When the quota is restored, written as [`reset_kind`](Self::reset_kind) says.
    pub reset: Option<Cow<'static, str>>,
    /// A wait read as `Retry-After` is, below the real `Retry-After`.
    pub retry_after: Option<Cow<'static, str>>,
    /// The unit of a numeric reset.
    pub reset_unit: Unit,
    /// How the reset is written.
    pub reset_kind: ResetKind,
    /// The window of the limit, for families that do not send it.
    pub window: Option<Duration>,
    /// A delta in `reset_unit` that wins over `reset` (Discord's
    /// `Reset-After`); built-in rows only.
    pub(super) reset_after: Option<Cow<'static, str>>,
}

impl HeaderFamily {
    /// A family with no headers yet.
    pub fn new() -> HeaderFamily {
        HeaderFamily::default()
    }

    /// The limit's header name (lowercase).
    pub fn limit(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.limit = Some(name.into());
        self
    }

    /// The remaining count's header name (lowercase).
    pub fn remaining(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.remaining = Some(name.into());
        self
    }

    /// The used count's header name (lowercase).
    pub fn used(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.used = Some(name.into());
        self
    }

    /// The reset's header name (lowercase).
    pub fn reset(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.reset = Some(name.into());
        self
    }

    /// The header name (lowercase) of a retry-after of this family.
    pub fn retry_after(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.retry_after = Some(name.into());
        self
    }

    /// The unit of a numeric reset.
    pub fn reset_unit(mut self, unit: Unit) -> Self {
        self.reset_unit = unit;
        self
    }

    /// How the reset is written.
    pub fn reset_kind(mut self, kind: ResetKind) -> Self {
        self.reset_kind = kind;
        self
    }

    /// The window of the limit: the limit becomes a quota per `window`, and
    /// a remaining of 0 with no readable reset waits this long.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// Every header name the family reads.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.limit,
            &self.remaining,
            &self.used,
            &self.reset,
            &self.retry_after,
            &self.reset_after,
        ]
        .into_iter()
        .filter_map(|n| n.as_deref())
    }

    /// The family as names borrowed for reading.
    pub(super) fn view(&self) -> Names<'_> {
        Names {
            limit: self.limit.as_deref(),
            remaining: self.remaining.as_deref(),
            used: self.used.as_deref(),
            reset: self.reset.as_deref(),
            reset_after: self.reset_after.as_deref(),
            retry_after: self.retry_after.as_deref(),
            window_ms: None,
            unit: self.reset_unit,
            kind: self.reset_kind,
            window: self.window,
        }
    }

    /// Checks the family: at least one header name, each a valid lowercase
    /// name used once, a window above zero, a unit only for numbers. The
    /// error says what to change.
    ///
    /// ```
    /// use tollgate::signal::HeaderFamily;
    ///
    /// assert!(HeaderFamily::new().remaining("x-foo-left").validate().is_ok());
    /// assert!(HeaderFamily::new().remaining("X-Foo-Left").validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        self.check("HeaderFamily")
    }

    /// [`validate`](Self::validate), with `location` naming the family.
    pub(super) fn check(&self, location: &str) -> Result<(), Error> {
        let names: Vec<&str> = self.names().collect();
        if names.is_empty() {
            return Err(Error::config(
                location,
                "the family names no header: set at least `remaining` and `reset`, or \
                 `retry_after`",
            ));
        }
        for (i, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.bytes().all(|b| !b.is_ascii_uppercase())
                && http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !valid {
                return Err(Error::config(
                    location,
                    format!(
                        "`{name}` is not a lowercase header name: write it as it is sent, in \
                         lowercase, such as `x-foo-remaining`"
                    ),
                ));
            }
            if *name == "retry-after" {
                return Err(Error::config(
                    location,
                    "`retry-after` is always read, and first: name another header",
                ));
            }
            if names[..i].contains(name) {
                return Err(Error::config(
                    location,
                    format!("`{name}` is named twice: give each role its own header"),
                ));
            }
        }
        if self.window.is_some_and(|w| w.is_zero()) {
            return Err(Error::config(
                location,
                "a zero window has no rate: use the window the limit counts over, such as 1s",
            ));
        }
        let numeric = matches!(
            self.reset_kind,
            ResetKind::BySize | ResetKind::Delta | ResetKind::Epoch
        );
        if self.reset_unit == Unit::Milliseconds && !numeric {
            return Err(Error::config(
                location,
                "a reset unit applies to numbers only: remove `reset_unit`, or use the kind \
                 `delta`, `epoch` or `by-size`",
            ));
        }
        Ok(())
    }
}

/// A family's header names, borrowed (from a table row, a declared family,
/// or the names in the response itself), so reading allocates nothing.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Names<'a> {
    pub limit: Option<&'a str>,
    pub remaining: Option<&'a str>,
    pub used: Option<&'a str>,
    pub reset: Option<&'a str>,
    pub reset_after: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    /// A header holding the window in milliseconds (HubSpot's
    /// `-Interval-Milliseconds`).
    pub window_ms: Option<&'a str>,
    pub unit: Unit,
    pub kind: ResetKind,
    pub window: Option<Duration>,
}

impl Names<'_> {
    /// The same names without those `keep` refuses.
    pub(super) fn filtered(mut self, keep: impl Fn(&str) -> bool) -> Self {
        for n in [
            &mut self.limit,
            &mut self.remaining,
            &mut self.used,
            &mut self.reset,
            &mut self.reset_after,
            &mut self.retry_after,
            &mut self.window_ms,
        ] {
            if n.is_some_and(|n| !keep(n)) {
                *n = None;
            }
        }
        self
    }
}

/// What one family said: its reading (`None` when empty), the quotas it
/// announced (pushed to `quotas`), and its own retry-after.
pub(super) fn read(
    headers: &HeaderMap,
    f: &Names<'_>,
    now: SystemTime,
    quotas: &mut Vec<ServerQuota>,
) -> (Option<Reading>, Option<Duration>) {
    let get = |name: Option<&str>| name.and_then(|n| single(headers, n));
    let window = get(f.window_ms)
        .and_then(count)
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .filter(|w| !w.is_zero())
        .or(f.window);
    let limit = f
        .limit
        .and_then(|n| combined(headers, n))
        .and_then(|v| ietf::limit_list(&v))
        .map(|(limit, q)| {
            quotas.extend(q);
            limit
        });
    if let (Some(limit), Some(window)) = (limit, window) {
        quotas.extend(ServerQuota::checked(limit, window));
    }
    let (remaining, remaining_window) = match get(f.remaining).and_then(ietf::remaining_item) {
        Some((r, w)) => (Some(r), w),
        None => (None, None),
    };
    let remaining = remaining.or_else(|| {
        let used = get(f.used).and_then(count)?;
        Some((limit? - used).max(0.0))
    });
    let reset_after = get(f.reset_after)
        .and_then(|v| reset_as(v, f.unit, ResetKind::Delta, now))
        .or_else(|| get(f.reset).and_then(|v| reset_as(v, f.unit, f.kind, now)));
    let reading = Reading {
        remaining,
        limit,
        reset_after,
        window: remaining_window.or(window),
    };
    let wait = get(f.retry_after).and_then(|v| retry_after(v, now));
    ((!reading.is_empty()).then_some(reading), wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn location_and_reason(f: &HeaderFamily) -> String {
        match f.check("family") {
            Err(e) if e.kind() == ErrorKind::InvalidConfig => e.reason().unwrap().to_string(),
            other => panic!("{f:?}: {other:?}"),
        }
    }

    #[test]
    fn validation_says_what_to_change() {
        let ok = HeaderFamily::new()
            .remaining("x-foo-left")
            .reset("x-foo-reset");
        ok.validate().unwrap();
        let cases = [
            (HeaderFamily::new(), "names no header"),
            (ok.clone().limit("X-Foo-Limit"), "lowercase"),
            (ok.clone().limit("x foo"), "lowercase"),
            (ok.clone().limit(""), "lowercase"),
            (ok.clone().limit("x-foo-left"), "named twice"),
            (ok.clone().retry_after("retry-after"), "always read"),
            (ok.clone().window(Duration::ZERO), "zero window"),
            (
                ok.clone()
                    .reset_kind(ResetKind::GoDuration)
                    .reset_unit(Unit::Milliseconds),
                "numbers only",
            ),
        ];
        for (family, words) in cases {
            let reason = location_and_reason(&family);
            assert!(reason.contains(words), "{family:?}: {reason}");
        }
    }
}
