//! What the guard writes: the `RateLimit` and `RateLimit-Policy` fields of
//! draft-ietf-httpapi-ratelimit-headers, `Retry-After`, and RFC 9457
//! problem bodies for refusals; the answer to each refusal; and what it
//! writes from: a tier as its answers describe it, and which headers a
//! success carries ([`SuccessHeaders`]).
//!
//! Every time is whole seconds rounded *up*, so a client that waits what it
//! is told is never early. Every integer is at most [`SF_INTEGER_MAX`]
//! (RFC 9651 allows 15 digits; one more makes the whole field invalid).

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::registry::SourceHandle;
use crate::{Error, ErrorKind, Permit, Policy};

/// The problem type the rate-limit draft registers for a refusal.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// The largest integer a structured field may carry (RFC 9651, 3.3.1).
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// Which rate-limit headers an admitted request's response carries (a
/// 429 always carries `Retry-After`, `RateLimit` and `RateLimit-Policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuccessHeaders {
    /// None.
    None,
    /// `RateLimit` (the default): what remains of the key's quota, so a
    /// client can slow down before it is refused.
    #[default]
    RateLimit,
    /// `RateLimit` and `RateLimit-Policy`.
    RateLimitAndPolicy,
}

/// A tier: a registry source, in which each key has its own bucket set
/// (see [`tier`](super::tier)), as its
/// answers describe it.
pub(crate) struct TierInfo {
    pub name: Arc<str>,
    /// The name as an RFC 9651 string, quotes included: `"free"`.
    pub quoted: Box<str>,
    pub handle: SourceHandle,
    /// Whether an admitted request of this tier needs no [`Permit`](crate::Permit)
    /// when no success headers are sent: no `max_in_flight` slot to hold,
    /// and sets that answer a synchronous check (not kept in Redis).
    pub permit_free: bool,
    /// Whether a request over the limit may wait (not `OnLimit::Reject`).
    pub waits: bool,
}

/// `n` as a structured field can carry it: a tier with a burst of 10^16
/// announces 999,999,999,999,999 left, which is still true enough to pace
/// by, where 10^16 would void the field.
fn sf_integer(n: u64) -> u64 {
    n.min(SF_INTEGER_MAX)
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Whole seconds of a float, rounded up, forgiving the last bits of float
/// error (`12.000000000000002` is 12).
fn ceil_f64(secs: f64) -> u64 {
    if secs.is_nan() || secs <= 0.0 {
        return 0;
    }
    (secs - 1e-9).ceil().min(u64::MAX as f64) as u64
}

/// A policy as `q` requests per `w` whole seconds: its amount per period as
/// written, scaled by the least factor (up to an hour's worth) that makes
/// both whole (`0.5/s` is `q=1;w=2`); else `w` rounded up and `q` rounded
/// down, never more than the policy allows. `None` when unlimited.
pub(crate) fn quota_window(policy: &Policy) -> Option<(u64, u64)> {
    let (amount, period) = policy.quota()?;
    let period = period.as_secs_f64();
    let whole = |x: f64| (x - x.round()).abs() <= 1e-9 * x.max(1.0);
    for k in 1..=3600u32 {
        let (q, w) = (amount * f64::from(k), period * f64::from(k));
        if whole(q) && whole(w) && w.round() >= 1.0 {
            return Some((q.round() as u64, w.round() as u64));
        }
    }
    let w = period.ceil().max(1.0);
    Some(((amount * w / period).floor() as u64, w as u64))
}

/// The limits that announce a quota, as `RateLimit-Policy` numbers them:
/// the first is named after the tier, the others `tier-2`, `tier-3`, …
fn quotas(limits: &[Policy]) -> impl Iterator<Item = (&Policy, u64, u64)> {
    limits
        .iter()
        .filter_map(|p| quota_window(p).map(|(q, w)| (p, q, w)))
}

/// The name of the `n`th (from 0) item of `RateLimit-Policy`.
fn item_name(out: &mut String, tier: &TierInfo, n: usize) {
    if n == 0 {
        out.push_str(&tier.quoted);
    } else {
        let open = &tier.quoted[..tier.quoted.len() - 1];
        let _ = write!(out, "{open}-{}\"", n + 1);
    }
}

/// `RateLimit-Policy`: one item per limit (see [`quotas`]).
pub(crate) fn policy_field(tier: &TierInfo, limits: &[Policy]) -> Option<HeaderValue> {
    let mut out = String::new();
    let mut n = 0;
    for (_, q, w) in quotas(limits) {
        if n > 0 {
            out.push_str(", ");
        }
        item_name(&mut out, tier, n);
        let _ = write!(out, ";q={};w={}", sf_integer(q), sf_integer(w));
        n += 1;
    }
    (n > 0).then(|| HeaderValue::try_from(out).ok()).flatten()
}

/// Which item of `RateLimit-Policy` the `RateLimit` item reports: the limit
/// with the fewest tokens left. A key's limits all take each of its
/// requests from full, so one whose burst and rate are both no larger than
/// every other's is always the lowest. When limits cross (a small fast one
/// beside a large slow one), the lowest depends on the key's history, which
/// the permit does not tell: a refusal whose wait only one limit could
/// need names that one; else the smallest burst is named, which is the
/// lowest while the key has not sent more than it (its `r` is then that of
/// the lowest limit, never more than the named one has left).
fn reported(limits: &[Policy], wait: Option<Duration>) -> usize {
    let quotas: Vec<&Policy> = quotas(limits).map(|(p, _, _)| p).collect();
    let below = |a: &Policy, b: &Policy| {
        a.capacity() <= b.capacity() && a.tokens_per_second() <= b.tokens_per_second()
    };
    if let Some(i) = quotas
        .iter()
        .position(|a| quotas.iter().all(|b| below(a, b)))
    {
        return i;
    }
    if let Some(wait) = wait {
        // A limit makes a request wait at most a token's time.
        let could = |p: &&Policy| wait.as_secs_f64() <= (1.0 + 1e-9) / p.tokens_per_second();
        let mut which = quotas.iter().enumerate().filter(|(_, p)| could(p));
        if let (Some((i, _)), None) = (which.next(), which.next()) {
            return i;
        }
    }
    quotas
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.capacity().total_cmp(&b.capacity()))
        .map_or(0, |(i, _)| i)
}

