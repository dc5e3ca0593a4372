//! What servers say about their limits, read from a status and headers into
//! a [`Signal`]. No HTTP client is involved: the adapters pass in what they
//! received, and [`Registry::observe`](crate::Registry::observe) applies it.
//!
//! | header | example | read as |
//! |---|---|---|
//! | `Retry-After` (RFC 9110) | `120`, `Fri, 31 Dec 1999 23:59:59 GMT` | wait; takes precedence over every other hint |
//! | `RateLimit-Policy` (IETF draft, RFC 9651 list) | `"burst";q=100;w=60` | quota `q` per `w` seconds |
//! | `RateLimit` (IETF draft) | `"default";r=50;t=30` | `r` remaining, restored in `t` seconds |
//! | `RateLimit-Limit/-Remaining/-Reset` (older draft) | `10`, `1`, `7`; `10, 10;w=1` | limit (and window), remaining, reset in seconds |
//! | `X-RateLimit-Limit/-Remaining/-Reset/-Used` (GitHub, Reddit, Envoy) | `5000`, `0`, `1655120964` | reset as an epoch when above 10⁹, else seconds |
//! | `X-Rate-Limit-*` (X) | `x-rate-limit-reset: 1705420800` | as above |
//! | `X-RateLimit-Reset-After` (Discord) | `1.123` | seconds to reset, preferred over the epoch |
//! | `X-Discogs-Ratelimit`, `-Used`, `-Remaining` | `60`, `12`, `48` | limit per 60 s (Discogs counts a moving minute) |
//!
//! Structured fields are parsed with `sfv` and dates with `httpdate`.
//! Malformed values are ignored, never a panic; every wait a server gives
//! is capped at [`SignalConfig::max_wait`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};

/// How signals are read and applied.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct SignalConfig {
    /// The longest wait taken from a server (default 10 minutes): an absurd
    /// `Retry-After` cannot stall a client for days.
    pub max_wait: Duration,
    /// The wait after a 429 or 503 that gives no hint of its own (default 1 s).
    pub default_wait: Duration,
    /// A server's rate below a configured limit is used at this fraction
    /// (default 0.9), so that a client lowered to it stays clear of the edge.
    pub safety: f64,
    /// A server's rate never lowers a limit below this fraction of its
    /// configured rate (default 0.05): a bogus `q=0` cannot stop a source.
    pub floor: f64,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            max_wait: Duration::from_secs(600),
            default_wait: Duration::from_secs(1),
            safety: 0.9,
            floor: 0.05,
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
}

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
}

/// What one response says about the server's limit.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Signal {
    /// The response said the client is over its limit (429, or 503 with a
    /// `Retry-After` or when the server is known to use 503 for it).
    pub limited: bool,
    /// How long to wait before the next request, capped: from `Retry-After`,
    /// else from `remaining = 0` and the reset, else the default wait of a
    /// bare 429/503.
    pub retry_after: Option<Duration>,
    /// Requests left in the current window.
    pub remaining: Option<f64>,
    /// The limit the server announced.
    pub limit: Option<f64>,
    /// Time until the quota is restored, capped.
    pub reset_after: Option<Duration>,
    /// The tightest quota with a known window.
    pub quota: Option<ServerQuota>,
}

impl Signal {
    /// Reads `status` and `headers` received at `now` (the wall clock, for
    /// HTTP-dates and epoch resets).
    pub fn parse(
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
        config: &SignalConfig,
    ) -> Signal {
        let cap = |d: Duration| d.min(config.max_wait);
        let mut s = Signal {
            limited: status == StatusCode::TOO_MANY_REQUESTS,
            ..Signal::default()
        };
        let retry_after = header(headers, "retry-after").and_then(|v| parse_retry_after(v, now));
        if retry_after.is_some() && status == StatusCode::SERVICE_UNAVAILABLE {
            s.limited = true;
        }

        // IETF structured fields first, then the older and vendor forms.
        if let Some(v) = header(headers, "ratelimit") {
            if let Some((r, t)) = parse_ratelimit(v) {
                s.remaining = Some(r);
                s.reset_after = t.map(cap);
            }
        }
        if let Some(v) = header(headers, "ratelimit-policy") {
            s.quota = tightest(s.quota, parse_policy_list(v));
        }
        for names in FAMILIES {
            let get = |name: &str| {
                let i = ["remaining", "limit", "reset-after", "reset"]
                    .iter()
                    .position(|n| *n == name)?;
                header(headers, names[i])
            };
            if s.remaining.is_none() {
                s.remaining = get("remaining").and_then(number);
            }
            if let Some(limit) = get("limit") {
                // `10` or the older draft's `10, 10;w=1, 50;w=60`.
                let first = limit.split([',', ';']).next().and_then(number);
                s.limit = s.limit.or(first);
                if limit.contains("w=") {
                    s.quota = tightest(s.quota, parse_policy_list(limit));
                }
            }
            if s.reset_after.is_none() {
                let reset = get("reset-after")
                    .and_then(number)
                    .and_then(secs)
                    .or_else(|| get("reset").and_then(|v| parse_reset(v, now)));
                s.reset_after = reset.map(cap);
            }
        }
        if let Some(limit) = header(headers, "x-discogs-ratelimit").and_then(number) {
            s.limit = s.limit.or(Some(limit));
            s.quota = tightest(
                s.quota,
                Some(ServerQuota {
                    quota: limit,
                    window: Duration::from_secs(60),
                }),
            );
            if s.remaining.is_none() {
                s.remaining = header(headers, "x-discogs-ratelimit-remaining")
                    .and_then(number)
                    .or_else(|| {
                        let used = header(headers, "x-discogs-ratelimit-used").and_then(number)?;
                        Some((limit - used).max(0.0))
                    });
            }
        }

        s.retry_after = match retry_after {
            Some(d) => Some(cap(d)),
            None if s.remaining == Some(0.0) => {
                s.reset_after.or(s.limited.then_some(config.default_wait))
            }
            None if s.limited || status == StatusCode::SERVICE_UNAVAILABLE => {
                Some(cap(config.default_wait))
            }
            None => None,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            s.limited = true;
        }
        s
    }
}

