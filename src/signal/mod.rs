//! What servers say about their limits, read from a status and headers into
//! a [`Signal`]. This module owns the reading only: no HTTP client is
//! involved (the adapters pass in what they received), and
//! [`Permit::observe`](crate::Permit::observe) applies the result to the
//! bucket set that admitted the request.
//!
//! Switch a dialect off where a server sends it wrongly, or change the
//! longest wait a server may ask for (10 minutes by default):
//!
//! ```
//! use std::time::Duration;
//! use tollgate::signal::{Dialect, SignalConfig};
//! use tollgate::{Registry, Source};
//!
//! let signals = SignalConfig::default()
//!     .with_max_wait(Duration::from_secs(120))
//!     .without(Dialect::OpenAi);
//! signals.validate()?;
//! let registry = Registry::builder()
//!     .source(Source::new("api").limit("10/s".parse()?).host("api.example.com"))
//!     .signals(signals)
//!     .build()?;
//! # let _ = registry;
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! # Dialects are data
//!
//! Servers spell the same few facts (a limit, what remains, when it
//! resets, how long to wait) in dozens of header shapes. Each shape as its
//! own code path would grow without end and drift apart; instead a family
//! is a row of data, a [`HeaderFamily`]: the names of its limit, remaining,
//! used, reset and retry-after headers, the reset's [`Unit`] and
//! [`ResetKind`] (a delta, an epoch, by size, a Go duration, a date-time),
//! and the window of its limit when the names carry it. One reader reads
//! every row. The rows come from three places, read in this order and
//! merged alike:
//!
//! 1. the families a user declares ([`SignalConfig::with_family`], or
//!    `[[source.headers]]` in TOML), for shapes no rule can tell apart;
//! 2. the built-in table below;
//! 3. the [generic rules](#generic-rules), which build rows from the names
//!    in the response.
//!
//! Each [`Dialect`] can be switched off in [`SignalConfig`]. Sources (read
//! November 2026): RFC 9110 §10.2.3 (`Retry-After`);
//! draft-ietf-httpapi-ratelimit-headers, revisions -00 to -11 (May 2026);
//! docs.github.com (REST API rate limits); Reddit's API announcements on
//! r/redditdev (2023); discord.com/developers (rate limits);
//! envoyproxy.io (local rate limit filter); platform.openai.com (rate-limit
//! guide); docs.anthropic.com (API rate limits); discogs.com/developers;
//! docs.joinmastodon.org/api/rate-limits; linear.app/developers/rate-limiting;
//! docs.konghq.com (rate-limiting plugin);
//! developer.etsy.com/documentation/essentials/rate-limits;
//! developers.hubspot.com/docs/api/usage-details; docs.sentry.io/api/ratelimits;
//! developer.okta.com/docs/reference/rl-best-practices;
//! docs.docker.com/docker-hub/usage/pulls; docs.gitlab.com (GitLab.com rate
//! limits).
//!
//! | dialect | headers | example | read as |
//! |---|---|---|---|
//! | [`RetryAfter`](Dialect::RetryAfter) | `Retry-After` (RFC 9110 §10.2.3) | `120`, `Tue, 14 Nov 2023 22:13:50 GMT`; in practice also `1.5`, `1700000030`, `1700000030000` | the wait; wins over every other hint |
//! | [`Ietf`](Dialect::Ietf) | `RateLimit-Policy` (drafts -05 to -11) | `"burst";q=100;w=60, "daily";q=1000;w=86400`; `burst;q=100;w=60` (-08); `10;w=1, 50;w=60` (-05 to -07) | one quota per policy: `q` per `w` (or `window`) seconds; only `qu="requests"` (the default) paces requests; `pk` and unknown parameters ignored |
//! | [`Ietf`](Dialect::Ietf) | `RateLimit` (drafts -07 to -11) | `"default";r=50;t=30`; `limit=100, remaining=50, reset=30` (-07) | `r` available, restored in `t` seconds; `r=0` defers `t` |
//! | [`IetfLegacy`](Dialect::IetfLegacy) | `RateLimit-Limit`, `-Remaining`, `-Reset` (drafts -00 to -06; Twitch, GitLab, Heroku, Kong, Docker Hub) | `10`, `1`, `7`; `10, 10;w=1, 50;w=60`; Docker Hub `100;w=21600`, `76;w=21600` | limit (and quotas), remaining (and its window), reset by the size rule |
//! | [`XRateLimit`](Dialect::XRateLimit) | `X-RateLimit-Limit`, `-Remaining`, `-Used`, `-Reset`, `-Reset-After`; `X-Rate-Limit-*` (X, Okta, Zendesk) | GitHub `5000`, `0`, `1655120964`; Reddit `598.0`, reset `371`; Envoy `10, 10;w=1;name="per-ip", 1000;w=3600`; Discord reset-after `1.123`; Mastodon reset `2023-11-14T22:15:00.000000Z` | limit (Envoy: first member, then quotas), remaining (decimals allowed; else limit − used), reset by the size rule or as a date-time; Discord's `Reset-After` (always a delta) wins over `Reset`; GitHub's `-Resource` is not needed |
//! | [`OpenAi`](Dialect::OpenAi) | `x-ratelimit-{limit,remaining,reset}-requests` | `60`, `59`, `6m0s`, `1.5s`, `12ms` | reset as a Go duration; the `-tokens` twins do not pace requests and are not read |
//! | [`Anthropic`](Dialect::Anthropic) | `anthropic-ratelimit-requests-{limit,remaining,reset}` | `50`, `0`, `2023-11-14T22:13:50Z` | reset as an RFC 3339 time; the token headers are not read |
//! | [`Discogs`](Dialect::Discogs) | `X-Discogs-Ratelimit`, `-Used`, `-Remaining` | `60`, `12`, `48` | a quota per 60 s (Discogs counts a moving minute) |
//! | [`Generic`](Dialect::Generic) | `X-<Vendor>-RateLimit-*`, `X-<Vendor>-Rate-Limit-*`, `X-RateLimit-Requests-*` | Sentry `40`, `0`, `1700000001`; Linear reset `1700000030000`; Fastly `fastly-ratelimit-remaining` | as `X-RateLimit-*`, reset by the size rule (epoch ms from 10¹²) or as a date-time |
//! | [`Generic`](Dialect::Generic) | `…-interval-milliseconds` beside `…-max`/`-limit`, `-remaining` | HubSpot `100` per `10000` ms | the window of the family's limit, in ms |
//! | [`Generic`](Dialect::Generic) | a window in the name: `X-RateLimit-{Limit,Remaining}-{Second,Minute,Hour,Day,Month,Year}`; `X-<Vendor>-RateLimit-{Secondly,Daily}[-Remaining]`; `X-Limit-Per-{Second,Day}`, `X-Remaining-This-Second`, `X-Remaining-Today` | Kong `5`, `0` per second; HubSpot daily `250000`; Etsy `150` per second | a family per window, each a quota; the tightest remaining wins |
//! | [`Generic`](Dialect::Generic) | `…-Retry-After` under another prefix | `X-RateLimit-Retry-After: 12` | as `Retry-After`, below the real one |
//! | [`Declared`](Dialect::Declared) | the names of a [`HeaderFamily`] in [`SignalConfig`] | `x-foo-reset: 1500` in ms | as the family says |
//!
//! # Generic rules
//!
//! A header name with `ratelimit` or `rate-limit` in it joins the family of
//! its prefix: the word after it names its role (`limit` or `max`,
//! `remaining`, `used`, `reset`, `reset-after`, `interval-milliseconds`),
//! optionally after a `requests-` infix, and a window word (`second`,
//! `secondly`, `minute`, `hour`, `day`, `daily`, `month`, `year`) before or
//! after the role puts it in a family of that window. Any other word
//! (`tokens`, `complexity`, `concurrentlimit`) does not count requests, and
//! the name is not read. Etsy's `x-limit-per-<window>` and
//! `x-remaining-this-<window>` / `x-remaining-today` are read so too, and
//! any `<prefix>-retry-after` as a `Retry-After`. At most 8 such families
//! and 4 such retry-afters are read per response.
//!
//! # Epoch or delta
//!
//! Reset times written as a bare number (`X-RateLimit-Reset`,
//! `RateLimit-Reset`, the IETF `t` and `reset`, a numeric `Retry-After`,
//! and every family of kind [`ResetKind::BySize`]) are read by size: at or
//! above [`EPOCH_THRESHOLD_MILLIS`] (10¹², 2001-09-09T01:46:40Z in
//! milliseconds) they are UNIX timestamps in milliseconds; at or above
//! [`EPOCH_THRESHOLD_SECS`] (10⁹, the same instant in seconds) UNIX
//! timestamps in seconds; below it seconds from now. No delta that large
//! means anything (10⁹ s is 31.7 years, far beyond any cap), no timestamp in
//! seconds that small is in the future, and no timestamp in seconds at or
//! above 10¹² (the year 33658) is meant, so the three readings cannot be
//! confused for any value a server means. A timestamp in the past is a wait
//! of zero. Discord's `Reset-After` and OpenAI's durations are deltas by
//! name. What size cannot tell (a delta in milliseconds, say `1500` for
//! 1.5 s) a [`HeaderFamily`] declares.
//!
//! # Rules
//!
//! * Structured fields are parsed with `sfv` (RFC 9651), HTTP-dates with
//!   `httpdate`. A structured field split over several header lines is
//!   read as one (the lines joined with commas, RFC 9110 §5.3); a field
//!   that breaks its grammar is ignored entirely, never half-applied.
//! * Numbers are `digits[.digits]`: signs, exponents, `inf` and `NaN` are
//!   ignored, so Azure's `-1` ("unknown") is ignored. A single-valued header
//!   sent twice with different values is ignored. Date-times are ISO 8601:
//!   RFC 3339, with a fraction, an offset (`±HH:MM`, `±HHMM`, `±HH`) or
//!   minutes only (`2026-12-03T10:15Z`).
//! * `Retry-After` wins, then a family's own retry-after (the longest).
//!   Otherwise, when some dialect says fewer than one request remains, the
//!   wait is its reset; with no readable reset, the window of that quota
//!   (or of the tightest quota announced) or else
//!   [`SignalConfig::default_wait`], and [`Signal::reset_unknown`] is set
//!   so the registry can escalate; never a short default before a reset
//!   the server gave. Otherwise a limited response waits
//!   [`SignalConfig::default_wait`]. Every wait is capped at
//!   [`SignalConfig::max_wait`].
//! * Limited: a 429; a 503; a 400, 403 or 418 that carries a retry-after
//!   or an exhausted quota (GitHub answers its secondary limits with 403,
//!   Binance bans with 418). A bare 400, 403 or 418 is not a rate-limit
//!   signal.
//! * Several dialects or families at once (an account-wide count beside a
//!   per-endpoint or per-category one): the tightest wins (the least
//!   remaining and its reset, the latest reset among those equally
//!   exhausted, the least limit); every request quota is kept in
//!   [`Signal::quotas`], the slowest in [`Signal::quota`]. Quotas are
//!   always finite and above zero.
//! * [`may_signal`] looks at names only, with no allocation, and sees every
//!   shape above but the declared ones; [`SignalConfig::may_signal`] sees
//!   those too.

