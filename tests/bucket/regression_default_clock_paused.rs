//! The default clock under `#[tokio::test(start_paused = true)]`, the way
//! users test: a wait for a slot takes its own length of virtual time, not
//! thousands of seconds.

use std::time::Duration;

use tokio::time::Instant;
use tollgate::{Policy, Registry, Source, Target, TokenBucket};

fn within(elapsed: Duration, expected: Duration) -> bool {
    // tokio's timer rounds a sleep up to the next millisecond.
    elapsed >= expected && elapsed <= expected + Duration::from_millis(2)
}

#[tokio::test(start_paused = true)]
async fn a_wait_on_the_default_clock_takes_its_own_length_of_paused_time() {
    let bucket = TokenBucket::new(Policy::per_second(5.0).unwrap());
    let start = Instant::now();
    bucket.acquire(1.0).await.unwrap();
    bucket.acquire(1.0).await.unwrap();
    assert!(
        within(start.elapsed(), Duration::from_millis(200)),
        "{:?}",
        start.elapsed()
    );
    for _ in 0..9 {
        bucket.acquire(1.0).await.unwrap();
    }
    assert!(
        within(start.elapsed(), Duration::from_secs(2)),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_on_the_default_clock_does_not_stretch_paused_time() {
    let bucket = TokenBucket::new(Policy::per_second(5.0).unwrap());
    let start = Instant::now();
    bucket.acquire(1.0).await.unwrap();
    // Give up on a wait half-way.
    let _ = tokio::time::timeout(Duration::from_millis(100), bucket.acquire(1.0)).await;
    bucket.acquire(1.0).await.unwrap();
    assert!(
        within(start.elapsed(), Duration::from_millis(200)),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_registry_on_the_default_clock_paces_paused_time() {
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::per_second(10.0).unwrap())
                .host("api.test"),
        )
        .build()
        .unwrap();
    let start = Instant::now();
    for _ in 0..11 {
        let _ = registry
            .acquire(&Target::new("api.test", None, "/"), 1.0)
            .await
            .unwrap();
    }
    assert!(
        within(start.elapsed(), Duration::from_secs(1)),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn try_acquire_on_the_default_clock_sees_paused_time_advance() {
    let bucket = TokenBucket::new(Policy::per_second(2.0).unwrap());
    bucket.try_acquire(1.0).unwrap();
    let wait = bucket
        .try_acquire(1.0)
        .unwrap_err()
        .as_rate_limited()
        .unwrap()
        .retry_after();
    assert!(wait <= Duration::from_millis(500), "{wait:?}");
    tokio::time::sleep(wait).await;
    bucket.try_acquire(1.0).unwrap();
}