/// The `-remaining`, `-limit`, `-reset-after` and `-reset` headers of each
/// family, spelled out so that reading them allocates nothing.
const FAMILIES: [[&str; 4]; 3] = [
    [
        "ratelimit-remaining",
        "ratelimit-limit",
        "ratelimit-reset-after",
        "ratelimit-reset",
    ],
    [
        "x-ratelimit-remaining",
        "x-ratelimit-limit",
        "x-ratelimit-reset-after",
        "x-ratelimit-reset",
    ],
    [
        "x-rate-limit-remaining",
        "x-rate-limit-limit",
        "x-rate-limit-reset-after",
        "x-rate-limit-reset",
    ],
];

/// Whether a response could carry a signal at all: a 429 or 503, or a
/// header of one of the families read here. Most responses carry none, and
/// this look is all they cost.
pub fn may_signal(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE
        || headers.keys().any(|k| {
            let k = k.as_str();
            k == "retry-after"
                || k.starts_with("ratelimit")
                || k.starts_with("x-ratelimit")
                || k.starts_with("x-rate-limit")
                || k.starts_with("x-discogs-ratelimit")
        })
}

/// The server's own `Retry-After` alone (seconds or an HTTP-date, read at
/// `now`), not capped: `None` when the header is absent or malformed. The
/// retry rules use it to tell "503 with `Retry-After`" from a bare 503.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    header(headers, "retry-after").and_then(|v| parse_retry_after(v, now))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// A finite, non-negative number.
fn number(v: &str) -> Option<f64> {
    let n: f64 = v.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

fn secs(n: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(n).ok()
}

/// `Retry-After`: delay-seconds (digits only) or an HTTP-date.
fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is an absurd wait: the cap will apply.
        return Some(
            v.parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
        );
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A reset: epoch seconds when above 10⁹ (a delta is small), else seconds.
fn parse_reset(v: &str, now: SystemTime) -> Option<Duration> {
    let n = number(v)?;
    if n > 1e9 {
        let at = UNIX_EPOCH.checked_add(secs(n)?)?;
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        secs(n)
    }
}

fn param(params: &sfv::Parameters, key: &str) -> Option<f64> {
    let (_, v) = params.iter().find(|(k, _)| k.as_str() == key)?;
    let n = match v {
        sfv::BareItem::Integer(i) => i64::from(*i) as f64,
        sfv::BareItem::Decimal(d) => f64::from(*d),
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n)
}

/// `RateLimit: "default";r=50;t=30` → the entry with the least remaining.
fn parse_ratelimit(v: &str) -> Option<(f64, Option<Duration>)> {
    let list: sfv::List = sfv::Parser::new(v).parse().ok()?;
    list.iter()
        .filter_map(|e| match e {
            sfv::ListEntry::Item(item) => {
                let r = param(&item.params, "r")?;
                Some((r, param(&item.params, "t").and_then(secs)))
            }
            sfv::ListEntry::InnerList(_) => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// `RateLimit-Policy: "burst";q=100;w=60` (or the older `10;w=1, 50;w=60`)
/// → the quota with the lowest rate among those that give a window.
fn parse_policy_list(v: &str) -> Option<ServerQuota> {
    let list: sfv::List = sfv::Parser::new(v).parse().ok()?;
    list.iter()
        .filter_map(|e| {
            let sfv::ListEntry::Item(item) = e else {
                return None;
            };
            let q = param(&item.params, "q").or_else(|| match &item.bare_item {
                sfv::BareItem::Integer(i) => Some(i64::from(*i) as f64).filter(|n| *n >= 0.0),
                _ => None,
            })?;
            let unit = item.params.iter().find(|(k, _)| k.as_str() == "qu");
            if let Some((_, sfv::BareItem::String(u))) = unit {
                if u.as_str() != "requests" {
                    return None; // a byte or concurrency quota is not a request rate
                }
            }
            let w = param(&item.params, "w")
                .and_then(secs)
                .filter(|w| !w.is_zero())?;
            Some(ServerQuota {
                quota: q,
                window: w,
            })
        })
        .fold(None, |acc, q| tightest(acc, Some(q)))
}

fn tightest(a: Option<ServerQuota>, b: Option<ServerQuota>) -> Option<ServerQuota> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.per_second() < a.per_second() {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(946_684_799 - 120);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
    }
}