mod config;
mod family;
mod generic;
mod ietf;
mod values;
mod vendor;

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

pub use config::{Dialect, Dialects, SignalConfig};
pub use family::{HeaderFamily, ResetKind, Unit};
pub use values::{EPOCH_THRESHOLD_MILLIS, EPOCH_THRESHOLD_SECS};

/// A quota a server announced: `quota` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerQuota {
    /// Requests allowed per window.
    pub quota: f64,
    /// The window.
    pub window: Duration,
}

impl ServerQuota {
    /// The quota as a rate.
    pub fn per_second(&self) -> f64 {
        self.quota / self.window.as_secs_f64()
    }

    /// A quota that paces: finite and above zero, over a window above zero.
    fn checked(quota: f64, window: Duration) -> Option<ServerQuota> {
        let q = ServerQuota { quota, window };
        (quota.is_finite() && quota > 0.0 && !window.is_zero() && q.per_second() > 0.0).then_some(q)
    }
}

/// What one response says about the server's limit.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Signal {
    /// The response said the client is over its limit: a 429, a 503, or a
    /// 403 with `Retry-After` or an exhausted quota.
    pub limited: bool,
    /// How long to wait before the next request, capped: from `Retry-After`,
    /// else from an exhausted quota's reset, else the default wait of a
    /// limited response.
    pub retry_after: Option<Duration>,
    /// Requests left in the current window (the least any dialect gave).
    pub remaining: Option<f64>,
    /// The limit the server announced (the least any dialect gave).
    pub limit: Option<f64>,
    /// Time until the quota is restored, capped.
    pub reset_after: Option<Duration>,
    /// The tightest request quota announced (the lowest rate among
    /// [`quotas`](Self::quotas)).
    pub quota: Option<ServerQuota>,
    /// Every request quota announced with a window, in the order read,
    /// without repeats.
    pub quotas: Vec<ServerQuota>,
    /// The dialects that said something readable.
    pub dialects: Dialects,
    /// Some dialect said the quota is exhausted but gave no readable reset;
    /// the registry backs off from `retry_after`, doubling while this
    /// repeats, up to `max_wait`.
    pub reset_unknown: bool,
}

