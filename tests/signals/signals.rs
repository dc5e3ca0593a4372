//! Server signals from real header examples, malformed ones included, and
//! a property test that no input makes the parser panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;
use tollgate::signal::ServerQuota;
use tollgate::{Signal, SignalConfig};

const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn parse(status: u16, headers: &[(&str, &str)]) -> Signal {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Signal::parse(
        StatusCode::from_u16(status).unwrap(),
        &map,
        now(),
        &SignalConfig::default(),
    )
}

fn s(secs: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(secs))
}

fn quota(q: f64, w: u64) -> Option<ServerQuota> {
    Some(ServerQuota {
        quota: q,
        window: Duration::from_secs(w),
    })
}

/// (status, headers, retry_after, remaining, limit, reset_after, quota, limited)
type Case = (
    u16,
    Vec<(&'static str, String)>,
    Option<Duration>,
    Option<f64>,
    Option<f64>,
    Option<Duration>,
    Option<ServerQuota>,
    bool,
);

#[test]
fn header_table() {
    let date = |secs: u64| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    let h = |k: &'static str, v: &str| (k, v.to_string());
    let ten_min = s(600.0);
    let cases: Vec<Case> = vec![
        // Retry-After, both forms, and what is wrong with it.
        (
            429,
            vec![h("retry-after", "120")],
            s(120.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            503,
            vec![h("retry-after", "3")],
            s(3.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![("retry-after", date(NOW + 30))],
            s(30.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "Fri, 31 Dec 1999 23:59:59 GMT")],
            s(0.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "0")],
            s(0.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "86400000")],
            ten_min,
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "99999999999999999999999999")],
            ten_min,
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "-5")],
            s(1.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "1.5")],
            s(1.5),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "soon")],
            s(1.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (
            429,
            vec![h("retry-after", "")],
            s(1.0),
            None,
            None,
            None,
            None,
            true,
        ),
        (429, vec![], s(1.0), None, None, None, None, true),
        (503, vec![], s(1.0), None, None, None, None, true),
        (
            200,
            vec![h("retry-after", "5")],
            s(5.0),
            None,
            None,
            None,
            None,
            false,
        ),
        (200, vec![], None, None, None, None, None, false),
        // Retry-After wins over a reset.
        (
            429,
            vec![
                h("retry-after", "7"),
                h("x-ratelimit-remaining", "0"),
                h("x-ratelimit-reset", "60"),
            ],
            s(7.0),
            Some(0.0),
            None,
            s(60.0),
            None,
            true,
        ),
        // IETF structured fields.
        (
            200,
            vec![h("ratelimit", "\"default\";r=50;t=30")],
            None,
            Some(50.0),
            None,
            s(30.0),
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit", "\"default\";r=0;t=30")],
            s(30.0),
            Some(0.0),
            None,
            s(30.0),
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit", "\"a\";r=5;t=1, \"b\";r=2;t=60")],
            None,
            Some(2.0),
            None,
            s(60.0),
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit-policy", "\"burst\";q=100;w=60")],
            None,
            None,
            None,
            None,
            quota(100.0, 60),
            false,
        ),
        (
            200,
            vec![h(
                "ratelimit-policy",
                "\"burst\";q=100;w=60,\"daily\";q=1000;w=86400",
            )],
            None,
            None,
            None,
            None,
            quota(1000.0, 86400),
            false,
        ),
        (
            200,
            vec![h(
                "ratelimit-policy",
                "\"b\";q=100;w=60;qu=\"content-bytes\"",
            )],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit-policy", "\"b\";q=10;w=0")],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit-policy", "\"b\";q=-1;w=60")],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit-policy", "q=10;w=((")],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit", "r=5;t=")],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![h("ratelimit", "\"d\";t=5")],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        // The older draft.
        (
            200,
            vec![
                h("ratelimit-limit", "10"),
                h("ratelimit-remaining", "1"),
                h("ratelimit-reset", "7"),
            ],
            None,
            Some(1.0),
            Some(10.0),
            s(7.0),
            None,
            false,
        ),
        (
            200,
            vec![
                h("ratelimit-limit", "10, 10;w=1, 50;w=60"),
                h("ratelimit-remaining", "0"),
                h("ratelimit-reset", "1"),
            ],
            s(1.0),
            Some(0.0),
            Some(10.0),
            s(1.0),
            quota(50.0, 60),
            false,
        ),
        // GitHub: epoch resets.
        (
            200,
            vec![
                h("x-ratelimit-limit", "5000"),
                h("x-ratelimit-remaining", "4987"),
                h("x-ratelimit-used", "13"),
                ("x-ratelimit-reset", (NOW + 300).to_string()),
                h("x-ratelimit-resource", "core"),
            ],
            None,
            Some(4987.0),
            Some(5000.0),
            s(300.0),
            None,
            false,
        ),
        (
            403,
            vec![
                h("x-ratelimit-limit", "60"),
                h("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", (NOW + 42).to_string()),
            ],
            s(42.0),
            Some(0.0),
            Some(60.0),
            s(42.0),
            None,
            true,
        ),
        (
            200,
            vec![
                h("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", (NOW - 10).to_string()),
            ],
            s(0.0),
            Some(0.0),
            None,
            s(0.0),
            None,
            false,
        ),
        (
            200,
            vec![
                h("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", (NOW + 999_999).to_string()),
            ],
            ten_min,
            Some(0.0),
            None,
            ten_min,
            None,
            false,
        ),
        (
            200,
            vec![
                h("x-ratelimit-remaining", "4000"),
                ("x-ratelimit-reset", (NOW + 3600).to_string()),
            ],
            None,
            Some(4000.0),
            None,
            ten_min,
            None,
            false,
        ),
        // X, with its extra hyphen.
        (
            200,
            vec![
                h("x-rate-limit-limit", "900"),
                h("x-rate-limit-remaining", "847"),
                ("x-rate-limit-reset", (NOW + 500).to_string()),
            ],
            None,
            Some(847.0),
            Some(900.0),
            s(500.0),
            None,
            false,
        ),
        // Reddit: a delta, and a decimal remaining.
        (
            200,
            vec![
                h("x-ratelimit-used", "12"),
                h("x-ratelimit-remaining", "88.0"),
                h("x-ratelimit-reset", "371"),
            ],
            None,
            Some(88.0),
            None,
            s(371.0),
            None,
            false,
        ),
        // Discord: reset-after preferred over the decimal epoch.
        (
            429,
            vec![
                h("x-ratelimit-limit", "5"),
                h("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", format!("{}.123", NOW + 9)),
                h("x-ratelimit-reset-after", "1.123"),
                h("x-ratelimit-bucket", "abcd1234"),
                h("retry-after", "2"),
            ],
            s(2.0),
            Some(0.0),
            Some(5.0),
            s(1.123),
            None,
            true,
        ),
        (
            200,
            vec![
                h("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", format!("{}.5", NOW + 1)),
            ],
            s(1.5),
            Some(0.0),
            None,
            s(1.5),
            None,
            false,
        ),
        // Envoy: seconds left in the fill interval.
        (
            200,
            vec![
                h("x-ratelimit-limit", "10"),
                h("x-ratelimit-remaining", "0"),
                h("x-ratelimit-reset", "5"),
            ],
            s(5.0),
            Some(0.0),
            Some(10.0),
            s(5.0),
            None,
            false,
        ),
        // Discogs.
        (
            200,
            vec![
                h("x-discogs-ratelimit", "60"),
                h("x-discogs-ratelimit-used", "12"),
                h("x-discogs-ratelimit-remaining", "48"),
            ],
            None,
            Some(48.0),
            Some(60.0),
            None,
            quota(60.0, 60),
            false,
        ),
        (
            429,
            vec![
                h("x-discogs-ratelimit", "25"),
                h("x-discogs-ratelimit-used", "25"),
            ],
            // No reset: the quota's whole window, not the 1 s default.
            s(60.0),
            Some(0.0),
            Some(25.0),
            None,
            quota(25.0, 60),
            true,
        ),
        // Malformed vendor values are ignored.
        (
            200,
            vec![
                h("x-ratelimit-remaining", "lots"),
                h("x-ratelimit-reset", "NaN"),
                h("x-ratelimit-limit", "-3"),
            ],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![
                h("x-ratelimit-remaining", "inf"),
                h("x-ratelimit-reset", "1e400"),
            ],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        (
            200,
            vec![h("x-discogs-ratelimit", "sixty")],
            None,
            None,
            None,
            None,
            None,
            false,
        ),
        // Exhausted with no reset and no window: the default wait, with
        // `reset_unknown` set so that the registry escalates.
        (
            200,
            vec![h("x-ratelimit-remaining", "0")],
            s(1.0),
            Some(0.0),
            None,
            None,
            None,
            false,
        ),
    ];
    assert!(cases.len() >= 40, "{}", cases.len());
    for (i, (status, headers, retry, remaining, limit, reset, quota, limited)) in
        cases.into_iter().enumerate()
    {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = parse(status, &pairs);
        let ctx = format!("case {i}: {status} {pairs:?} → {got:?}");
        let close = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => a.abs_diff(b) < Duration::from_millis(1),
            (a, b) => a == b,
        };
        assert!(close(got.retry_after, retry), "retry_after: {ctx}");
        assert_eq!(got.remaining, remaining, "remaining: {ctx}");
        assert_eq!(got.limit, limit, "limit: {ctx}");
        assert!(close(got.reset_after, reset), "reset_after: {ctx}");
        assert_eq!(got.quota, quota, "quota: {ctx}");
        assert_eq!(got.limited, limited, "limited: {ctx}");
    }
}

