//! The bucket contract (`tests/common/conformance.rs`) on the local store:
//! a `TokenBucket` for one limit, a registry source for several, on paused
//! tokio time (so every answer is exact). `tests/redis_conformance.rs` runs
//! the same cases on Redis.

use std::time::Duration;

#[path = "common/conformance.rs"]
mod conformance;

use conformance::{Bucket, Limits, Store};
use tollgate::{
    Clock, Error, Policy, Registry, Reservation, Source, SourceHandle, TokenBucket, TokioClock,
};

struct Local;

struct One(TokenBucket<TokioClock>);

struct Many {
    registry: Registry,
    source: SourceHandle,
}

impl Store for Local {
    type One = One;
    type Many = Many;

    async fn one(&self, policy: Policy) -> One {
        One(TokenBucket::with_clock(policy, TokioClock::new()))
    }

    async fn many(&self, policies: &[Policy]) -> Many {
        let source = policies.iter().fold(Source::new("s"), |s, p| s.limit(*p));
        let registry = Registry::builder()
            .clock(TokioClock::new())
            .source(source)
            .build()
            .unwrap();
        let source = registry.source("s").unwrap();
        Many { registry, source }
    }
}

impl Bucket for One {
    type Res<'a> = (u64, Reservation<'a, TokioClock>);

    async fn now(&self) -> u64 {
        self.0.clock().now().as_nanos()
    }

    async fn try_acquire(&self, tokens: f64) -> Result<u64, Error> {
        let now = self.now().await;
        self.0.try_acquire(tokens).map(|()| now)
    }

    async fn reserve<'a>(
        &'a self,
        tokens: f64,
        max_wait: Duration,
    ) -> Result<Self::Res<'a>, Error> {
        let now = self.now().await;
        Ok((now, self.0.reserve(tokens, max_wait)?))
    }

    fn slot(r: &Self::Res<'_>) -> u64 {
        r.1.ready_at().as_nanos()
    }

    fn issued(r: &Self::Res<'_>) -> u64 {
        r.0
    }

    fn commit(r: Self::Res<'_>) {
        r.1.commit();
    }

    async fn cancel(r: Self::Res<'_>) -> f64 {
        r.1.cancel()
    }

    async fn wait(r: Self::Res<'_>) {
        r.1.wait().await;
    }

    async fn defer_for(&self, wait: Duration) {
        self.0.defer_for(wait);
    }

    async fn set_policy(&self, policy: Policy) {
        self.0.set_policy(policy);
    }

    async fn available(&self) -> f64 {
        self.0.available()
    }
}

impl Limits for Many {
    async fn now(&self) -> u64 {
        self.registry.clock().now().as_nanos()
    }

    async fn try_acquire(&self, tokens: f64) -> Result<u64, Error> {
        self.source
            .try_acquire(tokens)
            .map(|p| p.admitted_at().as_nanos())
    }

    async fn acquire(&self, tokens: f64) -> u64 {
        self.source
            .acquire(tokens)
            .await
            .unwrap()
            .admitted_at()
            .as_nanos()
    }

    async fn available(&self) -> f64 {
        self.source.available()
    }
}

conformance_suite!(#[tokio::test(start_paused = true)] => Some(Local));
