//! Shadow mode and metrics. A shadow source makes no request wait and
//! counts exactly the waits and refusals an enforcing twin has on the same
//! schedule; with the feature `metrics`, a recorder sees exact counts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tollgate::{OnLimit, Policy, Registry, Source, Target, TokioClock};

fn registry(shadow: bool, on_limit: OnLimit) -> Registry {
    let mut source = Source::new("api")
        .limit(Policy::new(3.0, 5.0).unwrap())
        .host("api.test")
        .on_limit(on_limit);
    if shadow {
        source = source.shadow();
    }
    Registry::builder()
        .source(source)
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

/// Arrival times (ms): bursts and gaps.
fn schedule() -> Vec<u64> {
    let mut t = 0;
    (0..200u64)
        .map(|k| {
            t += match k % 11 {
                0 => 700,
                1..=4 => 0,
                _ => 90 + (k * 37) % 60,
            };
            t
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn shadow_waits_for_nothing_and_counts_exactly_what_an_enforcing_twin_waits() {
    let twin = registry(false, OnLimit::default());
    let shadow = registry(true, OnLimit::default());
    let start = Instant::now();
    let waits = Arc::new(Mutex::new((0u64, Duration::ZERO)));
    let mut tasks = Vec::new();
    for at in schedule() {
        let (twin, shadow, waits) = (twin.clone(), shadow.clone(), waits.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            let t = Target::new("api.test", None, "/");
            let before = Instant::now();
            let _p = shadow.acquire(&t, 1.0).await.unwrap();
            assert_eq!(
                before.elapsed(),
                Duration::ZERO,
                "shadow mode made a request wait"
            );
            let p = twin.acquire(&t, 1.0).await.unwrap();
            if !p.waited().is_zero() {
                let mut w = waits.lock().unwrap();
                w.0 += 1;
                w.1 += p.waited();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (count, total) = *waits.lock().unwrap();
    assert!(
        count > 20,
        "the schedule should make the twin wait: {count}"
    );
    let stats = shadow.shadow_stats("api").unwrap();
    assert_eq!(stats.would_wait, count);
    assert_eq!(stats.would_wait_for, total);
    assert_eq!(stats.would_refuse, 0);
    assert_eq!(twin.shadow_stats("api").unwrap(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn shadow_counts_exactly_what_a_rejecting_twin_refuses() {
    let twin = registry(false, OnLimit::Reject);
    let shadow = registry(true, OnLimit::Reject);
    let start = Instant::now();
    let mut refused = 0;
    for at in schedule() {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        let t = Target::new("api.test", None, "/");
        let _admitted = shadow.try_acquire(&t, 1.0).unwrap();
        if twin.try_acquire(&t, 1.0).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 10, "{refused}");
    let stats = shadow.shadow_stats("api").unwrap();
    assert_eq!(stats.would_refuse, refused);
    assert_eq!(stats.would_wait, 0);
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn a_recorder_sees_exact_counts() {
    use http::{HeaderMap, HeaderValue, StatusCode};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let registry = metrics::with_local_recorder(&recorder, || {
        Registry::builder()
            .source(
                Source::new("api")
                    .limit(Policy::new(2.0, 10.0).unwrap())
                    .host("api.test")
                    .max_in_flight(8),
            )
            .source(
                Source::new("strict")
                    .limit(Policy::per_second(1.0).unwrap())
                    .host("strict.test")
                    .on_limit(OnLimit::Reject),
            )
            .clock(TokioClock::new())
            .build()
            .unwrap()
    });
    let api = Target::new("api.test", None, "/");
    let mut permits = Vec::new();
    for _ in 0..5 {
        permits.push(registry.acquire(&api, 1.0).await.unwrap()); // 2 at once, 3 wait
    }
    let strict = Target::new("strict.test", None, "/");
    let _s = registry.try_acquire(&strict, 1.0).unwrap();
    for _ in 0..4 {
        assert!(registry.try_acquire(&strict, 1.0).is_err());
    }
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("3"));
    permits[0].observe(StatusCode::TOO_MANY_REQUESTS, &h);
    drop(permits.pop());

    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, source: &str, reason: Option<&str>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                k.name() == name
                    && k.labels()
                        .any(|l| l.key() == "source" && l.value() == source)
                    && reason
                        .is_none_or(|r| k.labels().any(|l| l.key() == "reason" && l.value() == r))
            })
            .map(|(_, _, _, v)| v)
            .unwrap_or_else(|| panic!("no {name} for {source}"))
    };
    assert_eq!(
        value("tollgate_admitted_total", "api", None),
        &DebugValue::Counter(5)
    );
    assert_eq!(
        value("tollgate_waited_total", "api", None),
        &DebugValue::Counter(3)
    );
    match value("tollgate_wait_seconds", "api", None) {
        DebugValue::Histogram(h) => {
            let waits: Vec<f64> = h.iter().map(|v| v.into_inner()).collect();
            assert_eq!(waits.len(), 3);
            assert!(waits.iter().all(|w| *w > 0.0), "{waits:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        value("tollgate_admitted_total", "strict", None),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value("tollgate_refused_total", "strict", Some("rate")),
        &DebugValue::Counter(4)
    );
    assert_eq!(
        value("tollgate_deferred_total", "api", None),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value("tollgate_in_flight", "api", None),
        &DebugValue::Gauge(4.0.into())
    );
}

/// Issue #19, item 9: when the in-flight cap refused a reject-mode request,
/// shadow mode still took its tokens, so its later counts drifted from the
/// enforcing twin's (2 would-refuse against 1 refusal).
#[test]
fn shadow_takes_no_tokens_where_the_in_flight_cap_refuses() {
    let clock = tollgate::ManualClock::new();
    let source = |name: &str, host: &str| {
        Source::new(name)
            .limit("1/s burst 2".parse().unwrap())
            .max_in_flight(1)
            .on_limit(OnLimit::Reject)
            .host(host)
    };
    let r = Registry::builder()
        .source(source("real", "real.test"))
        .source(source("shadow", "shadow.test").shadow())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut refused = 0;
    for host in ["real.test", "shadow.test"] {
        let t = Target::new(host, None, "/");
        let first = r.try_acquire(&t, 1.0).unwrap();
        // The cap is full: refused, or counted as refused.
        match r.try_acquire(&t, 1.0) {
            Err(_) => refused += 1,
            Ok(p) => drop(p),
        }
        drop(first);
        // The burst's second token is still there for both.
        match r.try_acquire(&t, 1.0) {
            Err(_) => refused += 1,
            Ok(p) => drop(p),
        }
    }
    assert_eq!(refused, 1, "the enforcing source refuses once");
    let stats = r.shadow_stats("shadow").unwrap();
    assert_eq!(stats.would_refuse, 1, "{stats:?}");
}
