//! The Redis store as the conformance suite's [`Store`]: fresh buckets of
//! one store (on one node or a cluster), with times read from the node
//! that holds each bucket. Used by `tests/redis_conformance.rs` and
//! `tests/redis_cluster.rs`.

#![allow(dead_code)]

use std::time::Duration;

use super::conformance::{Bucket, Limits, Store};
use super::redis_env;
use tollgate::redis::{RedisAdmission, RedisBucket, RedisReservation, RedisStore};
use tollgate::{Error, Policy};

pub struct Redis {
    store: RedisStore,
    next: std::sync::atomic::AtomicU32,
}

pub struct One {
    store: RedisStore,
    bucket: RedisBucket,
}

impl Redis {
    /// A store on the single node the tests use, or `None` to skip.
    pub async fn connect(test: &str) -> Option<Redis> {
        let url = redis_env::redis_url(test)?;
        let store = redis_env::connect(&url, &redis_env::unique_prefix(test)).await;
        Some(Redis::new(store))
    }

    /// A store on the cluster the tests use, or `None` to skip.
    pub async fn connect_cluster(test: &str) -> Option<Redis> {
        let urls = redis_env::redis_cluster_urls(test)?;
        let store = redis_env::connect_cluster(&urls, &redis_env::unique_prefix(test)).await;
        Some(Redis::new(store))
    }

    pub fn new(store: RedisStore) -> Redis {
        Redis {
            store,
            next: Default::default(),
        }
    }

    fn bucket(&self, policies: &[Policy]) -> One {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        One {
            store: self.store.clone(),
            bucket: self.store.bucket(&format!("b{n}"), policies).unwrap(),
        }
    }
}

fn by_redis(a: RedisAdmission) -> u64 {
    a.at()
        .expect("admitted by Redis, not a fallback")
        .as_nanos()
}

impl Store for Redis {
    type One = One;
    type Many = One;

    async fn one(&self, policy: Policy) -> One {
        self.bucket(&[policy])
    }

    async fn many(&self, policies: &[Policy]) -> One {
        self.bucket(policies)
    }
}

/// A refusal repeated without a round trip ends later than Redis's own by
/// the travel of the answer that taught it, as the local timer saw it arrive:
/// tens of microseconds on loopback, a few milliseconds seen on a loaded
/// machine. 50 ms is far below every interval the suite uses (250 ms and
/// up), so a wrong slot still fails.
const LATE: u64 = 50_000_000;

impl Bucket for One {
    const LATE: u64 = LATE;
    type Res<'a> = RedisReservation;

    async fn now(&self) -> u64 {
        // The clock of the bucket's node: on a cluster, each has its own.
        let name = self.bucket.name();
        self.store.time_of(name).await.unwrap().as_nanos()
    }

    async fn try_acquire(&self, tokens: f64) -> Result<u64, Error> {
        self.bucket.try_acquire(tokens).await.map(by_redis)
    }

    async fn reserve(&self, tokens: f64, max_wait: Duration) -> Result<RedisReservation, Error> {
        self.bucket.reserve(tokens, max_wait).await
    }

    fn slot(r: &RedisReservation) -> u64 {
        r.ready_at().unwrap().as_nanos()
    }

    fn issued(r: &RedisReservation) -> u64 {
        r.issued_at().unwrap().as_nanos()
    }

    fn commit(r: RedisReservation) {
        r.commit();
    }

    async fn cancel(r: Self::Res<'_>) -> f64 {
        r.cancel().await.unwrap()
    }

    async fn wait(r: Self::Res<'_>) {
        r.wait().await;
    }

    async fn defer_for(&self, wait: Duration) {
        self.bucket.defer_for(wait).await.unwrap();
    }

    async fn set_policy(&self, policy: Policy) {
        self.bucket.set_policies(&[policy]).await.unwrap();
    }

    async fn available(&self) -> f64 {
        self.bucket.available().await.unwrap()
    }
}

impl Limits for One {
    const LATE: u64 = LATE;
    async fn now(&self) -> u64 {
        Bucket::now(self).await
    }

    async fn try_acquire(&self, tokens: f64) -> Result<u64, Error> {
        Bucket::try_acquire(self, tokens).await
    }

    async fn acquire(&self, tokens: f64) -> u64 {
        by_redis(self.bucket.acquire(tokens).await.unwrap())
    }

    async fn available(&self) -> f64 {
        Bucket::available(self).await
    }
}
