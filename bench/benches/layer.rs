//! Per-call overhead of `RateLimitLayer` over a no-op service, beside the
//! bare service and tower's own `RateLimit` at a limit neither reaches, in
//! one run: `cargo bench -p tollgate-bench --bench layer`.
//!
//! Each iteration builds a request, polls the service ready, calls it and
//! polls the response future to completion (it is ready at once).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Uri;
use tollgate::tower::RateLimitLayer;
use tollgate::{Policy, Registry, Source};
use tollgate_bench::{call_once, Noop};
use tower::ServiceBuilder;

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let uri: Uri = "https://api.example.com/v1/items/42".parse().unwrap();
    let mut g = c.benchmark_group("call overhead");

    let mut bare = Noop;
    g.bench_function("bare service", |b| {
        b.iter(|| black_box(call_once(&mut bare, &uri)))
    });

    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::new(1e9, 1e9).unwrap())
                .host("api.example.com"),
        )
        .build()
        .unwrap();
    let mut limited = ServiceBuilder::new()
        .layer(RateLimitLayer::new(registry))
        .service(Noop);
    g.bench_function("tollgate RateLimitLayer", |b| {
        b.iter(|| black_box(call_once(&mut limited, &uri)))
    });

    let passing = Registry::builder().build().unwrap();
    let mut pass = ServiceBuilder::new()
        .layer(RateLimitLayer::new(passing))
        .service(Noop);
    g.bench_function("tollgate RateLimitLayer, unknown host passes", |b| {
        b.iter(|| black_box(call_once(&mut pass, &uri)))
    });

    let mut tower_limit = ServiceBuilder::new()
        .rate_limit(1_000_000_000, Duration::from_secs(1))
        .service(Noop);
    g.bench_function("tower RateLimit", |b| {
        b.iter(|| black_box(call_once(&mut tower_limit, &uri)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = layer
}
criterion_main!(benches);
