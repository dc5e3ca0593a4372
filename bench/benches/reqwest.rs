//! Requests per second through `ClientWithMiddleware` with tollgate's
//! middleware (at a limit it never reaches) against the same client without
//! it, same loopback server, one run: `cargo bench -p tollgate-bench --bench reqwest`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tollgate::reqwest::RateLimitMiddleware;
use tollgate::{Policy, Registry, Source};

fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let url = format!("http://{addr}/item");
    let registry = Registry::builder()
        .source(
            Source::new("local")
                .limit(Policy::new(1e9, 1e9).unwrap())
                .host(addr.to_string()),
        )
        .build()
        .unwrap();
    let bare: ClientWithMiddleware = ClientBuilder::new(reqwest::Client::new()).build();
    let limited: ClientWithMiddleware = ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(registry))
        .build();

    let mut g = c.benchmark_group("reqwest request");
    g.throughput(Throughput::Elements(1));
    for (name, client) in [
        ("without middleware", &bare),
        ("with RateLimitMiddleware", &limited),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let resp = client.get(&url).send().await.unwrap();
                        assert!(resp.status().is_success());
                        resp.bytes().await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = requests
}
criterion_main!(benches);