/// Remaining, limit and reset as one dialect (or one policy) gives them.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    remaining: Option<f64>,
    limit: Option<f64>,
    reset_after: Option<Duration>,
    /// The window the remaining count belongs to, when known.
    window: Option<Duration>,
}

impl Reading {
    fn is_empty(&self) -> bool {
        self.remaining.is_none() && self.limit.is_none() && self.reset_after.is_none()
    }

    /// Folds `other` in, keeping the tightest: the least remaining with its
    /// reset and window (a known remaining beats an unknown one; on a tie
    /// the later reset and the longer window), and the least limit.
    fn merge(&mut self, other: Reading) {
        use std::cmp::Ordering::*;
        let order = match (other.remaining, self.remaining) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (None, None) => Equal,
        };
        match order {
            Less => {
                self.remaining = other.remaining;
                self.reset_after = other.reset_after;
                self.window = other.window;
            }
            Equal => {
                self.reset_after = self.reset_after.max(other.reset_after);
                self.window = self.window.max(other.window);
            }
            Greater => {}
        }
        self.limit = match (self.limit, other.limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

impl Signal {
    /// Reads `status` and `headers` received at `now` (the wall clock, for
    /// HTTP-dates and epoch resets), with the dialects and families
    /// `config` holds.
    pub fn parse(
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
        config: &SignalConfig,
    ) -> Signal {
        let declared = config.families();
        let claimed = |n: &str| declared.iter().any(|f| f.names().any(|m| m == n));
        // One pass over the names: which dialects are present, and the
        // families the generic rules find. Names a declared family reads
        // are its own, and no other family reads them.
        let mut present = Dialects::NONE;
        let mut found = generic::Found::default();
        for name in headers.keys().map(http::HeaderName::as_str) {
            if !declared.is_empty() && claimed(name) {
                present = present.with(Dialect::Declared);
            } else if generic::candidate(name) {
                if let Some(d) = vendor::dialect_of(name) {
                    present = present.with(d);
                } else if found.add(name) {
                    present = present.with(Dialect::Generic);
                }
            }
        }
        // Only the dialects whose headers are present cost any lookups.
        let on = config.dialects.intersect(present);
        let mut s = Signal {
            limited: status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE,
            ..Signal::default()
        };
        let header_wait = on
            .contains(Dialect::RetryAfter)
            .then(|| single(headers, "retry-after"))
            .flatten()
            .and_then(|v| values::retry_after(v, now));
        if header_wait.is_some() {
            s.dialects = s.dialects.with(Dialect::RetryAfter);
        }

        let mut reading = Reading::default();
        // Prefixed retry-afters: the longest, below the real one.
        let mut family_wait: Option<Duration> = None;
        // What a dialect said: its reading merged, its quotas already pushed.
        let mut heard = |s: &mut Signal, d: Dialect, r: Option<Reading>, before: usize| {
            if let Some(r) = r {
                reading.merge(r);
            }
            if r.is_some_and(|r| !r.is_empty()) || s.quotas.len() > before {
                s.dialects = s.dialects.with(d);
            }
        };
        if on.contains(Dialect::Ietf) {
            let policies = combined(headers, "ratelimit-policy").and_then(|v| ietf::policies(&v));
            let before = s.quotas.len();
            if let Some(p) = &policies {
                s.quotas.extend_from_slice(&p.quotas);
            }
            let r = combined(headers, "ratelimit")
                .and_then(|v| ietf::ratelimit(&v, policies.as_ref(), now));
            heard(&mut s, Dialect::Ietf, r, before);
        }
        let mut family = |s: &mut Signal, d: Dialect, names: &family::Names<'_>| {
            let before = s.quotas.len();
            let (r, wait) = family::read(headers, names, now, &mut s.quotas);
            if wait.is_some() {
                family_wait = family_wait.max(wait);
                s.dialects = s.dialects.with(d);
            }
            heard(s, d, r, before);
        };
        if on.contains(Dialect::Declared) {
            for f in declared.iter() {
                family(&mut s, Dialect::Declared, &f.view());
            }
        }
        for (dialect, f) in vendor::TABLE {
            if on.contains(*dialect) {
                let names = match declared.is_empty() {
                    true => f.view(),
                    false => f.view().filtered(|n| !claimed(n)),
                };
                family(&mut s, *dialect, &names);
            }
        }
        if on.contains(Dialect::Generic) {
            for names in found.families() {
                family(&mut s, Dialect::Generic, names);
            }
            for name in found.retry_afters() {
                let names = family::Names {
                    retry_after: Some(name),
                    ..family::Names::default()
                };
                family(&mut s, Dialect::Generic, &names);
            }
        }
        if s.quotas.len() > 1 {
            let mut unique = Vec::with_capacity(s.quotas.len());
            for q in s.quotas.drain(..) {
                if !unique.contains(&q) {
                    unique.push(q);
                }
            }
            s.quotas = unique;
        }

        let cap = |d: Duration| d.min(config.max_wait);
        s.remaining = reading.remaining;
        s.limit = reading.limit;
        s.reset_after = reading.reset_after.map(cap);
        s.quota = s
            .quotas
            .iter()
            .copied()
            .min_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        let exhausted = s.remaining.is_some_and(|r| r < 1.0);
        let told_wait = header_wait.or(family_wait);
        // Servers that answer a rate limit with another status (GitHub's 403,
        // 400 and 418 elsewhere) are believed only with headers that say so.
        let other_status = [
            StatusCode::FORBIDDEN,
            StatusCode::BAD_REQUEST,
            StatusCode::IM_A_TEAPOT,
        ];
        if other_status.contains(&status) && (told_wait.is_some() || exhausted) {
            s.limited = true;
        }
        let quota_wait = match (exhausted, reading.reset_after) {
            (true, Some(reset)) => Some(reset),
            (true, None) if told_wait.is_none() => {
                // Exhausted with no readable reset: a full window is always
                // enough for the quota to come back; with none known, the
                // default wait, and the registry escalates.
                s.reset_unknown = true;
                let window = reading.window.or(s.quota.map(|q| q.window));
                Some(window.unwrap_or(config.default_wait))
            }
            _ => None,
        };
        s.retry_after = told_wait
            .or(quota_wait)
            .or(s.limited.then_some(config.default_wait))
            .map(cap);
        s
    }
}

/// Whether a response could carry a signal at all: a 429 or 503, or a
/// header of one of the built-in dialects or of a shape the generic rules
/// read (a 400, 403 or 418 is a signal only with such headers). Most
/// responses carry none, and this look, which allocates nothing, is all
/// they cost. Families declared in a [`SignalConfig`] may use names no rule
/// knows: use [`SignalConfig::may_signal`] to see those too.
pub fn may_signal(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE
        || headers.keys().any(|k| generic::candidate(k.as_str()))
}

/// The server's own `Retry-After` alone (delay-seconds, an HTTP-date, or the
/// forms met in practice, read at `now`), not capped: `None` when the header
/// is absent, malformed, or given twice with different values. The retry
/// rules use it to tell "503 with `Retry-After`" from a bare 503.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(http::header::RETRY_AFTER).iter();
    let first = values.next()?.to_str().ok()?.trim();
    if values.any(|v| v.to_str().map(str::trim).ok() != Some(first)) {
        return None;
    }
    values::retry_after(first, now)
}

