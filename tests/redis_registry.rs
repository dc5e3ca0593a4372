//! A registry source kept in Redis: the same contract through the same
//! `Registry` and adapters as a source kept in process, shared by every
//! registry (process) that names it on the same store.
//!
//! Two registries on two store handles stand for two processes (they share
//! nothing but Redis). The tests run in real time against Redis's clock and
//! assert on counts: a refusal's wait, admissions that a shared quota allows
//! (which two in-process registries would double).
#![cfg(all(feature = "redis", feature = "tower"))]

use std::convert::Infallible;
use std::time::{Duration, Instant};

#[path = "common/redis.rs"]
mod redis_env;

use http::{HeaderMap, HeaderValue, StatusCode};
use tollgate::redis::{OnStoreError, RedisStore};
use tollgate::{
    Admission, Error, ErrorKind, Lanes, OnLimit, Policy, Registry, SignalConfig, Source, Target,
};
use tower::{Service, ServiceExt};

async fn stores(test: &str, n: usize) -> Option<Vec<RedisStore>> {
    let url = redis_env::redis_url(test)?;
    let prefix = redis_env::unique_prefix(test);
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(redis_env::connect(&url, &prefix).await);
    }
    Some(out)
}

fn registry(store: &RedisStore, source: Source) -> Registry {
    Registry::builder()
        .source(source.host("api.test"))
        .redis(store.clone())
        .build()
        .unwrap()
}

fn target() -> Target<'static> {
    Target::new("api.test", None, "/v1")
}

/// Admits through `admit` as an adapter does: `Ready`, or the wait awaited.
async fn admit(r: &Registry) -> Result<tollgate::Permit, Error> {
    match r.admit(&target(), 1.0)? {
        Admission::Ready(p) => Ok(p),
        Admission::Wait(w) => w.await,
    }
}

fn policy(s: &str) -> Policy {
    s.parse().unwrap()
}

/// Two registries (two processes) on their own store handles, each with
/// source `api` at `limit`, refusing rather than waiting.
async fn two_rejecting(test: &str, limit: &str) -> Option<(Registry, Registry)> {
    let s = stores(test, 2).await?;
    let source = || {
        Source::new("api")
            .limit(policy(limit))
            .on_limit(OnLimit::Reject)
    };
    Some((registry(&s[0], source()), registry(&s[1], source())))
}