#[test]
fn the_cap_is_configurable() {
    let mut map = HeaderMap::new();
    map.insert("retry-after", HeaderValue::from_static("3600"));
    let config = SignalConfig::default().with_max_wait(Duration::from_secs(5));
    let got = Signal::parse(StatusCode::TOO_MANY_REQUESTS, &map, now(), &config);
    assert_eq!(got.retry_after, s(5.0));
}

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
    "x-rate-limit-reset",
    "x-discogs-ratelimit",
    "x-discogs-ratelimit-used",
    "x-discogs-ratelimit-remaining",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)
    ))]

    #[test]
    fn arbitrary_bytes_never_panic(
        status in 100u16..600,
        values in prop::collection::vec((0..NAMES.len(), prop::collection::vec(any::<u8>(), 0..40)), 0..8),
        texty in prop::collection::vec((0..NAMES.len(), "[ -~]{0,40}"), 0..8),
    ) {
        let mut map = HeaderMap::new();
        for (i, bytes) in values {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                map.append(NAMES[i], v);
            }
        }
        for (i, text) in texty {
            if let Ok(v) = HeaderValue::from_str(&text) {
                map.append(NAMES[i], v);
            }
        }
        let config = SignalConfig::default();
        let got = Signal::parse(StatusCode::from_u16(status).unwrap(), &map, now(), &config);
        if let Some(w) = got.retry_after {
            prop_assert!(w <= config.max_wait);
        }
        if let Some(q) = got.quota {
            prop_assert!(q.quota.is_finite() && q.quota >= 0.0 && !q.window.is_zero());
        }
    }
}

