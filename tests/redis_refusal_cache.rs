//! Refusals without a round trip: a set that Redis refused until a slot
//! refuses the same (or heavier) requests locally until that slot, with the
//! exact wait, and asks Redis again after it, or sooner when this process
//! defers, changes the limits or gives tokens back. Each test runs its own
//! `redis-server`, so that the server's command counts are the test's.
//! Real time over loopback.
#![cfg(all(feature = "server", feature = "redis"))]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/redis.rs"]
mod redis_env;

use http::{Request, Response, StatusCode};
use tollgate::server::{tier, GuardLayer, HeaderKey};
use tollgate::{Error, OnLimit, Policy, Registry, Source};
use tower::{Layer, Service, ServiceExt};

fn policy(s: &str) -> Policy {
    s.parse().unwrap()
}

fn retry_after(e: &Error) -> Duration {
    match e.retry_after() {
        Some(after) => after,
        None => panic!("expected a refusal, got {e:?}"),
    }
}

const REQUESTS: u64 = 100_000;
const TASKS: usize = 16;

/// The measure: a one-key flood of 100,000 requests through
/// `GuardLayer` on a tier in Redis. At most one script call per 100 refused
/// requests, and the upstream never sees more than the window bound over
/// the flood's whole span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_key_flood_costs_under_one_call_per_100_refusals() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("flood").await else {
        return;
    };
    let limit = policy("20/s burst 5");
    let registry = Registry::builder()
        .source(tier("free").limit(limit))
        .redis(store)
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key").unwrap())
        .default_tier("free")
        .build()
        .unwrap();
    let upstream = Arc::new(AtomicU64::new(0));
    let svc = {
        let upstream = upstream.clone();
        guard.layer(tower::service_fn(move |_req: Request<()>| {
            upstream.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }))
    };

    let before = redis_env::script_calls(&mut raw).await;
    let left = Arc::new(AtomicU64::new(REQUESTS));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (mut svc, left, refused) = (svc.clone(), left.clone(), refused.clone());
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let req = Request::builder()
                        .header("x-api-key", "k-flood")
                        .body(())
                        .unwrap();
                    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
                    match resp.status() {
                        StatusCode::OK => {}
                        StatusCode::TOO_MANY_REQUESTS => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        s => panic!("unexpected {s}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let calls = redis_env::script_calls(&mut raw).await - before;
    let admitted = upstream.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    let bound = limit.max_in_window(elapsed);
    println!(
        "{REQUESTS} requests on one key from {TASKS} tasks in {elapsed:?}: {admitted} admitted \
         (bound {bound:.1}), {refused} refused, {calls} script calls \
         ({:.5} per refused request)",
        calls as f64 / refused as f64
    );
    assert_eq!(admitted + refused, REQUESTS);
    assert!(
        calls * 100 <= refused,
        "{calls} script calls for {refused} refusals"
    );
    // The window bound over the whole flood (the span of the admissions
    // on Redis's clock is within the local one measured around them).
    assert!(
        admitted as f64 <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    // Stricter, but not starved: a local refusal outlasts Redis's by at
    // most one trip, so most of the quota is still used.
    assert!(
        admitted as f64 >= bound / 2.0,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
}

/// A refused request teaches the bucket until when: the same request is
/// refused again with the exact remaining wait without asking Redis, a
/// heavier one too, and after the slot Redis is asked (and admits).
#[tokio::test]
async fn a_refusal_is_repeated_locally_until_its_slot() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("repeat").await else {
        return;
    };
    let b = store.bucket("repeat", &[policy("4/s burst 2")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    b.try_acquire(1.0).await.unwrap();
    let first = b.try_acquire(1.0).await.unwrap_err();
    let wait = retry_after(&first);
    assert!(wait > Duration::from_millis(200) && wait <= Duration::from_millis(250));
    let calls = redis_env::script_calls(&mut raw).await;
    let mut last = wait;
    for _ in 0..1_000 {
        let again = retry_after(&b.try_acquire(1.0).await.unwrap_err());
        assert!(again <= last, "{again:?} after {last:?}");
        last = again;
        let heavier = retry_after(&b.try_acquire(2.0).await.unwrap_err());
        assert!(heavier >= again);
    }
    assert_eq!(
        redis_env::script_calls(&mut raw).await,
        calls,
        "no call for 2000 refusals"
    );
    // A request that may wait that long asks Redis and gets the slot.
    let r = b.reserve(1.0, Duration::from_secs(1)).await.unwrap();
    assert!(r.delay() <= last);
    assert_eq!(redis_env::script_calls(&mut raw).await, calls + 1);
    r.wait().await;
    // After the slot Redis decides again.
    tokio::time::sleep(Duration::from_millis(260)).await;
    b.try_acquire(1.0).await.unwrap();
}

/// A grant that empties the bucket is enough: the next request is refused
/// without a call, for the time until the next token.
#[tokio::test]
async fn a_grant_that_empties_the_bucket_refuses_the_next_locally() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("grant").await else {
        return;
    };
    let b = store.bucket("grant", &[policy("2/s burst 1")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    let calls = redis_env::script_calls(&mut raw).await;
    let wait = retry_after(&b.try_acquire(1.0).await.unwrap_err());
    assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
    assert_eq!(redis_env::script_calls(&mut raw).await, calls);
}

/// A deferral clears what is known: the next request asks Redis, which
/// refuses it for the deferral's length, not the old slot's.
#[tokio::test]
async fn a_deferral_clears_the_known_refusal() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("defer").await else {
        return;
    };
    let b = store.bucket("defer", &[policy("2/s burst 1")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    let wait = retry_after(&b.try_acquire(1.0).await.unwrap_err());
    assert!(wait <= Duration::from_millis(500));
    b.defer_for(Duration::from_secs(3)).await.unwrap();
    let calls = redis_env::script_calls(&mut raw).await;
    let deferred = retry_after(&b.try_acquire(1.0).await.unwrap_err());
    assert!(
        deferred > Duration::from_millis(2_900) && deferred <= Duration::from_secs(3),
        "{deferred:?}"
    );
    assert_eq!(
        redis_env::script_calls(&mut raw).await,
        calls + 1,
        "Redis was asked"
    );
    // And what Redis answered is known again.
    b.try_acquire(1.0).await.unwrap_err();
    assert_eq!(redis_env::script_calls(&mut raw).await, calls + 1);
}

/// Giving tokens back clears what is known: a later request asks Redis,
/// which now has them.
#[tokio::test]
async fn a_refund_clears_the_known_refusal() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("refund").await else {
        return;
    };
    let b = store.bucket("refund", &[policy("1/s burst 1")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    // Two tokens are out: a third waits about 2 s, known without a call.
    let calls = redis_env::script_calls(&mut raw).await;
    let long = retry_after(&b.try_acquire(1.0).await.unwrap_err());
    assert!(long > Duration::from_millis(1_900), "{long:?}");
    assert_eq!(redis_env::script_calls(&mut raw).await, calls);
    assert_eq!(r.cancel().await.unwrap(), 1.0);
    let calls = redis_env::script_calls(&mut raw).await;
    let short = retry_after(&b.try_acquire(1.0).await.unwrap_err());
    assert!(short <= Duration::from_secs(1), "{short:?}");
    assert_eq!(
        redis_env::script_calls(&mut raw).await,
        calls + 1,
        "Redis was asked"
    );
}

/// A reservation dropped before its slot gives its tokens back and clears
/// what is known at once.
#[tokio::test]
async fn a_dropped_reservation_clears_the_known_refusal() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("drop").await else {
        return;
    };
    let b = store.bucket("drop", &[policy("1/s burst 1")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert!(retry_after(&b.try_acquire(1.0).await.unwrap_err()) > Duration::from_millis(1_900));
    let calls = redis_env::script_calls(&mut raw).await;
    drop(r);
    // The refund runs in a task, after this request looked (one runtime
    // thread): it found nothing known and asked Redis.
    b.try_acquire(1.0).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        redis_env::script_calls(&mut raw).await,
        calls + 2,
        "the refund and the request"
    );
}

/// A policy change in a registry (`set_limits`) clears what is known: with
/// a faster rate, the next token comes sooner than the refusal said.
#[tokio::test]
async fn set_limits_clears_the_known_refusal() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("limits").await else {
        return;
    };
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(policy("1/s burst 1"))
                .on_limit(OnLimit::Reject),
        )
        .redis(store)
        .build()
        .unwrap();
    let api = registry.source("api").unwrap();
    drop(api.acquire(1.0).await.unwrap());
    let wait = retry_after(&api.acquire(1.0).await.unwrap_err());
    assert!(wait > Duration::from_millis(900), "{wait:?}");
    let calls = redis_env::script_calls(&mut raw).await;
    api.acquire(1.0).await.unwrap_err();
    assert_eq!(
        redis_env::script_calls(&mut raw).await,
        calls,
        "known: no call"
    );

    registry
        .set_limits("api", vec![policy("50/s burst 1")])
        .unwrap();
    // The level is kept (empty); at 50/s a token is back within 20 ms.
    tokio::time::sleep(Duration::from_millis(60)).await;
    drop(api.acquire(1.0).await.unwrap());
}

/// A waiting request whose slot Redis gave sleeps until it on the local
/// timer: one call, however long the wait.
#[tokio::test]
async fn a_waiter_with_its_slot_is_not_asked_again() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("waiter").await else {
        return;
    };
    let b = store.bucket("waiter", &[policy("4/s burst 1")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    let calls = redis_env::script_calls(&mut raw).await;
    let start = Instant::now();
    b.acquire(1.0).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(redis_env::script_calls(&mut raw).await, calls + 1);
}

/// What this process knows never admits: two handles on one bucket (two
/// processes), each refusing from what it learned, still admit only what
/// Redis grants, within the window bound on Redis's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_refusals_never_admit_what_redis_refuses() {
    let Some((server, store, _raw)) = redis_env::private_with_counts("never").await else {
        return;
    };
    let other = redis_env::connect(&server.url(), "t:").await;
    let limit = policy("20/s burst 3");
    let handles = [
        store.bucket("never", &[limit]).unwrap(),
        other.bucket("never", &[limit]).unwrap(),
    ];
    let until = Instant::now() + Duration::from_millis(1_500);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let b = handles[i % 2].clone();
            tokio::spawn(async move {
                let mut admitted = Vec::new();
                while Instant::now() < until {
                    // Mixed weights: light requests are never refused for
                    // what a heavier one was.
                    let w = if i < 2 { 1.0 } else { 0.5 };
                    if let Ok(a) = b.try_acquire(w).await {
                        admitted.push((a.at().expect("admitted by Redis"), w));
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for t in tasks {
        admitted.extend(t.await.unwrap());
    }
    admitted.sort_by_key(|(at, _)| *at);
    assert!(admitted.len() > 20, "{} admitted", admitted.len());
    // Every window between two admissions, on Redis's clock.
    for (i, (from, _)) in admitted.iter().enumerate() {
        let mut weight = 0.0;
        for (to, w) in &admitted[i..] {
            weight += w;
            let window = Duration::from_nanos(to.as_nanos() - from.as_nanos());
            let bound = limit.capacity() + limit.tokens_per_second() * window.as_secs_f64();
            assert!(
                weight <= bound + 1e-9,
                "{weight} tokens in {window:?}, bound {bound}"
            );
        }
    }
}
