//! A server's word outlives every local change: a `Retry-After` deferral is
//! a floor under every slot that no policy change, slow-down, rescale from a
//! server quota, eviction or re-creation of a host set lowers; and a host's
//! new bucket set inherits the debt, the deferral and the server-lowered rate
//! it had.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;
use tollgate::{Permit, Policy, Registry, Source, Target, TokioClock};

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

fn registry(source: Source, max_hosts: usize) -> Registry {
    Registry::builder()
        .source(source)
        .clock(TokioClock::new())
        .max_hosts(max_hosts)
        .build()
        .unwrap()
}

fn target(host: &str) -> Target<'_> {
    Target::new(host, None, "/")
}

async fn go(r: &Registry, host: &str) -> Permit {
    r.acquire(&target(host), 1.0).await.unwrap()
}

fn retry_after_2s(p: &Permit) {
    p.observe(
        StatusCode::TOO_MANY_REQUESTS,
        &headers(&[("retry-after", "2")]),
    );
}

/// Runs `change` right after a `Retry-After: 2`, then times the next request.
async fn next_request_after(change: impl FnOnce(&Registry)) -> Duration {
    let r = registry(
        Source::new("api")
            .limit(Policy::per_second(10.0).unwrap())
            .host("api.test"),
        16,
    );
    let start = Instant::now();
    let p = go(&r, "api.test").await;
    retry_after_2s(&p);
    change(&r);
    let _ = go(&r, "api.test").await;
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn retry_after_survives_a_faster_quota_in_the_same_response() {
    let r = registry(
        Source::new("api")
            .limit(Policy::per_second(10.0).unwrap().burst(5.0).unwrap())
            .host("api.test"),
        16,
    );
    // A first answer lowers the rate to the server's quota ...
    let p = go(&r, "api.test").await;
    p.observe(
        StatusCode::OK,
        &headers(&[("ratelimit-policy", "\"burst\";q=1;w=10")]),
    );
    let start = Instant::now();
    // ... and a 429 with `Retry-After` announces a faster one again.
    let p = go(&r, "api.test").await;
    p.observe(
        StatusCode::TOO_MANY_REQUESTS,
        &headers(&[
            ("retry-after", "2"),
            ("ratelimit-policy", "\"burst\";q=100;w=1"),
        ]),
    );
    let _ = go(&r, "api.test").await;
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "went {:?} after a Retry-After of 2 s",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_survives_a_change_to_unlimited() {
    let waited = next_request_after(|r| r.set_policy("api", Policy::unlimited()).unwrap()).await;
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_survives_a_faster_policy() {
    let waited = next_request_after(|r| {
        r.set_limits("api", vec![Policy::per_second(1000.0).unwrap()])
            .unwrap()
    })
    .await;
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_survives_a_slow_down_and_its_end() {
    let waited = next_request_after(|r| {
        r.slow_down(0.5).unwrap();
        r.slow_down(1.0).unwrap();
    })
    .await;
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
}

/// A per-host source with room for one host set: `busy.test` holds it, so
/// `late.test` is served by the overflow set until a sweep frees the room.
fn crowded() -> Registry {
    registry(
        Source::new("hosts")
            .limit(Policy::per_second(1.0).unwrap().burst(3.0).unwrap())
            .host("*.test")
            .per_host(),
        1,
    )
}

#[tokio::test(start_paused = true)]
async fn a_host_promoted_from_the_overflow_set_keeps_its_deferral() {
    let r = crowded();
    let start = Instant::now();
    drop(go(&r, "busy.test").await); // takes the only host set (not full)
    let p = go(&r, "late.test").await;
    assert_eq!(p.host(), None, "served by the overflow set");
    p.observe(
        StatusCode::TOO_MANY_REQUESTS,
        &headers(&[("retry-after", "30")]),
    );
    tokio::time::advance(Duration::from_secs(5)).await; // busy.test is full and idle again
    let p = go(&r, "late.test").await;
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "went at {:?}, inside the server's Retry-After",
        start.elapsed()
    );
    drop(p);
}

#[tokio::test(start_paused = true)]
async fn a_host_promoted_from_the_overflow_set_does_not_spend_its_burst_twice() {
    let r = crowded();
    drop(go(&r, "busy.test").await);
    for _ in 0..3 {
        assert_eq!(go(&r, "late.test").await.host(), None);
    }
    // busy.test refills to full while late.test's burst is spent.
    tokio::time::advance(Duration::from_millis(2_100)).await;
    let start = Instant::now();
    let mut admitted = 0;
    while r.try_acquire(&target("late.test"), 1.0).is_ok() {
        admitted += 1;
    }
    // 2.1 s at 1/s refilled two tokens of the three it spent, no more.
    assert!(
        admitted <= 2,
        "admitted {admitted} at once after spending its burst"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_host_set_keeps_a_rate_the_server_lowered() {
    let r = registry(
        Source::new("hosts")
            .limit(Policy::per_second(10.0).unwrap())
            .host("*.test")
            .per_host(),
        2,
    );
    let p = go(&r, "slow.test").await;
    // The server allows 1 request in 10 s: the set's rate drops well below 10/s.
    p.observe(
        StatusCode::OK,
        &headers(&[("ratelimit-policy", "\"default\";q=1;w=10")]),
    );
    drop(p);
    let lowered = rate_of(&r, "slow.test").expect("slow.test has a set");
    assert!(lowered < 1.0, "{lowered}");
    // Idle and full after a while; a flood of other hosts sweeps the table.
    tokio::time::advance(Duration::from_secs(60)).await;
    for i in 0..20 {
        let _ = go(&r, &format!("h{i}.test")).await;
        tokio::time::advance(Duration::from_millis(20)).await;
    }
    let _ = go(&r, "slow.test").await;
    let start = Instant::now();
    let _ = go(&r, "slow.test").await;
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "the second request went after {:?}: the server's lower rate was forgotten",
        start.elapsed()
    );
}

fn rate_of(r: &Registry, host: &str) -> Option<f64> {
    r.snapshot()[0]
        .buckets
        .iter()
        .find(|b| b.host.as_deref() == Some(host))
        .map(|b| b.limits[0].tokens_per_second())
}