fn ratelimit_field(
    tier: &TierInfo,
    item: usize,
    remaining: u64,
    reset: u64,
) -> Option<HeaderValue> {
    let mut out = String::with_capacity(tier.quoted.len() + 24);
    item_name(&mut out, tier, item);
    let _ = write!(out, ";r={};t={}", sf_integer(remaining), sf_integer(reset));
    HeaderValue::try_from(out).ok()
}

/// `r` and `t` after an admission: the whole requests left in the tightest
/// limit, and the seconds until it is full again (when some are left) or
/// until the next request may go (when none are). With several limits, `t`
/// is the longest such time any of them could need.
fn remaining_and_reset(available: f64, limits: &[Policy]) -> Option<(u64, u64)> {
    if !available.is_finite() {
        return None;
    }
    let available = available.max(0.0);
    let remaining = available.floor();
    let mut reset = 0.0f64;
    for p in limits.iter().filter(|p| !p.is_unlimited()) {
        let target = if remaining >= 1.0 { p.capacity() } else { 1.0 };
        reset = reset.max((target - available).max(0.0) / p.tokens_per_second());
    }
    Some((remaining as u64, ceil_f64(reset)))
}

/// Adds the success headers to an admitted request's response.
pub(crate) fn on_success<B>(
    response: &mut Response<B>,
    tier: &TierInfo,
    permit: &Permit,
    with_policy: bool,
) {
    let limits = permit.limits();
    let Some((r, t)) = remaining_and_reset(permit.available(), &limits) else {
        return; // an unlimited tier announces nothing
    };
    let headers = response.headers_mut();
    if let Some(v) = ratelimit_field(tier, reported(&limits, None), r, t) {
        headers.insert(RATELIMIT, v);
    }
    if with_policy {
        if let Some(v) = policy_field(tier, &limits) {
            headers.insert(RATELIMIT_POLICY, v);
        }
    }
}

/// 429 for a key over its tier's limit, with the exact wait rounded up.
pub(crate) fn too_many<B: From<String>>(tier: &TierInfo, retry_after: Duration) -> Response<B> {
    let secs = sf_integer(ceil_secs(retry_after));
    let limits = tier.handle.limits();
    let shown: Vec<String> = limits.iter().map(Policy::to_string).collect();
    let detail = format!(
        "the `{}` tier's limit ({}) is used up for this key; retry after {secs} s",
        tier.name,
        shown.join(" and ")
    );
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        QUOTA_EXCEEDED,
        "Request cannot be satisfied as assigned quota has been exceeded",
        &detail,
        Some(&tier.name),
    );
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    let item = reported(&limits, Some(retry_after));
    if let Some(v) = ratelimit_field(tier, item, 0, secs) {
        headers.insert(RATELIMIT, v);
    }
    if let Some(v) = policy_field(tier, &limits) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    response
}