/// A single-valued header: its line, or its lines when they all agree.
/// Lines that disagree, or are not visible ASCII, make it unreadable.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?.to_str().ok()?.trim();
    for line in lines {
        if line.to_str().ok()?.trim() != first {
            return None;
        }
    }
    Some(first)
}

/// A list field's lines joined with commas (RFC 9110 §5.3), borrowed when
/// there is one; empty lines add nothing, and a line that is not visible
/// ASCII makes the field unreadable.
fn combined<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    let mut out: Option<Cow<'h, str>> = None;
    for line in headers.get_all(name) {
        let line = line.to_str().ok()?.trim();
        if line.is_empty() {
            continue;
        }
        out = Some(match out {
            None => Cow::Borrowed(line),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push_str(", ");
                joined.push_str(line);
                Cow::Owned(joined)
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pre_check_sees_every_dialect() {
        let names = [
            ("retry-after", Some(Dialect::RetryAfter)),
            ("ratelimit", Some(Dialect::Ietf)),
            ("ratelimit-policy", Some(Dialect::Ietf)),
            ("ratelimit-remaining", Some(Dialect::IetfLegacy)),
            ("x-ratelimit-reset-after", Some(Dialect::XRateLimit)),
            ("x-ratelimit-used", Some(Dialect::XRateLimit)),
            ("x-rate-limit-reset", Some(Dialect::XRateLimit)),
            ("x-ratelimit-reset-requests", Some(Dialect::OpenAi)),
            (
                "anthropic-ratelimit-requests-reset",
                Some(Dialect::Anthropic),
            ),
            ("x-discogs-ratelimit-used", Some(Dialect::Discogs)),
            ("x-ratelimit-requests-reset", Some(Dialect::Generic)),
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                Some(Dialect::Generic),
            ),
            ("x-ratelimit-remaining-minute", Some(Dialect::Generic)),
            ("x-limit-per-second", Some(Dialect::Generic)),
            ("x-remaining-today", Some(Dialect::Generic)),
            ("x-foo-retry-after", Some(Dialect::Generic)),
            ("x-sentry-rate-limit-reset", Some(Dialect::Generic)),
            ("x-request-id", None),
            ("accept-ranges", None),
            ("retry", None),
        ];
        for (name, dialect) in names {
            let read = vendor::dialect_of(name).or_else(|| {
                let mut found = generic::Found::default();
                found.add(name).then_some(Dialect::Generic)
            });
            assert_eq!(read, dialect, "{name}");
            let mut h = HeaderMap::new();
            h.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static("1"),
            );
            assert_eq!(may_signal(StatusCode::OK, &h), dialect.is_some(), "{name}");
        }
    }
}
