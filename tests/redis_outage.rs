//! Redis stopped mid-run and started again: each `OnStoreError` mode does
//! what it says while Redis is down, no call hangs past its timeout, a
//! warning marks each switch, and every bucket is back on Redis by itself
//! within a second of Redis answering again.
//!
//! The test runs its own `redis-server` on a free port (it needs the binary
//! and, like every Redis test, runs where `tests/common/redis.rs` finds a
//! server).
#![cfg(feature = "redis")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/redis.rs"]
mod redis_env;

use tollgate::redis::{OnStoreError, RedisBucket, RedisStore};
use tollgate::{Error, Policy};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Counts tollgate's warnings and infos.
#[derive(Default)]
struct Events {
    warn: AtomicUsize,
    info: AtomicUsize,
}

struct Counter(Arc<Events>);

impl Subscriber for Counter {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("tollgate")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        match *e.metadata().level() {
            Level::WARN => self.0.warn.fetch_add(1, Ordering::Relaxed),
            Level::INFO => self.0.info.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

const TIMEOUT: Duration = Duration::from_millis(100);

async fn bucket(url: &str, prefix: &str, name: &str, mode: OnStoreError) -> RedisBucket {
    RedisStore::builder(url)
        .prefix(prefix)
        .timeout(TIMEOUT)
        .probe_every(Duration::from_millis(100))
        .on_store_error(mode)
        .connect()
        .await
        .unwrap()
        .bucket(name, &[Policy::new(2.0, 10.0).unwrap()])
        .unwrap()
}

/// Takes the burst of 2 from Redis, then is refused by Redis.
async fn on_redis(b: &RedisBucket) {
    for _ in 0..2 {
        assert!(b.try_acquire(1.0).await.unwrap().by_redis(), "{b:?}");
    }
    assert!(matches!(
        b.try_acquire(1.0).await,
        Err(Error::RateLimited(_))
    ));
    assert!(!b.is_on_fallback());
}

#[tokio::test]
async fn each_fail_mode_does_what_it_says_and_recovers_within_a_second() {
    if redis_env::redis_url("outage").is_none() {
        return;
    }
    let events = Arc::new(Events::default());
    let _guard = tracing::subscriber::set_default(Counter(events.clone()));
    let mut server = redis_env::PrivateRedis::start(redis_env::free_port());
    let (url, prefix) = (server.url(), redis_env::unique_prefix("outage"));
    let open = bucket(&url, &prefix, "open", OnStoreError::FailOpen).await;
    let closed = bucket(&url, &prefix, "closed", OnStoreError::FailClosed).await;
    let local = bucket(&url, &prefix, "local", OnStoreError::Local { divide_by: 2 }).await;
    let all = [&open, &closed, &local];
    for b in all {
        on_redis(b).await;
    }

    server.stop();
    let down = Instant::now();
    let mut local_admitted = 0;
    while down.elapsed() < Duration::from_millis(600) {
        for b in all {
            let call = Instant::now();
            let got = b.try_acquire(1.0).await;
            assert!(
                call.elapsed() < TIMEOUT + Duration::from_millis(150),
                "{:?}",
                call.elapsed()
            );
            match (b.on_store_error(), got) {
                (OnStoreError::FailOpen, Ok(a)) => assert!(!a.by_redis()),
                (OnStoreError::FailClosed, Err(Error::Store { message })) => {
                    assert!(message.contains("closed"), "{message}")
                }
                (OnStoreError::Local { .. }, Ok(a)) => {
                    assert!(!a.by_redis());
                    local_admitted += 1;
                }
                (OnStoreError::Local { .. }, Err(Error::RateLimited(_))) => {}
                (mode, other) => panic!("{mode:?} answered {other:?} while Redis is down"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The local fallback: burst 2, rate 10/s divided by 2.
    let most = 2.0 + 5.0 * down.elapsed().as_secs_f64() + 1.0;
    assert!(
        (2..=most as usize).contains(&local_admitted),
        "{local_admitted}"
    );
    let waited = Instant::now();
    assert!(!local.acquire(1.0).await.unwrap().by_redis());
    assert!(
        waited.elapsed() < Duration::from_millis(400),
        "waits on the local bucket"
    );
    for b in all {
        assert!(b.is_on_fallback(), "{b:?}");
    }
    assert_eq!(
        events.warn.load(Ordering::Relaxed),
        3,
        "one warning per switch"
    );

    let server = redis_env::PrivateRedis::start(server.port);
    let up = Instant::now();
    let mut back = [None; 3];
    while back.iter().any(Option::is_none) && up.elapsed() < Duration::from_secs(3) {
        for (i, b) in all.iter().enumerate() {
            if back[i].is_none() {
                let _ = b.try_acquire(1.0).await;
                if !b.is_on_fallback() {
                    back[i] = Some(up.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("back on Redis after {back:?} (open, closed, local)");
    for (b, at) in all.iter().zip(back) {
        let at = at.unwrap_or_else(|| panic!("{b:?} did not come back"));
        assert!(at < Duration::from_secs(1), "{b:?} came back after {at:?}");
    }
    assert_eq!(
        events.info.load(Ordering::Relaxed),
        3,
        "one info per way back"
    );
    // The restarted server kept nothing (and has no script): fresh buckets.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for b in all {
        on_redis(b).await;
    }
    drop(server);
}