/// Issue #18: a quota said to be exhausted with a reset that cannot be read
/// waits conservatively, doubling while it repeats, up to the cap; a
/// response with requests left starts over.
#[tokio::test(start_paused = true)]
async fn an_exhausted_quota_without_a_readable_reset_backs_off_doubling() {
    use tollgate::{Policy, Registry, Source, Target};
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::per_second(100.0).unwrap())
                .host("api.example.com"),
        )
        .signals(tollgate::SignalConfig::default().with_max_wait(Duration::from_secs(5)))
        .build()
        .unwrap();
    let uri: http::Uri = "https://api.example.com/".parse().unwrap();
    let target = Target::from_uri(&uri);
    let mut spent = HeaderMap::new();
    spent.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    spent.insert("x-ratelimit-reset", HeaderValue::from_static("soon"));
    let deferred = |r: &Registry| r.snapshot()[0].buckets[0].deferred_for.unwrap_or_default();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let p = registry.acquire(&target, 1.0).await.unwrap();
        let s = p.observe(StatusCode::OK, &spent);
        assert!(s.reset_unknown, "{s:?}");
        seen.push(deferred(&registry).as_secs_f64().round() as u64);
    }
    assert_eq!(seen, [1, 2, 4, 5], "doubling from the default wait, capped");
    let mut left = HeaderMap::new();
    left.insert("x-ratelimit-remaining", HeaderValue::from_static("10"));
    registry
        .acquire(&target, 1.0)
        .await
        .unwrap()
        .observe(StatusCode::OK, &left);
    let p = registry.acquire(&target, 1.0).await.unwrap();
    p.observe(StatusCode::OK, &spent);
    assert_eq!(deferred(&registry).as_secs_f64().round() as u64, 1);
}
