//! Limits that cannot be made stricter are refused, never silently looser;
//! a full `max_in_flight` is its own refusal and retries follow the backoff
//! schedule; and the smaller defects of the first round stay fixed.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tollgate::backoff::{Backoff, Jitter};
use tollgate::tower::{RateLimitLayer, RetryPolicy};
use tollgate::{presets, ErrorKind, OnLimit, Policy, Registry, Source, Target, TokioClock};
use tower::{service_fn, ServiceBuilder, ServiceExt};

#[test]
fn a_slow_down_that_cannot_be_applied_is_an_error_and_changes_nothing() {
    // 1 in 20 years, slowed to half, is below the slowest rate a policy can
    // time (1 in 30 years).
    let slow = Policy::new(1.0, 1.0 / (20.0 * 365.0 * 86_400.0)).unwrap();
    let registry = Registry::builder()
        .source(Source::new("slow").limit(slow).host("slow.test"))
        .source(
            Source::new("fast")
                .limit(Policy::per_second(10.0).unwrap())
                .host("fast.test"),
        )
        .build()
        .unwrap();
    let err = registry.slow_down(0.5).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::InvalidPolicy | ErrorKind::InvalidConfig
        ),
        "{err}"
    );
    let snap = registry.snapshot();
    assert_eq!(snap[0].limits, vec![slow], "the slow source is unchanged");
    assert_eq!(
        snap[1].limits[0].tokens_per_second(),
        10.0,
        "and so is the other"
    );
}

#[test]
fn a_limit_that_failed_to_build_fails_the_registry() {
    let source = Source::new("s")
        .try_limit(Policy::per_second(-1.0))
        .host("s.test");
    let err = Registry::builder().source(source).build().unwrap_err();
    assert!(err.to_string().contains("source `s`"), "{err}");
}

#[test]
fn every_preset_is_limited() {
    for source in [
        presets::musicbrainz(),
        presets::discogs_authenticated(),
        presets::discogs_unauthenticated(),
        presets::acoustid(),
        presets::anilist(),
        presets::jikan(),
    ] {
        assert!(!source.limits().is_empty(), "{}", source.name());
        for p in source.limits() {
            assert!(!p.is_unlimited(), "{}: {p}", source.name());
        }
        Registry::builder().source(source).build().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_in_flight_cap_is_retried_on_the_backoff_schedule() {
    let registry = Registry::builder()
        .source(
            Source::new("one")
                .limit(Policy::unlimited())
                .host("one.test")
                .max_in_flight(1)
                .on_limit(OnLimit::Reject),
        )
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .retry(
            RetryPolicy::new(
                Backoff::default()
                    .base(Duration::from_secs(1))
                    .jitter(Jitter::None),
            )
            .retry_local_refusals(true),
        )
        .layer(RateLimitLayer::new(registry.clone()))
        .service(service_fn(move |_: Request<String>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
    // Someone else holds the only slot for 5 s.
    let held = registry
        .acquire(&Target::new("one.test", None, "/"), 1.0)
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(held);
    });
    let start = Instant::now();
    let request = Request::get("https://one.test/")
        .body(String::new())
        .unwrap();
    svc.oneshot(request).await.unwrap();
    // Refused at 0, retried at 1 s and 3 s (refused), and at 7 s (admitted).
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_in_flight_cap_in_reject_mode_fails_fast_through_the_retry_policy() {
    let registry = Registry::builder()
        .source(
            Source::new("one")
                .limit(Policy::unlimited())
                .host("one.test")
                .max_in_flight(1)
                .on_limit(OnLimit::Reject),
        )
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .retry(RetryPolicy::default())
        .layer(RateLimitLayer::new(registry.clone()))
        .service(service_fn(move |_: Request<String>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
    let _held = registry
        .acquire(&Target::new("one.test", None, "/"), 1.0)
        .await
        .unwrap();
    let start = Instant::now();
    let request = Request::get("https://one.test/")
        .body(String::new())
        .unwrap();
    let err = svc.oneshot(request).await.unwrap_err();
    let err = err
        .downcast_ref::<tollgate::Error>()
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(err.kind(), tollgate::ErrorKind::InFlightFull, "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_refusal_prints_its_message_once_in_an_error_chain() {
    let err = Policy::per_second(1.0)
        .map(tollgate::TokenBucket::new)
        .unwrap();
    err.try_acquire(1.0).unwrap();
    let e = err.try_acquire(1.0).unwrap_err();
    let mut chain = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    assert_eq!(chain.len(), 1, "{chain:?}");
}

#[test]
fn concurrent_server_quotas_leave_the_rate_of_the_last_one_read() {
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::new(5000.0, 200.0).unwrap())
                .host("api.test"),
        )
        .build()
        .unwrap();
    let quota = |q: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-policy", HeaderValue::from_static(q));
        h
    };
    let (a, b) = (quota("\"a\";q=100;w=1"), quota("\"b\";q=10;w=1"));
    let t = Target::new("api.test", None, "/");
    for _ in 0..1000 {
        std::thread::scope(|s| {
            let pa = registry.try_acquire(&t, 1.0).unwrap();
            let pb = registry.try_acquire(&t, 1.0).unwrap();
            let (a, b) = (&a, &b);
            s.spawn(move || pa.observe(StatusCode::OK, a));
            s.spawn(move || pb.observe(StatusCode::OK, b));
        });
        let snap = &registry.snapshot()[0].buckets[0];
        let server = snap.server_rate.unwrap();
        // The rate in force is the one derived from the server rate on record.
        // Lowered to 90 % of the server's rate, never below 5 % of 200/s.
        let expected = (server * 0.9).max(200.0 * 0.05);
        assert!(
            (snap.limits[0].tokens_per_second() - expected).abs() < 1e-9,
            "server rate {server}, limit {}",
            snap.limits[0]
        );
    }
}
