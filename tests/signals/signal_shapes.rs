//! Real rate-limit header shapes, each read to an exact wait, remaining
//! count and quota at a fixed `now`; dialects switched off; and a property
//! test that no bytes in any known header make the reader panic, wait past
//! the cap, or announce a quota that cannot pace.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;
use tollgate::signal::{Dialect, Dialects, ServerQuota};
use tollgate::{Signal, SignalConfig};

/// 2023-11-14T22:13:20Z, a Tuesday.
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn read(status: u16, lines: &[(&str, &str)], config: &SignalConfig) -> Signal {
    let mut map = HeaderMap::new();
    for (k, v) in lines {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Signal::parse(StatusCode::from_u16(status).unwrap(), &map, now(), config)
}

struct Row {
    what: &'static str,
    status: u16,
    lines: &'static [(&'static str, &'static str)],
    retry_after: Option<Duration>,
    remaining: Option<f64>,
    /// The tightest quota, `(quota, window seconds)`.
    quota: Option<(f64, u64)>,
    /// Every quota, in order.
    quotas: &'static [(f64, u64)],
    limited: bool,
}

const fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

const fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// The default cap (10 minutes) and default wait (1 s).
const CAP: Option<Duration> = secs(600);
const DEFAULT: Option<Duration> = secs(1);

macro_rules! row {
    ($what:expr, $status:expr, [$(($k:expr, $v:expr)),* $(,)?],
     retry $retry:expr, remaining $remaining:expr, quota $quota:expr,
     quotas [$($q:expr),* $(,)?], limited $limited:expr) => {
        Row {
            what: $what,
            status: $status,
            lines: &[$(($k, $v)),*],
            retry_after: $retry,
            remaining: $remaining,
            quota: $quota,
            quotas: &[$($q),*],
            limited: $limited,
        }
    };
}

const ROWS: &[Row] = &[
    // Retry-After (RFC 9110), and the forms met in practice.
    row!("delta-seconds", 429, [("retry-after", "120")],
        retry secs(120), remaining None, quota None, quotas [], limited true),
    row!("MusicBrainz 503", 503, [("Retry-After", "3")],
        retry secs(3), remaining None, quota None, quotas [], limited true),
    row!("IMF-fixdate", 429, [("retry-after", "Tue, 14 Nov 2023 22:13:50 GMT")],
        retry secs(30), remaining None, quota None, quotas [], limited true),
    row!("RFC 850 date", 429, [("retry-after", "Tuesday, 14-Nov-23 22:13:50 GMT")],
        retry secs(30), remaining None, quota None, quotas [], limited true),
    row!("date in the past", 429, [("retry-after", "Fri, 31 Dec 1999 23:59:59 GMT")],
        retry secs(0), remaining None, quota None, quotas [], limited true),
    row!("fractional seconds", 429, [("retry-after", "1.5")],
        retry ms(1500), remaining None, quota None, quotas [], limited true),
    row!("UNIX timestamp", 429, [("retry-after", "1700000045")],
        retry secs(45), remaining None, quota None, quotas [], limited true),
    row!("absurd wait, capped", 429, [("retry-after", "86400000")],
        retry CAP, remaining None, quota None, quotas [], limited true),
    row!("negative: default wait", 429, [("retry-after", "-1")],
        retry DEFAULT, remaining None, quota None, quotas [], limited true),
    row!("repeated, agreeing", 429, [("retry-after", "5"), ("retry-after", "5")],
        retry secs(5), remaining None, quota None, quotas [], limited true),
    row!("repeated, disagreeing: ignored", 429, [("retry-after", "5"), ("retry-after", "7")],
        retry DEFAULT, remaining None, quota None, quotas [], limited true),
    // IETF draft -11.
    row!("-11 remaining", 200, [("ratelimit", "\"default\";r=50;t=30")],
        retry None, remaining Some(50.0), quota None, quotas [], limited false),
    row!("-11 exhausted defers t", 200, [("ratelimit", "\"default\";r=0;t=30")],
        retry secs(30), remaining Some(0.0), quota None, quotas [], limited false),
    row!("-11 two policies", 200,
        [("ratelimit-policy", "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400")],
        retry None, remaining None, quota Some((1000.0, 86400)),
        quotas [(100.0, 60), (1000.0, 86400)], limited false),
    row!("-11 policies over two lines", 200,
        [("ratelimit-policy", "\"burst\";q=100;w=60"), ("RateLimit-Policy", "\"daily\";q=1000;w=86400")],
        retry None, remaining None, quota Some((1000.0, 86400)),
        quotas [(100.0, 60), (1000.0, 86400)], limited false),
    row!("-11 RateLimit over two lines", 200,
        [("ratelimit", "\"a\";r=5;t=1"), ("ratelimit", "\"b\";r=0;t=60")],
        retry secs(60), remaining Some(0.0), quota None, quotas [], limited false),
    row!("-11 byte quota does not pace", 200,
        [("ratelimit-policy", "\"bytes\";q=10000;w=1;qu=\"content-bytes\", \"req\";q=10;w=1")],
        retry None, remaining None, quota Some((10.0, 1)), quotas [(10.0, 1)], limited false),
    row!("-11 concurrency quota does not pace", 200,
        [("ratelimit-policy", "\"conc\";q=5;w=1;qu=\"concurrent-requests\"")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("-11 exhausted bytes do not defer", 200,
        [("ratelimit-policy", "\"bytes\";q=1000;w=60;qu=\"content-bytes\""),
         ("ratelimit", "\"bytes\";r=0;t=30")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("-11 pk and unknown parameters ignored", 200,
        [("ratelimit-policy", "\"p\";q=100;w=60;pk=:dXNlcjE=:;colour=blue")],
        retry None, remaining None, quota Some((100.0, 60)), quotas [(100.0, 60)], limited false),
    row!("-11 explicit requests unit", 200,
        [("ratelimit-policy", "\"p\";q=30;w=60;qu=\"requests\"")],
        retry None, remaining None, quota Some((30.0, 60)), quotas [(30.0, 60)], limited false),
    row!("-11 policy without q: whole field ignored", 200,
        [("ratelimit-policy", "\"burst\";q=100;w=60, \"daily\";w=86400")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("-11 negative r: whole field ignored", 200,
        [("ratelimit", "\"a\";r=5;t=1, \"b\";r=-1;t=30")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("-11 zero quota never paces", 200, [("ratelimit-policy", "\"p\";q=0;w=60")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("-11 Retry-After wins", 429,
        [("ratelimit", "\"default\";r=0;t=30"), ("retry-after", "5")],
        retry secs(5), remaining Some(0.0), quota None, quotas [], limited true),
    // Drafts -08 (tokens) and -07 (a dictionary).
    row!("-08 token policy", 200, [("ratelimit-policy", "burst;q=100;w=60")],
        retry None, remaining None, quota Some((100.0, 60)), quotas [(100.0, 60)], limited false),
    row!("-08 token RateLimit", 200, [("ratelimit", "default;r=0;t=10")],
        retry secs(10), remaining Some(0.0), quota None, quotas [], limited false),
    row!("-07 dictionary", 200, [("ratelimit", "limit=100, remaining=50, reset=30")],
        retry None, remaining Some(50.0), quota None, quotas [], limited false),
    row!("-07 dictionary exhausted", 200, [("ratelimit", "limit=100, remaining=0, reset=30")],
        retry secs(30), remaining Some(0.0), quota None, quotas [], limited false),
    row!("-07 integer policies", 200, [("ratelimit-policy", "100;w=60;burst=1000, 1000;w=3600")],
        retry None, remaining None, quota Some((1000.0, 3600)),
        quotas [(100.0, 60), (1000.0, 3600)], limited false),
    // Drafts up to -06.
    row!("-06 triplet", 200,
        [("ratelimit-limit", "10"), ("ratelimit-remaining", "1"), ("ratelimit-reset", "7")],
        retry None, remaining Some(1.0), quota None, quotas [], limited false),
    row!("-03 limit with windows", 429,
        [("ratelimit-limit", "10, 10;w=1, 50;w=60"), ("ratelimit-remaining", "0"),
         ("ratelimit-reset", "1")],
        retry secs(1), remaining Some(0.0), quota Some((50.0, 60)),
        quotas [(10.0, 1), (50.0, 60)], limited true),
    // Envoy.
    row!("Envoy quota policies", 200,
        [("x-ratelimit-limit", "10, 10;w=1;name=\"per-ip\", 1000;w=3600"),
         ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")],
        retry secs(1), remaining Some(0.0), quota Some((1000.0, 3600)),
        quotas [(10.0, 1), (1000.0, 3600)], limited false),
    // GitHub.
    row!("GitHub core", 200,
        [("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4987"),
         ("x-ratelimit-used", "13"), ("x-ratelimit-reset", "1700000300"),
         ("x-ratelimit-resource", "core")],
        retry None, remaining Some(4987.0), quota None, quotas [], limited false),
    row!("GitHub primary limit as 403", 403,
        [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "0"),
         ("x-ratelimit-reset", "1700000042"), ("x-ratelimit-resource", "core")],
        retry secs(42), remaining Some(0.0), quota None, quotas [], limited true),
    row!("GitHub secondary limit as 403", 403,
        [("retry-after", "60"), ("x-ratelimit-remaining", "4000")],
        retry secs(60), remaining Some(4000.0), quota None, quotas [], limited true),
    row!("plain 403 is no signal", 403, [("content-type", "application/json")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("403 with quota left is no signal", 403, [("x-ratelimit-remaining", "12")],
        retry None, remaining Some(12.0), quota None, quotas [], limited false),
    row!("GitHub search as 429", 429,
        [("x-ratelimit-limit", "30"), ("x-ratelimit-remaining", "0"),
         ("x-ratelimit-reset", "1700000015"), ("x-ratelimit-resource", "search")],
        retry secs(15), remaining Some(0.0), quota None, quotas [], limited true),
    // Reddit: decimals, resets as deltas.
    row!("Reddit", 200,
        [("X-Ratelimit-Used", "2"), ("X-Ratelimit-Remaining", "598.0"),
         ("X-Ratelimit-Reset", "371")],
        retry None, remaining Some(598.0), quota None, quotas [], limited false),
    row!("Reddit exhausted", 200,
        [("X-Ratelimit-Remaining", "0.0"), ("X-Ratelimit-Reset", "42")],
        retry secs(42), remaining Some(0.0), quota None, quotas [], limited false),
    row!("Reddit under one request left", 200,
        [("X-Ratelimit-Remaining", "0.4"), ("X-Ratelimit-Reset", "12")],
        retry secs(12), remaining Some(0.4), quota None, quotas [], limited false),
    // X (Twitter), with its extra hyphen.
    row!("X, far reset capped", 429,
        [("x-rate-limit-limit", "900"), ("x-rate-limit-remaining", "0"),
         ("x-rate-limit-reset", "1700000900")],
        retry CAP, remaining Some(0.0), quota None, quotas [], limited true),
    // Discord.
    row!("Discord Reset-After wins over the epoch", 200,
        [("x-ratelimit-limit", "5"), ("x-ratelimit-remaining", "0"),
         ("x-ratelimit-reset", "1700000009.123"), ("x-ratelimit-reset-after", "1.123"),
         ("x-ratelimit-bucket", "abcd1234")],
        retry ms(1123), remaining Some(0.0), quota None, quotas [], limited false),
    row!("Discord 429 with Retry-After", 429,
        [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset-after", "1.123"),
         ("x-ratelimit-global", "true"), ("x-ratelimit-scope", "user"), ("retry-after", "2")],
        retry secs(2), remaining Some(0.0), quota None, quotas [], limited true),
    row!("decimal epoch reset", 200,
        [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000002.5")],
        retry ms(2500), remaining Some(0.0), quota None, quotas [], limited false),
    // OpenAI: Go durations; tokens do not pace requests.
    row!("OpenAI", 200,
        [("x-ratelimit-limit-requests", "60"), ("x-ratelimit-remaining-requests", "59"),
         ("x-ratelimit-reset-requests", "1s"), ("x-ratelimit-limit-tokens", "150000"),
         ("x-ratelimit-remaining-tokens", "149984"), ("x-ratelimit-reset-tokens", "6m0s")],
        retry None, remaining Some(59.0), quota None, quotas [], limited false),
    row!("OpenAI minutes", 429,
        [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "6m0s")],
        retry secs(360), remaining Some(0.0), quota None, quotas [], limited true),
    row!("OpenAI milliseconds", 200,
        [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "12ms")],
        retry ms(12), remaining Some(0.0), quota None, quotas [], limited false),
    row!("OpenAI fractional seconds", 200,
        [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "1.5s")],
        retry ms(1500), remaining Some(0.0), quota None, quotas [], limited false),
    row!("OpenAI tokens spent, requests left", 200,
        [("x-ratelimit-remaining-requests", "10"), ("x-ratelimit-remaining-tokens", "0"),
         ("x-ratelimit-reset-tokens", "20s")],
        retry None, remaining Some(10.0), quota None, quotas [], limited false),
    row!("Azure -1 is unknown", 200,
        [("x-ratelimit-remaining-requests", "-1"), ("x-ratelimit-remaining-tokens", "-1")],
        retry None, remaining None, quota None, quotas [], limited false),
    // Anthropic: RFC 3339 resets.
    row!("Anthropic", 200,
        [("anthropic-ratelimit-requests-limit", "50"),
         ("anthropic-ratelimit-requests-remaining", "49"),
         ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:50Z"),
         ("anthropic-ratelimit-tokens-remaining", "0")],
        retry None, remaining Some(49.0), quota None, quotas [], limited false),
    row!("Anthropic exhausted", 429,
        [("anthropic-ratelimit-requests-remaining", "0"),
         ("anthropic-ratelimit-requests-reset", "2023-11-14T22:14:20Z")],
        retry secs(60), remaining Some(0.0), quota None, quotas [], limited true),
    row!("Anthropic fraction", 200,
        [("anthropic-ratelimit-requests-remaining", "0"),
         ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:21.250Z")],
        retry ms(1250), remaining Some(0.0), quota None, quotas [], limited false),
    row!("Anthropic offset", 200,
        [("anthropic-ratelimit-requests-remaining", "0"),
         ("anthropic-ratelimit-requests-reset", "2023-11-15T00:13:50+02:00")],
        retry secs(30), remaining Some(0.0), quota None, quotas [], limited false),
    // Discogs.
    row!("Discogs", 200,
        [("X-Discogs-Ratelimit", "60"), ("X-Discogs-Ratelimit-Used", "12"),
         ("X-Discogs-Ratelimit-Remaining", "48")],
        retry None, remaining Some(48.0), quota Some((60.0, 60)), quotas [(60.0, 60)],
        limited false),
    // Spent, with no reset: a full moving minute brings the quota back,
    // where the 1 s default would send again 59 s early.
    row!("Discogs spent", 429,
        [("X-Discogs-Ratelimit", "25"), ("X-Discogs-Ratelimit-Used", "25")],
        retry secs(60), remaining Some(0.0), quota Some((25.0, 60)), quotas [(25.0, 60)],
        limited true),
    // Several dialects at once: the tightest wins.
    row!("GitHub and IETF together", 200,
        [("x-ratelimit-remaining", "10"), ("x-ratelimit-reset", "1700000100"),
         ("ratelimit", "\"d\";r=0;t=5"), ("ratelimit-policy", "\"d\";q=100;w=60")],
        retry secs(5), remaining Some(0.0), quota Some((100.0, 60)), quotas [(100.0, 60)],
        limited false),
    row!("the same quota twice is kept once", 200,
        [("ratelimit-policy", "\"d\";q=60;w=60"), ("x-discogs-ratelimit", "60")],
        retry None, remaining None, quota Some((60.0, 60)), quotas [(60.0, 60)],
        limited false),
    // ---- Generic rules and declared-by-docs shapes (read November 2026). ----
    // Linear, linear.app/developers/rate-limiting: a `requests-` infix and
    // a reset in UTC epoch milliseconds.
    row!("Linear requests, epoch ms", 200,
        [("x-ratelimit-requests-limit", "1500"), ("x-ratelimit-requests-remaining", "0"),
         ("x-ratelimit-requests-reset", "1700000030000")],
        retry secs(30), remaining Some(0.0), quota None, quotas [], limited false),
    // A bare number from 10¹² is epoch milliseconds under any family.
    row!("X-RateLimit reset in epoch ms", 429,
        [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000012500")],
        retry ms(12_500), remaining Some(0.0), quota None, quotas [], limited true),
    // Mastodon, docs.joinmastodon.org/api/rate-limits: 300 per 5 minutes,
    // `X-RateLimit-Reset` an ISO 8601 time with fractional seconds.
    row!("Mastodon ISO 8601 reset", 429,
        [("x-ratelimit-limit", "300"), ("x-ratelimit-remaining", "0"),
         ("x-ratelimit-reset", "2023-11-14T22:15:00.500000Z")],
        retry ms(100_500), remaining Some(0.0), quota None, quotas [], limited true),
    // ISO 8601 §4.2.2.3 reduced precision: minutes only.
    row!("ISO 8601 minutes only", 200,
        [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2023-11-14T22:15Z")],
        retry secs(100), remaining Some(0.0), quota None, quotas [], limited false),
    row!("ISO 8601 with an offset", 200,
        [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2023-11-14T23:15:00+01:00")],
        retry secs(100), remaining Some(0.0), quota None, quotas [], limited false),
    // Kong rate-limiting plugin, docs.konghq.com/hub/kong-inc/rate-limiting:
    // `X-RateLimit-{Limit,Remaining}-<window>` per configured window, and
    // `RateLimit-*` for the window closest to its limit.
    row!("Kong windows with RateLimit-Reset", 429,
        [("x-ratelimit-limit-second", "5"), ("x-ratelimit-remaining-second", "0"),
         ("x-ratelimit-limit-minute", "100"), ("x-ratelimit-remaining-minute", "40"),
         ("ratelimit-limit", "5"), ("ratelimit-remaining", "0"), ("ratelimit-reset", "1")],
        retry secs(1), remaining Some(0.0), quota Some((100.0, 60)),
        quotas [(5.0, 1), (100.0, 60)], limited true),
    row!("Kong minute spent, no reset: its window", 429,
        [("x-ratelimit-limit-minute", "10"), ("x-ratelimit-remaining-minute", "0")],
        retry secs(60), remaining Some(0.0), quota Some((10.0, 60)), quotas [(10.0, 60)],
        limited true),
    row!("Kong hour and day: the tightest rate", 200,
        [("x-ratelimit-limit-hour", "1000"), ("x-ratelimit-remaining-hour", "999"),
         ("x-ratelimit-limit-day", "5000"), ("x-ratelimit-remaining-day", "10")],
        retry None, remaining Some(10.0), quota Some((5000.0, 86_400)),
        quotas [(1000.0, 3600), (5000.0, 86_400)], limited false),
    // Etsy Open API v3, developer.etsy.com/documentation/essentials/rate-limits.
    row!("Etsy per second and per day", 200,
        [("x-limit-per-second", "150"), ("x-remaining-this-second", "149"),
         ("x-limit-per-day", "100000"), ("x-remaining-today", "99998")],
        retry None, remaining Some(149.0), quota Some((100_000.0, 86_400)),
        quotas [(150.0, 1), (100_000.0, 86_400)], limited false),
    row!("Etsy second spent", 200,
        [("x-limit-per-second", "10"), ("x-remaining-this-second", "0"),
         ("x-limit-per-day", "10000"), ("x-remaining-today", "9998")],
        retry secs(1), remaining Some(0.0), quota Some((10_000.0, 86_400)),
        quotas [(10.0, 1), (10_000.0, 86_400)], limited false),
    // HubSpot, developers.hubspot.com/docs/api/usage-details: a window in
    // milliseconds beside per-day and per-second categories.
    row!("HubSpot interval in ms, spent", 429,
        [("x-hubspot-ratelimit-max", "100"), ("x-hubspot-ratelimit-remaining", "0"),
         ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
         ("x-hubspot-ratelimit-daily", "250000"),
         ("x-hubspot-ratelimit-daily-remaining", "249900"),
         ("x-hubspot-ratelimit-secondly", "10"),
         ("x-hubspot-ratelimit-secondly-remaining", "9")],
        retry secs(10), remaining Some(0.0), quota Some((250_000.0, 86_400)),
        quotas [(100.0, 10), (250_000.0, 86_400), (10.0, 1)], limited true),
    // An interval no duration holds is ignored, not a panic (found by the
    // property test below).
    row!("HubSpot absurd interval ignored", 200,
        [("x-hubspot-ratelimit-max", "100"),
         ("x-hubspot-ratelimit-interval-milliseconds", "9999999999999999999999999999999999")],
        retry None, remaining None, quota None, quotas [], limited false),
    // HubSpot's changelog of 2018-11-06: the daily and per-second pairs.
    row!("HubSpot second spent", 200,
        [("x-hubspot-ratelimit-daily", "250000"),
         ("x-hubspot-ratelimit-daily-remaining", "249000"),
         ("x-hubspot-ratelimit-secondly", "10"),
         ("x-hubspot-ratelimit-secondly-remaining", "0")],
        retry secs(1), remaining Some(0.0), quota Some((250_000.0, 86_400)),
        quotas [(250_000.0, 86_400), (10.0, 1)], limited false),
    // Sentry, docs.sentry.io/api/ratelimits: a vendor infix, reset in epoch
    // seconds; the concurrency pair does not pace requests.
    row!("Sentry", 429,
        [("x-sentry-rate-limit-limit", "40"), ("x-sentry-rate-limit-remaining", "0"),
         ("x-sentry-rate-limit-reset", "1700000001"),
         ("x-sentry-rate-limit-concurrentlimit", "25"),
         ("x-sentry-rate-limit-concurrentremaining", "24")],
        retry secs(1), remaining Some(0.0), quota None, quotas [], limited true),
    // Fastly API, developer.fastly.com/reference/api (rate limiting).
    row!("Fastly", 200,
        [("fastly-ratelimit-remaining", "0"), ("fastly-ratelimit-reset", "1700000030")],
        retry secs(30), remaining Some(0.0), quota None, quotas [], limited false),
    // Okta, developer.okta.com/docs/reference/rl-best-practices.
    row!("Okta", 429,
        [("x-rate-limit-limit", "1200"), ("x-rate-limit-remaining", "0"),
         ("x-rate-limit-reset", "1700000060")],
        retry secs(60), remaining Some(0.0), quota None, quotas [], limited true),
    // Zendesk, developer.zendesk.com/api-reference/introduction/rate-limits:
    // the limit under `X-Rate-Limit` alone.
    row!("Zendesk", 200,
        [("x-rate-limit", "700"), ("x-rate-limit-remaining", "699")],
        retry None, remaining Some(699.0), quota None, quotas [], limited false),
    // Docker Hub, docs.docker.com/docker-hub/usage/pulls: a window on both.
    row!("Docker Hub", 200,
        [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "76;w=21600"),
         ("docker-ratelimit-source", "192.0.2.1")],
        retry None, remaining Some(76.0), quota Some((100.0, 21_600)),
        quotas [(100.0, 21_600)], limited false),
    row!("Docker Hub spent: its window, capped", 429,
        [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "0;w=21600")],
        retry CAP, remaining Some(0.0), quota Some((100.0, 21_600)),
        quotas [(100.0, 21_600)], limited true),
    // GitLab.com, docs.gitlab.com (GitLab.com-specific rate limits).
    row!("GitLab", 429,
        [("ratelimit-name", "throttle_authenticated_api"), ("ratelimit-limit", "60"),
         ("ratelimit-observed", "67"), ("ratelimit-remaining", "0"),
         ("ratelimit-reset", "1700000060"),
         ("ratelimit-resettime", "Tue, 14 Nov 2023 22:14:20 GMT"), ("retry-after", "60")],
        retry secs(60), remaining Some(0.0), quota None, quotas [], limited true),
    // Twitch Helix, dev.twitch.tv/docs/api/guide (rate limits): epoch reset.
    row!("Twitch", 200,
        [("ratelimit-limit", "800"), ("ratelimit-remaining", "0"),
         ("ratelimit-reset", "1700000005")],
        retry secs(5), remaining Some(0.0), quota None, quotas [], limited false),
    // Heroku Platform API, devcenter.heroku.com (platform API reference).
    row!("Heroku", 200, [("ratelimit-remaining", "4500")],
        retry None, remaining Some(4500.0), quota None, quotas [], limited false),
    // Slack Web API, api.slack.com/docs/rate-limits: 429 with Retry-After.
    row!("Slack", 429, [("retry-after", "30")],
        retry secs(30), remaining None, quota None, quotas [], limited true),
    // Auth0, auth0.com/docs (rate limit policy): epoch seconds.
    row!("Auth0", 429,
        [("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "0"),
         ("x-ratelimit-reset", "1700000002")],
        retry secs(2), remaining Some(0.0), quota None, quotas [], limited true),
    // Binance spot API, developers.binance.com (limits): 418 for an IP
    // banned after 429s, with Retry-After.
    row!("Binance 418 with Retry-After", 418, [("retry-after", "120")],
        retry secs(120), remaining None, quota None, quotas [], limited true),
    row!("bare 418 is no signal", 418, [("content-type", "text/plain")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("bare 400 is no signal", 400, [("content-type", "application/json")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("400 with an exhausted quota", 400,
        [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "20")],
        retry secs(20), remaining Some(0.0), quota None, quotas [], limited true),
    row!("400 with quota left is no signal", 400, [("x-ratelimit-remaining", "3")],
        retry None, remaining Some(3.0), quota None, quotas [], limited false),
    // A retry-after under another prefix, below the real one.
    row!("prefixed retry-after", 429, [("x-ratelimit-retry-after", "12")],
        retry secs(12), remaining None, quota None, quotas [], limited true),
    row!("prefixed retry-after on a 403", 403, [("x-foo-retry-after", "7")],
        retry secs(7), remaining None, quota None, quotas [], limited true),
    row!("the real Retry-After wins", 429,
        [("retry-after", "5"), ("x-ratelimit-retry-after", "12")],
        retry secs(5), remaining None, quota None, quotas [], limited true),
    // `window=` for `w=`.
    row!("window= in a policy", 200, [("ratelimit-policy", "\"p\";q=100;window=60")],
        retry None, remaining None, quota Some((100.0, 60)), quotas [(100.0, 60)],
        limited false),
    row!("window= in a legacy list", 200,
        [("x-ratelimit-limit", "10, 10;window=1"), ("x-ratelimit-remaining", "4")],
        retry None, remaining Some(4.0), quota Some((10.0, 1)), quotas [(10.0, 1)],
        limited false),
    // A per-category count beside an account-wide one: the tighter wins.
    row!("per-category beside account-wide", 200,
        [("x-ratelimit-remaining", "4000"), ("x-ratelimit-reset", "1700003600"),
         ("x-sentry-rate-limit-remaining", "0"), ("x-sentry-rate-limit-reset", "1700000008")],
        retry secs(8), remaining Some(0.0), quota None, quotas [], limited false),
    // Nothing to read.
    row!("plain 200", 200, [("content-type", "text/html")],
        retry None, remaining None, quota None, quotas [], limited false),
    row!("bare 503", 503, [],
        retry DEFAULT, remaining None, quota None, quotas [], limited true),
];

fn quota((q, w): (f64, u64)) -> ServerQuota {
    ServerQuota {
        quota: q,
        window: Duration::from_secs(w),
    }
}

#[test]
fn real_shapes() {
    assert!(ROWS.len() >= 82, "{}", ROWS.len());
    let config = SignalConfig::default();
    for row in ROWS {
        let got = read(row.status, row.lines, &config);
        let ctx = format!("{}: {} {:?} → {got:?}", row.what, row.status, row.lines);
        assert_eq!(got.retry_after, row.retry_after, "retry_after: {ctx}");
        assert_eq!(got.remaining, row.remaining, "remaining: {ctx}");
        assert_eq!(got.quota, row.quota.map(quota), "quota: {ctx}");
        let quotas: Vec<ServerQuota> = row.quotas.iter().copied().map(quota).collect();
        assert_eq!(got.quotas, quotas, "quotas: {ctx}");
        assert_eq!(got.limited, row.limited, "limited: {ctx}");
        let any_hint = got.remaining.is_some() || !got.quotas.is_empty();
        assert!(
            !any_hint || !got.dialects.is_empty(),
            "a hint names its dialect: {ctx}"
        );
    }
}

#[test]
fn limits_and_resets_are_read_too() {
    let config = SignalConfig::default();
    let got = read(
        200,
        &[
            ("ratelimit-policy", "\"default\";q=100;w=60"),
            ("ratelimit", "\"default\";r=50;t=30"),
        ],
        &config,
    );
    assert_eq!(got.limit, Some(100.0));
    assert_eq!(got.reset_after, secs(30));
    let got = read(
        200,
        &[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-reset", "1700000300"),
        ],
        &config,
    );
    assert_eq!((got.limit, got.reset_after), (Some(5000.0), secs(300)));
    assert_eq!(got.dialects, Dialects::NONE.with(Dialect::XRateLimit));
}

#[test]
fn a_dialect_switched_off_is_not_read() {
    let openai = [
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "6m0s"),
    ];
    let on = read(200, &openai, &SignalConfig::default());
    assert_eq!(on.retry_after, secs(360));
    assert_eq!(on.dialects, Dialects::NONE.with(Dialect::OpenAi));
    let off = read(
        200,
        &openai,
        &SignalConfig::default().without(Dialect::OpenAi),
    );
    assert_eq!(off, Signal::default());

    // Retry-After off: a 429 still waits, by the default.
    let config = SignalConfig::default().without(Dialect::RetryAfter);
    let got = read(429, &[("retry-after", "120")], &config);
    assert_eq!((got.retry_after, got.limited), (DEFAULT, true));
    // ... and a GitHub secondary-limit 403 is no longer recognised.
    let got = read(403, &[("retry-after", "60")], &config);
    assert_eq!((got.retry_after, got.limited), (None, false));

    // Only the IETF fields.
    let ietf = SignalConfig::default().with_dialects(Dialect::Ietf.into());
    let got = read(
        200,
        &[
            ("ratelimit-policy", "\"d\";q=100;w=60"),
            ("x-discogs-ratelimit", "25"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "30"),
        ],
        &ietf,
    );
    assert_eq!(got.quotas, vec![quota((100.0, 60))]);
    assert_eq!((got.remaining, got.retry_after), (None, None));
}

#[test]
fn every_wait_obeys_a_smaller_cap() {
    let config = SignalConfig::default().with_max_wait(Duration::from_secs(5));
    for row in ROWS {
        let got = read(row.status, row.lines, &config);
        let want = row.retry_after.map(|d| d.min(Duration::from_secs(5)));
        assert_eq!(got.retry_after, want, "{}", row.what);
        assert!(got.reset_after.is_none_or(|d| d <= Duration::from_secs(5)));
    }
}

#[test]
fn an_unreadable_reset_is_flagged() {
    let config = SignalConfig::default();
    let flagged = |lines: &[(&str, &str)]| read(200, lines, &config).reset_unknown;
    assert!(flagged(&[("x-ratelimit-remaining", "0")]));
    assert!(flagged(&[
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "soon")
    ]));
    assert!(flagged(&[
        ("x-discogs-ratelimit", "25"),
        ("x-discogs-ratelimit-used", "25")
    ]));
    assert!(!flagged(&[
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "5")
    ]));
    assert!(!flagged(&[("x-ratelimit-remaining", "3")]));
    // A retry-after says how long; the reset is not needed.
    assert!(!flagged(&[
        ("x-ratelimit-remaining", "0"),
        ("retry-after", "5")
    ]));
    let got = read(200, &[("x-ratelimit-remaining", "0")], &config);
    assert_eq!(got.retry_after, Some(config.default_wait));
}

/// Every header name any dialect reads, and a few neighbours.
const NAMES: &[&str] = &[
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after",
    "x-ratelimit-used",
    "x-ratelimit-resource",
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "x-discogs-ratelimit",
    "x-discogs-ratelimit-used",
    "x-discogs-ratelimit-remaining",
    "x-ratelimit-requests-limit",
    "x-ratelimit-requests-remaining",
    "x-ratelimit-requests-reset",
    "x-ratelimit-retry-after",
    "x-foo-retry-after",
    "x-sentry-rate-limit-limit",
    "x-sentry-rate-limit-remaining",
    "x-sentry-rate-limit-reset",
    "x-hubspot-ratelimit-max",
    "x-hubspot-ratelimit-remaining",
    "x-hubspot-ratelimit-interval-milliseconds",
    "x-hubspot-ratelimit-daily",
    "x-hubspot-ratelimit-daily-remaining",
    "x-ratelimit-limit-minute",
    "x-ratelimit-remaining-minute",
    "x-ratelimit-limit-second",
    "x-limit-per-second",
    "x-remaining-this-second",
    "x-limit-per-day",
    "x-remaining-today",
    "x-rate-limit",
    "fastly-ratelimit-reset",
    "x-ratelimit-reset-after",
];

/// Values near the grammars, so the search reaches past the first byte.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        r#"("?[a-z]{1,6}"?(;(w|window|[a-z]{1,2})=-?[0-9]{1,20}(\.[0-9]{1,4})?)*, ?){1,3}"#
            .prop_map(String::into_bytes),
        "[0-9]{1,25}(\\.[0-9]{1,12})?".prop_map(String::into_bytes),
        "([0-9]{1,22}(\\.[0-9]{0,20})?(h|m|s|ms|us|ns|µs)){1,4}".prop_map(String::into_bytes),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,12})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3_000)
    ))]

    #[test]
    fn any_bytes_in_known_headers_stay_in_bounds(
        status in prop_oneof![
            Just(200u16), Just(400), Just(403), Just(418), Just(429), Just(503), 100u16..600
        ],
        lines in prop::collection::vec((0..NAMES.len(), value()), 0..8),
        max_wait_ms in 1u64..2_000_000,
        dialects in any::<u16>(),
    ) {
        let mut map = HeaderMap::new();
        for (i, bytes) in lines {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                map.append(NAMES[i], v);
            }
        }
        let on: Dialects = Dialect::ALL
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| dialects & (1 << i) != 0)
            .map(|(_, d)| d)
            .collect();
        let max_wait = Duration::from_millis(max_wait_ms);
        let config = SignalConfig::default()
            .with_max_wait(max_wait)
            .with_default_wait(max_wait.min(Duration::from_secs(1)))
            .with_dialects(on);
        prop_assert!(config.validate().is_ok());
        let status = StatusCode::from_u16(status).unwrap();
        let got = Signal::parse(status, &map, now(), &config);
        if let Some(w) = got.retry_after {
            prop_assert!(w <= max_wait, "{:?} past the cap {:?}", w, max_wait);
        }
        if let Some(r) = got.reset_after {
            prop_assert!(r <= max_wait);
        }
        for q in got.quotas.iter().chain(got.quota.iter()) {
            prop_assert!(q.quota.is_finite() && q.quota > 0.0, "{:?}", q);
            prop_assert!(!q.window.is_zero());
            prop_assert!(q.per_second().is_finite() && q.per_second() > 0.0, "{:?}", q);
        }
        prop_assert_eq!(got.quota.is_some(), !got.quotas.is_empty());
        for n in got.remaining.iter().chain(got.limit.iter()) {
            prop_assert!(n.is_finite() && *n >= 0.0);
        }
        prop_assert!(on.iter().count() >= got.dialects.iter().count());
        prop_assert!(got.dialects.iter().all(|d| on.contains(d)));
        // The pre-check never hides a signal.
        if got != Signal::default() {
            prop_assert!(tollgate::signal::may_signal(status, &map));
        }
    }
}

/// How a generated reset is written.
#[derive(Clone, Copy, Debug)]
enum Form {
    DeltaSecs,
    DeltaDecimal,
    EpochSecs,
    EpochMillis,
    Rfc3339,
    Rfc3339Fraction,
    MinutesOnly,
    GoDuration,
}

/// `(remaining, reset)` header names of families, with the forms each
/// reads: every numeric family reads every form but the Go duration.
const FAMILIES: &[(&str, &str, bool)] = &[
    ("x-ratelimit-remaining", "x-ratelimit-reset", true),
    ("x-rate-limit-remaining", "x-rate-limit-reset", true),
    ("ratelimit-remaining", "ratelimit-reset", true),
    (
        "x-ratelimit-requests-remaining",
        "x-ratelimit-requests-reset",
        true,
    ),
    (
        "x-sentry-rate-limit-remaining",
        "x-sentry-rate-limit-reset",
        true,
    ),
    ("x-acme-ratelimit-remaining", "x-acme-ratelimit-reset", true),
    ("fastly-ratelimit-remaining", "fastly-ratelimit-reset", true),
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        false,
    ),
    (
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        false,
    ),
];

/// `at` (seconds past NOW, exact to the millisecond) written in `form`, and
/// the instant it denotes, as a wait from NOW.
fn written(form: Form, at_ms: u64) -> (String, Duration) {
    let utc = |ms: u64| {
        let t = UNIX_EPOCH + Duration::from_millis(NOW * 1000 + ms);
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        (format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}"), s)
    };
    let ms = Duration::from_millis;
    match form {
        Form::DeltaSecs => (format!("{}", at_ms / 1000), ms(at_ms / 1000 * 1000)),
        Form::DeltaDecimal => (format!("{}.{:03}", at_ms / 1000, at_ms % 1000), ms(at_ms)),
        Form::EpochSecs => (format!("{}", NOW + at_ms / 1000), ms(at_ms / 1000 * 1000)),
        Form::EpochMillis => (format!("{}", NOW * 1000 + at_ms), ms(at_ms)),
        Form::Rfc3339 => {
            let (hm, s) = utc(at_ms);
            (format!("{hm}:{s:02}Z"), ms(at_ms / 1000 * 1000))
        }
        Form::Rfc3339Fraction => {
            let (hm, s) = utc(at_ms);
            (format!("{hm}:{s:02}.{:03}Z", at_ms % 1000), ms(at_ms))
        }
        Form::MinutesOnly => {
            // NOW is 20 s into its minute: whole minutes from there.
            let minute = (at_ms / 60_000) * 60_000 + 40_000;
            let (hm, _) = utc(minute);
            (format!("{hm}Z"), ms(minute))
        }
        Form::GoDuration => (format!("{}ms", at_ms), ms(at_ms)),
    }
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::DeltaSecs),
        Just(Form::DeltaDecimal),
        Just(Form::EpochSecs),
        Just(Form::EpochMillis),
        Just(Form::Rfc3339),
        Just(Form::Rfc3339Fraction),
        Just(Form::MinutesOnly),
        Just(Form::GoDuration),
    ]
}

proptest! {
    // About a quarter of the pairs of family and form cannot be read and are
    // skipped: allow for that at CI's 10,000 cases.
    #![proptest_config(ProptestConfig {
        max_global_rejects: 1_000_000,
        ..ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)
        )
    })]

    /// No reset a family can read makes the client send before it: with
    /// nothing remaining, the wait is the true reset (capped), whatever the
    /// form, and never shorter because a unit was misread.
    #[test]
    fn a_readable_reset_is_never_cut_short(
        family in 0..FAMILIES.len(),
        form in form(),
        at_ms in 0u64..3_000_000,
        max_wait_s in 1u64..4_000,
        status in prop_oneof![Just(200u16), Just(429), Just(403)],
    ) {
        let (remaining, reset, numeric) = FAMILIES[family];
        let anthropic = remaining.starts_with("anthropic");
        let openai = remaining.ends_with("-requests") && !anthropic;
        let readable = match form {
            Form::GoDuration => openai || numeric,
            Form::DeltaSecs | Form::DeltaDecimal => numeric || openai,
            Form::EpochSecs | Form::EpochMillis => numeric,
            Form::Rfc3339 | Form::Rfc3339Fraction | Form::MinutesOnly => numeric || anthropic,
        };
        prop_assume!(readable);
        // Go durations are OpenAI's; a numeric family reads `12ms` as nothing.
        prop_assume!(!matches!(form, Form::GoDuration) || openai);
        let (value, truth) = written(form, at_ms);
        let max_wait = Duration::from_secs(max_wait_s);
        let config = SignalConfig::default().with_max_wait(max_wait);
        let got = read(status, &[(remaining, "0"), (reset, &value)], &config);
        let want = truth.min(max_wait);
        let wait = got.retry_after.expect("an exhausted quota waits");
        prop_assert!(wait >= want, "{} {}: {:?} < {:?}", reset, value, wait, want);
        prop_assert!(wait <= max_wait);
        // Read exactly, not merely long enough.
        prop_assert!(wait - want < Duration::from_millis(1), "{} {}: {:?}", reset, value, wait);
        prop_assert!(!got.reset_unknown);
    }
}