#[tokio::test]
async fn two_registries_share_one_quota() {
    let Some((a, b)) = two_rejecting("share", "20/s burst 2").await else {
        return;
    };
    let start = Instant::now();
    let mut admitted = 0u32;
    let mut refused = 0u32;
    while start.elapsed() < Duration::from_millis(1000) {
        for r in [&a, &b] {
            match admit(r).await {
                Ok(_) => admitted += 1,
                Err(e) if e.is_rate_limited() => {
                    let e = e.as_rate_limited().unwrap();
                    assert_eq!(e.source(), Some("api"));
                    assert!(e.retry_after() <= Duration::from_millis(50), "{e}");
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // One quota: 2 + 20/s over the loop (each process alone would take
    // that much again). The lower margin covers a stalled machine.
    assert!(
        f64::from(admitted) <= 2.0 + 20.0 * elapsed + 1.0,
        "{admitted} in {elapsed} s"
    );
    assert!(admitted >= 15, "{admitted} in {elapsed} s");
    assert!(refused > 0);
}

#[tokio::test]
async fn waiters_of_two_registries_queue_on_one_schedule() {
    let Some(s) = stores("wait", 2).await else {
        return;
    };
    let source = || Source::new("api").limit(policy("20/s burst 1"));
    let (a, b) = (registry(&s[0], source()), registry(&s[1], source()));
    let start = Instant::now();
    let run = |r: Registry| async move {
        for _ in 0..10 {
            let p = r.acquire(&target(), 1.0).await.unwrap();
            assert_eq!(p.source(), Some("api"));
        }
    };
    tokio::join!(run(a), run(b));
    // 20 requests at 20/s from a full bucket of one: the last goes 19/20 s
    // after the first. Each registry on its own bucket would finish in half.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
}

#[tokio::test]
async fn synchronous_checks_refuse_with_a_typed_error() {
    let Some(s) = stores("sync", 1).await else {
        return;
    };
    let r = registry(&s[0], Source::new("api").limit(policy("5/s")));
    let e = r.try_acquire(&target(), 1.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AsyncOnly, "{e:?}");
    assert_eq!(e.source_name(), Some("api"));
    assert!(e.to_string().contains("Registry::admit"), "{e}");
    assert!(matches!(
        r.check(&target(), 1.0),
        Err(e) if e.kind() == ErrorKind::AsyncOnly
    ));
    assert!(matches!(
        r.source("api").unwrap().try_acquire(1.0),
        Err(e) if e.kind() == ErrorKind::AsyncOnly
    ));
    // The asynchronous paths admit.
    assert!(matches!(r.admit(&target(), 1.0), Ok(Admission::Wait(_))));
    drop(r.source("api").unwrap().acquire(1.0).await.unwrap());
    // A source the registry keeps in process is unaffected.
    let mixed = Registry::builder()
        .source(Source::new("api").limit(policy("5/s")).host("api.test"))
        .source(
            Source::new("local")
                .limit(policy("5/s"))
                .host("local.test")
                .in_process(),
        )
        .redis(s[0].clone())
        .build()
        .unwrap();
    let _local = mixed
        .try_acquire(&Target::new("local.test", None, "/"), 1.0)
        .unwrap();
    assert!(mixed.try_acquire(&target(), 1.0).is_err());
    let kept: Vec<(String, bool)> = mixed
        .snapshot()
        .into_iter()
        .map(|s| (s.name, s.in_redis))
        .collect();
    assert_eq!(kept, [("api".into(), true), ("local".into(), false)]);
}

#[tokio::test]
async fn a_refusal_names_the_exact_wait_on_redis_clock() {
    let Some((a, b)) = two_rejecting("refusal", "1/s burst 1").await else {
        return;
    };
    let p = admit(&a).await.unwrap();
    assert!(p.available() < 0.1, "{}", p.available());
    let e = admit(&b).await.unwrap_err();
    let wait = e.as_rate_limited().expect("refused").retry_after();
    assert!(
        wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_retry_after_in_one_process_holds_the_other() {
    let Some((a, b)) = two_rejecting("defer", "100/s burst 10").await else {
        return;
    };
    let p = admit(&a).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("2"));
    let signal = p.observe(StatusCode::TOO_MANY_REQUESTS, &headers);
    assert_eq!(signal.retry_after, Some(Duration::from_secs(2)));
    // This process holds it at once, before Redis has heard.
    let e = admit(&a).await.unwrap_err();
    assert!(e.as_rate_limited().unwrap().retry_after() > Duration::from_millis(1500));
    // Redis hears in the background; the other process is then held too.
    let bucket = b.source("api").unwrap().redis_bucket().unwrap();
    let mut heard = false;
    for _ in 0..100 {
        if bucket.available().await.unwrap() < 1.0 {
            heard = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(heard, "Redis never heard of the deferral");
    let e = admit(&b).await.unwrap_err();
    let wait = e.as_rate_limited().unwrap().retry_after();
    assert!(
        wait > Duration::from_millis(1000) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
}

/// A `Retry-After` date centuries ahead, with the signal cap raised to let
/// it through, holds both processes with a refusal: Redis never answers
/// with a time it cannot read, so no process fails closed (or open).
#[tokio::test]
async fn a_retry_after_centuries_ahead_is_a_refusal_everywhere() {
    let Some(s) = stores("centuries", 2).await else {
        return;
    };
    let build = |store: &RedisStore| {
        Registry::builder()
            .source(
                Source::new("api")
                    .limit(policy("100/s burst 10"))
                    .host("api.test")
                    .on_limit(OnLimit::Reject),
            )
            .signals(SignalConfig::default().with_max_wait(Duration::MAX))
            .redis(store.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(&s[0]), build(&s[1]));
    let p = admit(&a).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "retry-after",
        HeaderValue::from_static("Mon, 31 Dec 2700 23:59:59 GMT"),
    );
    let signal = p.observe(StatusCode::TOO_MANY_REQUESTS, &headers);
    assert!(signal.retry_after.unwrap() > Duration::from_secs(600 * 365 * 86_400));
    let bucket = b.source("api").unwrap().redis_bucket().unwrap();
    let mut heard = false;
    for _ in 0..100 {
        // Old code: the deferral makes every call a store error.
        if !matches!(bucket.available().await, Ok(t) if t >= 1.0) {
            heard = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(heard, "Redis never heard of the deferral");
    let century = Duration::from_secs(99 * 365 * 86_400);
    for r in [&a, &b] {
        match admit(r).await {
            Err(e) if e.is_rate_limited() => {
                assert!(e.retry_after().unwrap() > century, "{e:?}")
            }
            other => panic!("{other:?} inside a deferral to 2700"),
        }
    }
    assert!(bucket.available().await.unwrap() < 1.0);
    assert!(!bucket.is_on_fallback());
}

#[tokio::test]
async fn a_dropped_waiter_gives_its_slot_back_to_everyone() {
    let Some(s) = stores("refund", 2).await else {
        return;
    };
    let (a, b) = (
        registry(&s[0], Source::new("api").limit(policy("1/s burst 1"))),
        registry(
            &s[1],
            Source::new("api")
                .limit(policy("1/s burst 1"))
                .on_limit(OnLimit::Reject),
        ),
    );
    let _first = admit(&a).await.unwrap();
    // A waits for the next slot (about 1 s away), then gives up.
    let waited = tokio::time::timeout(Duration::from_millis(300), admit(&a)).await;
    assert!(waited.is_err(), "the slot came too early");
    // The refund runs in the background; B then sees the first slot again,
    // not the one after the abandoned reservation.
    let mut wait = Duration::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        match admit(&b).await {
            Ok(_) => panic!("admitted before the first slot"),
            Err(e) => wait = e.as_rate_limited().unwrap().retry_after(),
        }
        if wait < Duration::from_millis(800) {
            break;
        }
    }
    assert!(wait < Duration::from_millis(800), "{wait:?}");
}

#[tokio::test]
async fn several_limits_are_taken_in_one_call() {
    let Some(s) = stores("limits", 2).await else {
        return;
    };
    let source = || {
        Source::new("api")
            .limit(policy("10/s burst 5"))
            .limit(policy("6/min burst 6"))
            .on_limit(OnLimit::Reject)
    };
    let (a, b) = (registry(&s[0], source()), registry(&s[1], source()));
    let start = Instant::now();
    let mut admitted = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        for r in [&a, &b] {
            if admit(r).await.is_ok() {
                admitted += 1;
            }
        }
    }
    // The per-second limit's burst of 5, one more at its rate, then the
    // per-minute limit's burst of 6 is spent: its next token is 10 s away.
    assert_eq!(admitted, 6);
    let e = admit(&a).await.unwrap_err();
    assert!(e.as_rate_limited().unwrap().retry_after() > Duration::from_secs(8));
}

#[tokio::test]
async fn a_policy_change_applies_to_redis_admissions() {
    let Some(s) = stores("policy", 1).await else {
        return;
    };
    let r = registry(
        &s[0],
        Source::new("api")
            .limit(policy("100/s burst 1"))
            .on_limit(OnLimit::Reject),
    );
    r.set_policy("api", policy("2/s burst 1")).unwrap();
    let _first = admit(&r).await.unwrap();
    let e = admit(&r).await.unwrap_err();
    let wait = e.as_rate_limited().unwrap().retry_after();
    assert!(wait > Duration::from_millis(400), "{wait:?}");
}

#[tokio::test]
async fn per_host_sets_and_client_keys_get_keys_of_their_own() {
    let Some(s) = stores("hosts", 1).await else {
        return;
    };
    let url = redis_env::redis_url("hosts").unwrap();
    let r = Registry::builder()
        .source(
            Source::new("api")
                .limit(policy("1/min burst 1"))
                .host("*.test")
                .per_host()
                .on_limit(OnLimit::Reject),
        )
        .redis(s[0].clone())
        .build()
        .unwrap();
    let at = |h: &'static str| Target::new(h, None, "/");
    for host in ["a.test", "b.test"] {
        match r.admit(&at(host), 1.0).unwrap() {
            Admission::Wait(w) => {
                assert_eq!(w.await.unwrap().host(), Some(host));
            }
            Admission::Ready(_) => panic!("Redis decides"),
        }
    }
    let Admission::Wait(w) = r.admit(&at("a.test"), 1.0).unwrap() else {
        panic!()
    };
    assert!(w.await.is_err(), "a.test has spent its token");
    // A client key with braces still makes one hash tag.
    let handle = r.source("api").unwrap();
    for _ in 0..2 {
        if let Admission::Wait(w) = handle.admit_key("{evil}:key", 1.0).unwrap() {
            let _ = w.await;
        }
    }
    let mut raw = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{}*", s[0].prefix()))
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut keys: Vec<&str> = keys
        .iter()
        .map(|k| k.strip_prefix(s[0].prefix()).unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["{api/%7Bevil%7D:key}:0", "{api/a.test}:0", "{api/b.test}:0"]
    );
}

#[tokio::test]
async fn the_tower_layer_admits_through_redis() {
    let Some(s) = stores("tower", 2).await else {
        return;
    };
    let source = || Source::new("api").limit(policy("10/s burst 1"));
    let (a, b) = (registry(&s[0], source()), registry(&s[1], source()));
    let service = |r: Registry| {
        tower::ServiceBuilder::new()
            .layer(tollgate::tower::RateLimitLayer::new(r))
            // Not always ready: at most one request inside at once.
            .concurrency_limit(1)
            .service_fn(|_req: http::Request<()>| async {
                Ok::<_, Infallible>(http::Response::new(()))
            })
    };
    let start = Instant::now();
    let run = |r: Registry| async move {
        let mut svc = service(r);
        for _ in 0..5 {
            let req = http::Request::get("http://api.test/v1").body(()).unwrap();
            svc.ready().await.unwrap().call(req).await.unwrap();
        }
    };
    tokio::join!(run(a), run(b));
    // Ten requests at 10/s from a bucket of one, shared: 0.9 s at least.
    assert!(
        start.elapsed() >= Duration::from_millis(850),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn fail_modes_hold_through_the_registry() {
    let Some(_) = redis_env::redis_url("fail_modes") else {
        return;
    };
    let mut server = redis_env::PrivateRedis::start(redis_env::free_port());
    let store = RedisStore::builder(server.url())
        .prefix(redis_env::unique_prefix("fail_modes"))
        .timeout(Duration::from_millis(100))
        .probe_every(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let r = Registry::builder()
        .source(
            Source::new("closed")
                .limit(policy("100/s"))
                .host("closed.test")
                .on_store_error(OnStoreError::FailClosed),
        )
        .source(
            Source::new("open")
                .limit(policy("100/s"))
                .host("open.test")
                .on_store_error(OnStoreError::FailOpen),
        )
        .redis(store)
        .build()
        .unwrap();
    let admit_at = |host: &'static str| {
        let r = r.clone();
        async move {
            match r.admit(&Target::new(host, None, "/"), 1.0)? {
                Admission::Ready(p) => Ok(p),
                Admission::Wait(w) => w.await,
            }
        }
    };
    drop(admit_at("closed.test").await.unwrap());
    server.stop();
    let t = Instant::now();
    assert!(matches!(
        admit_at("closed.test").await,
        Err(e) if e.kind() == ErrorKind::Store
    ));
    drop(admit_at("open.test").await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn sources_that_need_synchronous_checks_are_refused_on_redis() {
    let Some(s) = stores("refused", 1).await else {
        return;
    };
    let build = |source: Source| {
        Registry::builder()
            .source(source.limit(policy("1/s")).host("api.test"))
            .redis(s[0].clone())
            .build()
            .unwrap_err()
            .to_string()
    };
    let e = build(Source::new("api").shadow());
    assert!(
        e.contains("source `api`") && e.contains("shadow mode"),
        "{e}"
    );
    let e = build(Source::new("api").lanes(Lanes::default()));
    assert!(e.contains("lanes") && e.contains("in_process"), "{e}");
    let e = build(Source::new("a{b}"));
    assert!(e.contains("`{`"), "{e}");
    // In process, both build.
    Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::unlimited())
                .shadow()
                .in_process()
                .host("api.test"),
        )
        .redis(s[0].clone())
        .build()
        .unwrap();
}

#[tokio::test]
async fn every_set_of_a_source_fails_over_together() {
    let Some(_) = redis_env::redis_url("fail_over_together") else {
        return;
    };
    let server = redis_env::PrivateRedis::start(redis_env::free_port());
    let store = RedisStore::builder(server.url())
        .prefix(redis_env::unique_prefix("fail_over_together"))
        .timeout(Duration::from_secs(1))
        .probe_every(Duration::from_secs(30))
        .on_store_error(OnStoreError::FailOpen)
        .connect()
        .await
        .unwrap();
    let r = Registry::builder()
        .source(
            Source::new("api")
                .limit(policy("100/s"))
                .host("*.test")
                .per_host(),
        )
        .redis(store)
        .build()
        .unwrap();
    let admit_at = |host: &'static str| {
        let r = r.clone();
        async move {
            let t = Instant::now();
            let Admission::Wait(w) = r.admit(&Target::new(host, None, "/"), 1.0).unwrap() else {
                panic!("Redis decides")
            };
            drop(w.await.unwrap());
            t.elapsed()
        }
    };
    admit_at("a.test").await;
    // Redis stops answering (without closing the connection).
    let mut raw = ::redis::Client::open(server.url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = ::redis::cmd("CLIENT")
        .arg(&["PAUSE", "3000", "ALL"])
        .query_async(&mut raw)
        .await
        .unwrap();
    // The first call waits out the timeout, then fails open...
    let first = admit_at("b.test").await;
    assert!(first >= Duration::from_millis(900), "{first:?}");
    // ...and a new host's set of the same source knows at once.
    let next = admit_at("c.test").await;
    assert!(next < Duration::from_millis(500), "{next:?}");
}

/// A per-host set on `OnStoreError::Local` takes no tokens in its local
/// buckets while Redis is up, so it looked idle; a sweep during an outage
/// dropped it, and the host's next set came with a full fallback: a second
/// request inside a host's "1/h". A set whose fallback holds tokens, or
/// whose store has failed, is kept.
#[tokio::test]
async fn a_sweep_during_an_outage_never_refills_a_fallback() {
    let Some(_) = redis_env::redis_url("sweep_outage") else {
        return;
    };
    let mut server = redis_env::PrivateRedis::start(redis_env::free_port());
    let store = RedisStore::builder(server.url())
        .prefix(redis_env::unique_prefix("sweep_outage"))
        .timeout(Duration::from_millis(100))
        .probe_every(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let r = Registry::builder()
        .source(
            Source::new("api")
                .limit(policy("1/h"))
                .host("*.test")
                .per_host()
                .on_limit(OnLimit::Reject)
                .on_store_error(OnStoreError::Local { divide_by: 1 }),
        )
        .max_hosts(2)
        .redis(store)
        .build()
        .unwrap();
    let admit_at = |host: String| {
        let r = r.clone();
        async move {
            match r.admit(&Target::new(&host, None, "/"), 1.0)? {
                Admission::Ready(p) => Ok(p),
                Admission::Wait(w) => w.await,
            }
        }
    };
    let a = || "a.test".to_string();
    let b = || "b.test".to_string();
    drop(admit_at(a()).await.unwrap());
    server.stop();
    // Redis is down. It refused a.test until its next token, an hour away:
    // a.test's set knows, and refuses without a fallback. b.test's fallback
    // admits one (its burst), then refuses.
    assert!(matches!(admit_at(a()).await, Err(e) if e.kind() == ErrorKind::RateLimited));
    drop(admit_at(b()).await.unwrap());
    assert!(matches!(admit_at(b()).await, Err(e) if e.kind() == ErrorKind::RateLimited));
    // Other hosts fill the table; sweeps run (at most one per 10 ms).
    for i in 0..10 {
        let _ = admit_at(format!("h{i}.test")).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for _ in 0..3 {
        for host in [a(), b()] {
            assert!(
                matches!(admit_at(host.clone()).await, Err(e) if e.kind() == ErrorKind::RateLimited),
                "a second request inside {host}'s 1/h"
            );
        }
    }
}
