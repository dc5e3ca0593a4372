//! Learning the limits of hosts nobody configured (`Source::learn`): a
//! quota a server announces paces the source, expires when no longer
//! announced, never lifts a configured ceiling, and keeps the window bound;
//! a refusal with nothing known releases the requests that waited one
//! probe first, never as a herd. Simulated servers on paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;
use tokio::time::Instant;
use tollgate::learn::{Learn, Origin};
use tollgate::{ManualClock, Policy, Registry, Source, Target, UnknownHost};

mod common;

/// What the simulated server sends besides its status.
#[derive(Clone, Copy, PartialEq)]
enum Says {
    /// `RateLimit-Policy` and `RateLimit` on refusals only.
    QuotaOnRefusals,
    /// The same on every response.
    QuotaAlways,
    /// `Retry-After` alone, on refusals.
    RetryAfterOnly,
}

/// A server that admits `quota` requests in each fixed window of one
/// second, counted from its start, and answers 429 beyond.
struct Server {
    quota: u32,
    says: Says,
    start: Instant,
    window: u64,
    used: u32,
}

impl Server {
    fn new(quota: u32, says: Says) -> Self {
        Server {
            quota,
            says,
            start: Instant::now(),
            window: 0,
            used: 0,
        }
    }

    fn answer(&mut self) -> (StatusCode, HeaderMap) {
        let elapsed = self.start.elapsed();
        let window = elapsed.as_secs();
        if window != self.window {
            self.window = window;
            self.used = 0;
        }
        let ok = self.used < self.quota;
        if ok {
            self.used += 1;
        }
        // Whole seconds to the window's end, rounded up (as the fields are
        // integers).
        let to_reset = (Duration::from_secs(window + 1) - elapsed)
            .as_secs_f64()
            .ceil() as u64;
        let mut h = HeaderMap::new();
        let mut put = |k: &str, v: String| {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        };
        let announce = match self.says {
            Says::QuotaAlways => true,
            Says::QuotaOnRefusals => !ok,
            Says::RetryAfterOnly => false,
        };
        if announce {
            put("ratelimit-policy", format!("\"free\";q={};w=1", self.quota));
            put(
                "ratelimit",
                format!("\"free\";r={};t={to_reset}", self.quota - self.used),
            );
        }
        if !ok && self.says == Says::RetryAfterOnly {
            put("retry-after", to_reset.to_string());
        }
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        (status, h)
    }
}

/// One request's story: when it was sent, when its answer came, and
/// whether it was refused.
#[derive(Clone, Copy, Debug)]
struct Sent {
    at: Duration,
    answered: Duration,
    refused: bool,
}

