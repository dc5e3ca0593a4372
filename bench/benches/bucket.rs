//! The bucket's fast paths side by side with the limiters a user would pick
//! instead, in one run: `cargo bench -p tollgate-bench --bench bucket`.
//!
//! allow: a limit the loop never reaches; deny: an empty bucket refilling
//! once an hour. Each limiter reads its own default clock.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::Clock as _;
use tollgate::{Clock, FastClock, MonotonicClock, Policy, TokenBucket, TokioClock};

fn allow(c: &mut Criterion) {
    let mut g = c.benchmark_group("allow");
    let tollgate = TokenBucket::new(Policy::new(1e9, 1e9).unwrap());
    g.bench_function("tollgate try_acquire", |b| {
        b.iter(|| black_box(tollgate.try_acquire(black_box(1.0))).is_ok())
    });
    let quota = governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000_000).unwrap());
    let gov = governor::RateLimiter::direct(quota);
    g.bench_function("governor check", |b| {
        b.iter(|| black_box(gov.check()).is_ok())
    });
    let rl = ratelimit::Ratelimiter::builder(1_000_000_000)
        .max_tokens(u64::MAX / 2)
        .initial_available(u64::MAX / 2)
        .build()
        .unwrap();
    g.bench_function("ratelimit try_wait", |b| {
        b.iter(|| black_box(rl.try_wait()).is_ok())
    });
    let lb = leaky_bucket::RateLimiter::builder()
        .max(usize::MAX / 2)
        .initial(usize::MAX / 2)
        .refill(1_000_000)
        .interval(Duration::from_millis(1))
        .build();
    g.bench_function("leaky-bucket try_acquire", |b| {
        b.iter(|| black_box(lb.try_acquire(1)))
    });
    g.finish();
}

fn deny(c: &mut Criterion) {
    let mut g = c.benchmark_group("deny");
    let tollgate = TokenBucket::new(Policy::per_hour(1.0).unwrap());
    tollgate.try_acquire(1.0).unwrap();
    g.bench_function("tollgate try_acquire", |b| {
        b.iter(|| black_box(tollgate.try_acquire(black_box(1.0))).is_err())
    });
    let gov = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::new(1).unwrap()));
    let _ = gov.check();
    g.bench_function("governor check", |b| {
        b.iter(|| black_box(gov.check()).is_err())
    });
    let rl = ratelimit::Ratelimiter::builder(1)
        .period(Duration::from_secs(3600))
        .max_tokens(1)
        .build()
        .unwrap();
    g.bench_function("ratelimit try_wait", |b| {
        b.iter(|| black_box(rl.try_wait()).is_err())
    });
    let lb = leaky_bucket::RateLimiter::builder()
        .max(1)
        .initial(0)
        .refill(1)
        .interval(Duration::from_secs(3600))
        .build();
    g.bench_function("leaky-bucket try_acquire", |b| {
        b.iter(|| black_box(lb.try_acquire(1)))
    });
    g.finish();
}

fn clocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock now");
    let fast = FastClock::new();
    g.bench_function("tollgate FastClock (default)", |b| {
        b.iter(|| black_box(fast.now()))
    });
    g.bench_function("tollgate MonotonicClock", |b| {
        b.iter(|| black_box(MonotonicClock.now()))
    });
    let tokio_clock = TokioClock::new();
    g.bench_function("tollgate TokioClock", |b| {
        b.iter(|| black_box(tokio_clock.now()))
    });
    g.bench_function("std Instant", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    let quanta = governor::clock::DefaultClock::default();
    g.bench_function("governor DefaultClock (quanta)", |b| {
        b.iter(|| black_box(quanta.now()))
    });
    g.finish();
}

fn sizes(_: &mut Criterion) {
    println!(
        "size_of: tollgate TokenBucket {} B, governor DefaultDirectRateLimiter {} B",
        std::mem::size_of::<TokenBucket>(),
        std::mem::size_of::<governor::DefaultDirectRateLimiter>(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = sizes, allow, deny, clocks
}
criterion_main!(benches);
