//! Reading server signals: the pre-check every response passes through,
//! and a full read of common shapes: `cargo bench -p tollgate-bench --bench signal`.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, StatusCode};
use tollgate::signal::may_signal;
use tollgate::{Signal, SignalConfig};

fn headers(extra: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let common = [
        ("content-type", "application/json; charset=utf-8"),
        ("content-length", "1432"),
        ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("server", "nginx"),
        ("cache-control", "private, max-age=60"),
        ("etag", "\"5f3a-1b2c\""),
        ("vary", "Accept-Encoding"),
        ("x-request-id", "0b1c2d3e"),
    ];
    for (k, v) in common.iter().chain(extra) {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

fn signals(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let config = SignalConfig::default();
    let plain = headers(&[]);
    let github = headers(&[
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "4987"),
        ("x-ratelimit-used", "13"),
        ("x-ratelimit-reset", "1700000300"),
        ("x-ratelimit-resource", "core"),
    ]);
    let ietf = headers(&[
        (
            "ratelimit-policy",
            "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400",
        ),
        ("ratelimit", "\"burst\";r=50;t=30"),
    ]);
    let mut g = c.benchmark_group("signal");
    g.bench_function("may_signal, 200 without rate-limit headers", |b| {
        b.iter(|| may_signal(black_box(StatusCode::OK), black_box(&plain)))
    });
    g.bench_function("may_signal, 200 with GitHub headers", |b| {
        b.iter(|| may_signal(black_box(StatusCode::OK), black_box(&github)))
    });
    g.bench_function("parse, GitHub headers", |b| {
        b.iter(|| Signal::parse(StatusCode::OK, black_box(&github), now, &config))
    });
    g.bench_function("parse, IETF RateLimit and RateLimit-Policy", |b| {
        b.iter(|| Signal::parse(StatusCode::OK, black_box(&ietf), now, &config))
    });
    g.finish();
}

criterion_group!(benches, signals);
criterion_main!(benches);