/// `callers` tasks send through `registry` to `host` for `secs` seconds
/// of paused time, each waiting for its answer (`latency` there and back)
/// before the next.
async fn run(
    registry: &Registry,
    server: Server,
    callers: usize,
    secs: u64,
    latency: Duration,
) -> Vec<Sent> {
    let server = Arc::new(Mutex::new(server));
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (registry, server, log) = (registry.clone(), server.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let uri: http::Uri = "https://api.example.net/v1/items".parse().unwrap();
            loop {
                let permit = registry
                    .acquire(&Target::from_uri(&uri), 1.0)
                    .await
                    .unwrap();
                let at = start.elapsed();
                if Instant::now() >= end {
                    break;
                }
                tokio::time::sleep(latency / 2).await;
                let (status, headers) = server.lock().unwrap().answer();
                tokio::time::sleep(latency / 2).await;
                permit.observe(status, &headers);
                log.lock().unwrap().push(Sent {
                    at,
                    answered: start.elapsed(),
                    refused: status == StatusCode::TOO_MANY_REQUESTS,
                });
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    log.sort_by_key(|s| s.at);
    log
}

/// Refused requests that were sent after the first refusal had come back.
fn refused_after_first(log: &[Sent]) -> usize {
    let Some(first) = log.iter().filter(|s| s.refused).map(|s| s.answered).min() else {
        return 0;
    };
    log.iter().filter(|s| s.refused && s.at >= first).count()
}

fn learning_registry(learn: Learn) -> Registry {
    Registry::builder()
        .source(Source::new("elsewhere").learn_with(learn).per_host())
        .unknown_hosts(UnknownHost::Default("elsewhere".into()))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn four_callers_and_an_announced_quota_make_one_refusal_at_most() {
    let registry = learning_registry(Learn::default());
    let log = run(
        &registry,
        Server::new(5, Says::QuotaOnRefusals),
        4,
        20,
        Duration::from_millis(20),
    )
    .await;
    let refused = log.iter().filter(|s| s.refused).count();
    assert!(refused >= 1, "the unlimited start must meet the limit once");
    let after = refused_after_first(&log);
    assert!(after <= 1, "{after} refusals after the first 429: {log:?}");
    // And the quota is used: 4.5/s learned, over the 20 s less the first
    // deferral.
    let ok = log.iter().filter(|s| !s.refused).count();
    assert!(ok >= 80, "only {ok} admitted in 20 s");
    let snap = registry.snapshot();
    let learned = &snap[0].buckets[1].learned;
    assert_eq!(
        learned[0].origin,
        Origin::Announced {
            quota: 5.0,
            window: Duration::from_secs(1)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_quota_announced_on_every_response_leaves_nothing_to_refuse() {
    let registry = learning_registry(Learn::default());
    let log = run(
        &registry,
        Server::new(5, Says::QuotaAlways),
        4,
        20,
        Duration::from_millis(20),
    )
    .await;
    // The first four went before any answer came: they may take the first
    // window's quota, nothing else is refused.
    let refused = log.iter().filter(|s| s.refused).count();
    assert!(refused <= 1, "{refused} refused: {log:?}");
}

/// Without a learner the same server refuses a wave after every deferral:
/// the comparison that shows what learning is for.
#[tokio::test(start_paused = true)]
async fn without_learning_each_deferral_releases_a_herd() {
    let registry = Registry::builder()
        .source(
            Source::new("elsewhere")
                .limit(Policy::unlimited())
                .per_host(),
        )
        .unknown_hosts(UnknownHost::Default("elsewhere".into()))
        .build()
        .unwrap();
    let log = run(
        &registry,
        Server::new(5, Says::QuotaOnRefusals),
        4,
        10,
        Duration::from_millis(20),
    )
    .await;
    assert!(refused_after_first(&log) >= 10, "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_alone_gets_one_refusal_per_deferral_at_most() {
    let registry = learning_registry(Learn::default());
    let log = run(
        &registry,
        Server::new(5, Says::RetryAfterOnly),
        4,
        30,
        Duration::from_millis(20),
    )
    .await;
    // Between two refusals coming back, at most one request that was sent
    // in between is refused: the probe (or the one that found the limit).
    let receipts: Vec<Duration> = log
        .iter()
        .filter(|s| s.refused)
        .map(|s| s.answered)
        .collect();
    assert!(!receipts.is_empty());
    let mut sorted = receipts.clone();
    sorted.sort();
    for pair in sorted.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let sent_between = log
            .iter()
            .filter(|s| s.refused && s.at >= from && s.at < to)
            .count();
        assert!(
            sent_between <= 1,
            "{sent_between} refused between {from:?} and {to:?}"
        );
    }
    let ok = log.iter().filter(|s| !s.refused).count();
    let refused = receipts.len();
    assert!(
        refused * 10 < ok,
        "{refused} refused against {ok} admitted: {log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_learned_quota_expires_back_to_the_ceiling() {
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::per_second(20.0).unwrap())
                .learn_with(Learn::default().expire_after(Duration::from_secs(60)))
                .host("api.example.net"),
        )
        .build()
        .unwrap();
    let uri: http::Uri = "https://api.example.net/".parse().unwrap();
    let target = Target::from_uri(&uri);
    let mut quota = HeaderMap::new();
    quota.insert(
        "ratelimit-policy",
        HeaderValue::from_static("\"q\";q=2;w=1"),
    );
    let permit = registry.acquire(&target, 1.0).await.unwrap();
    permit.observe(StatusCode::OK, &quota);
    let limits = &registry.snapshot()[0].buckets[0].limits;
    assert_eq!(limits[0], Policy::per_second(20.0).unwrap());
    assert!(
        (limits[1].tokens_per_second() - 1.8).abs() < 1e-9,
        "{limits:?}"
    );
    // Paced at the learned 1.8/s now.
    let t0 = Instant::now();
    for _ in 0..9 {
        let p = registry.acquire(&target, 1.0).await.unwrap();
        p.observe(StatusCode::OK, &HeaderMap::new());
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(4), "{took:?}");
    // No announcement for a minute: the next response drops it.
    tokio::time::advance(Duration::from_secs(61)).await;
    let p = registry.acquire(&target, 1.0).await.unwrap();
    p.observe(StatusCode::OK, &HeaderMap::new());
    let snap = &registry.snapshot()[0].buckets[0];
    assert!(snap.learned.is_empty(), "{:?}", snap.learned);
    assert!(snap.limits[1..].iter().all(Policy::is_unlimited));
    let t0 = Instant::now();
    for _ in 0..19 {
        let _sent = registry.acquire(&target, 1.0).await.unwrap();
    }
    assert!(t0.elapsed() <= Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_learned_limit_never_lifts_the_configured_ceiling() {
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::per_second(2.0).unwrap())
                .learn()
                .host("api.example.net"),
        )
        .build()
        .unwrap();
    let uri: http::Uri = "https://api.example.net/".parse().unwrap();
    let target = Target::from_uri(&uri);
    let mut generous = HeaderMap::new();
    generous.insert(
        "ratelimit-policy",
        HeaderValue::from_static("\"q\";q=1000;w=1"),
    );
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        let p = registry.acquire(&target, 1.0).await.unwrap();
        p.observe(StatusCode::OK, &generous);
        n += 1;
    }
    // 1 at once, then 2/s.
    assert!(n <= 1 + 20 + 1, "{n} admitted in 10 s under a 2/s ceiling");
    let snap = &registry.snapshot()[0];
    assert_eq!(snap.configured, vec![Policy::per_second(2.0).unwrap()]);
    assert_eq!(snap.buckets[0].limits[0], Policy::per_second(2.0).unwrap());
}

#[test]
fn learning_is_checked_when_built() {
    let e = Registry::builder()
        .source(Source::new("s").learn_with(Learn::default().expire_after(Duration::ZERO)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("expire_after") && e.contains("positive"), "{e}");
}

#[cfg(feature = "serde")]
#[test]
fn learning_from_toml() {
    let text = r#"
[[source]]
name = "elsewhere"
scope = "per-host"
adaptive = true
learn_expiry = "5min"
"#;
    let builder = tollgate::RegistryBuilder::from_toml(text).unwrap();
    let back = builder.to_toml();
    assert!(
        back.contains("adaptive = true") && back.contains("learn_expiry = \"300s\""),
        "{back}"
    );
    tollgate::RegistryBuilder::from_toml(&back)
        .unwrap()
        .build()
        .unwrap();
    for (bad, says) in [
        ("learn = false\nadaptive = true", "learn"),
        ("learn_expiry = \"5min\"", "learn_expiry"),
        ("learn = true\nlearn_expiry = \"0s\"", "learn_expiry"),
    ] {
        let text = format!("[[source]]\nname = \"x\"\n{bad}\n");
        let e = tollgate::RegistryBuilder::from_toml(&text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Take,
    /// A response announcing `q` per `w` seconds.
    Announce(u32, u64),
    /// A bare 429.
    Refuse,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u64..400).prop_map(|ms| Op::Advance(ms * 1_000_000 + 1)),
            6 => Just(Op::Take),
            1 => (1u32..30, 1u64..5).prop_map(|(q, w)| Op::Announce(q, w)),
            1 => Just(Op::Refuse),
        ],
        1..150,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(500)
    ))]

    /// Whatever is learned, admissions keep the ceiling's window bound; and
    /// from the last quota announced on, the learned quota's: never more
    /// than `q` in any window `w`.
    #[test]
    fn the_window_bound_holds_under_learned_limits(
        cap in 1.0f64..4.0, rate in 1.0f64..40.0, adaptive in any::<bool>(), ops in ops()
    ) {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(1));
        let ceiling = Policy::new(cap, rate).unwrap();
        let registry = Registry::builder()
            .source(Source::new("s").limit(ceiling).learn_with(Learn::default().adaptive(adaptive)).host("h"))
            .clock(clock.clone())
            .build()
            .unwrap();
        let target = Target::new("h", None, "/");
        let mut admitted: Vec<(u64, f64)> = Vec::new();
        // Where the admissions stood when the last quota was announced.
        let mut last: Option<(usize, u32, u64)> = None;
        let mut permit = None;
        for op in &ops {
            match op {
                Op::Advance(ns) => clock.advance(Duration::from_nanos(*ns)),
                Op::Take => {
                    if let Ok(p) = registry.try_acquire(&target, 1.0) {
                        admitted.push((p.admitted_at().as_nanos(), 1.0));
                        permit = Some(p);
                    }
                }
                Op::Announce(q, w) => {
                    if let Some(p) = &permit {
                        let mut h = HeaderMap::new();
                        h.insert(
                            "ratelimit-policy",
                            HeaderValue::from_str(&format!("\"q\";q={q};w={w}")).unwrap(),
                        );
                        p.observe(StatusCode::OK, &h);
                        last = Some((admitted.len(), *q, *w));
                    }
                }
                Op::Refuse => {
                    if let Some(p) = &permit {
                        p.observe(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
                    }
                }
            }
        }
        for w in [1u64, 1_000_000, 100_000_000, 1_000_000_000, 3_000_000_000] {
            let got = common::max_in_window(&admitted, w);
            let bound = cap + rate * w as f64 / 1e9;
            prop_assert!(got <= bound + 1e-9, "ceiling: {got} > {bound} in {w} ns");
        }
        if let Some((since, q, w)) = last {
            let got = common::max_in_window(&admitted[since..], w * 1_000_000_000);
            // The tokens the bucket had when the quota came are kept (at
            // most its burst of a tenth), so the bound is the quota's.
            prop_assert!(got <= f64::from(q) + 1e-9, "learned {q}/{w}s: {got}");
        }
    }
}