/// 429 for a key with all its in-flight slots taken: no exact time to
/// give, so a second.
pub(crate) fn in_flight_full<B: From<String>>(tier: &TierInfo, max: usize) -> Response<B> {
    let detail = format!(
        "the `{}` tier allows {max} requests in flight per key, and this key has them all; \
         retry once one is answered",
        tier.name
    );
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        QUOTA_EXCEEDED,
        "Request cannot be satisfied as assigned quota has been exceeded",
        &detail,
        Some(&tier.name),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A refusal with a plain status (`about:blank`): a request without a key,
/// or the guard's own configuration failing.
pub(crate) fn plain<B: From<String>>(status: StatusCode, detail: &str) -> Response<B> {
    let title = status.canonical_reason().unwrap_or("Error");
    problem(status, "about:blank", title, detail, None)
}

/// An `application/problem+json` response (RFC 9457).
fn problem<B: From<String>>(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: &str,
    violated: Option<&str>,
) -> Response<B> {
    let mut body = String::with_capacity(160 + detail.len());
    body.push_str("{\"type\":");
    json_string(&mut body, kind);
    body.push_str(",\"title\":");
    json_string(&mut body, title);
    let _ = write!(body, ",\"status\":{},\"detail\":", status.as_u16());
    json_string(&mut body, detail);
    if let Some(policy) = violated {
        body.push_str(",\"violated-policies\":[");
        json_string(&mut body, policy);
        body.push(']');
    }
    body.push('}');
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    response
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The answer to a refused admission.
pub(crate) fn refusal<B: From<String>>(tier: &TierInfo, e: Error) -> Response<B> {
    if let Some(after) = e.retry_after() {
        return too_many(tier, after);
    }
    match e.kind() {
        ErrorKind::InFlightFull => in_flight_full(tier, e.in_flight_cap().unwrap_or(0)),
        ErrorKind::Store => {
            // A tier kept in Redis that fails closed while Redis is down.
            let error = e.detail();
            tracing::warn!(tier = &*tier.name, %error, "the rate limiter's store failed");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the rate limiter's shared store is unavailable; retry shortly",
            )
        }
        _ => {
            tracing::error!(tier = &*tier.name, error = %e, "the rate limiter refused a request");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the rate limiter is misconfigured; see the server's log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn quotas_in_whole_seconds() {
        assert_eq!(quota_window(&p("5/s")), Some((5, 1)));
        assert_eq!(quota_window(&p("5/min burst 5")), Some((5, 60)));
        assert_eq!(quota_window(&p("0.5/s")), Some((1, 2)));
        assert_eq!(quota_window(&p("5000/h")), Some((5000, 3600)));
        let window = Policy::window(60, Duration::from_secs(60)).unwrap();
        assert_eq!(quota_window(&window), Some((60, 60)));
        assert_eq!(quota_window(&Policy::unlimited()), None);
    }

    #[test]
    fn remaining_and_reset_round_up() {
        let limits = [p("5/min burst 5")];
        // 4 left: full again in 12 s; none left: the next in 12 s less what refilled.
        assert_eq!(remaining_and_reset(4.0, &limits), Some((4, 12)));
        assert_eq!(remaining_and_reset(0.5, &limits), Some((0, 6)));
        assert_eq!(remaining_and_reset(5.0, &limits), Some((5, 0)));
        assert_eq!(remaining_and_reset(f64::INFINITY, &[]), None);
        assert_eq!(ceil_secs(Duration::from_millis(200)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(12)), 12);
    }

    #[test]
    fn integers_are_clamped_to_fifteen_digits() {
        assert_eq!(sf_integer(10u64.pow(16)), SF_INTEGER_MAX);
        assert_eq!(sf_integer(u64::MAX), SF_INTEGER_MAX);
        assert_eq!(sf_integer(SF_INTEGER_MAX), SF_INTEGER_MAX);
        assert_eq!(sf_integer(7), 7);
        // A negative or NaN float was never a negative integer.
        assert_eq!(ceil_f64(-3.0), 0);
        assert_eq!(ceil_f64(f64::NAN), 0);
    }

    #[test]
    fn the_reported_limit_is_the_lowest_one() {
        let (fast, slow) = (p("10/s burst 10"), p("1000/h burst 1000"));
        let (small, large) = (p("1/min burst 1"), p("100/s burst 100"));
        // Below the other in burst and rate: always the lowest.
        assert_eq!(reported(&[large, small], None), 1);
        assert_eq!(reported(&[small, large], None), 0);
        // Crossing: the smallest burst, unless a refusal's wait rules it out.
        assert_eq!(reported(&[slow, fast], None), 1);
        let long = Some(Duration::from_secs(2));
        assert_eq!(reported(&[slow, fast], long), 0);
        let short = Some(Duration::from_millis(50));
        assert_eq!(reported(&[slow, fast], short), 1);
        // Unlimited limits are not items.
        assert_eq!(reported(&[Policy::unlimited(), slow, small], None), 1);
    }

    #[test]
    fn json_is_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }
}
