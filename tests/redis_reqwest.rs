//! The reqwest middleware over a source kept in Redis: a 429 with
//! `Retry-After` answered to one client (one process) holds back another
//! client with a registry of its own, because the deferral reaches Redis.
//! Real time over loopback.
#![cfg(all(feature = "redis", feature = "reqwest"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/redis.rs"]
mod redis_env;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tollgate::redis::RedisStore;
use tollgate::reqwest::RateLimitMiddleware;
use tollgate::{Registry, Source};

/// An upstream that answers its first request 429 with `Retry-After: 1`,
/// and 200 after that.
async fn upstream() -> SocketAddr {
    let calls = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/",
        get(move || {
            let calls = calls.clone();
            async move {
                let mut headers = HeaderMap::new();
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    headers.insert("retry-after", "1".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, headers)
                } else {
                    (StatusCode::OK, headers)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(store: RedisStore) -> ClientWithMiddleware {
    let registry = Registry::builder()
        .source(
            Source::new("upstream")
                .limit("100/s burst 10".parse().unwrap())
                .host("127.0.0.1"),
        )
        .redis(store)
        .build()
        .unwrap();
    ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(registry))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_seen_by_one_client_holds_back_another() {
    let Some(url) = redis_env::redis_url("redis_reqwest") else {
        return;
    };
    let prefix = redis_env::unique_prefix("redis_reqwest");
    let addr = upstream().await;
    let a = client(redis_env::connect(&url, &prefix).await);
    let b = client(redis_env::connect(&url, &prefix).await);
    let uri = format!("http://{addr}/");

    let first = a.get(&uri).send().await.unwrap();
    assert_eq!(first.status(), 429);
    let told = Instant::now();
    // B has seen nothing itself; its registry asks Redis, which heard A's
    // deferral (within a few milliseconds: the note goes in the background).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = b.get(&uri).send().await.unwrap();
    assert_eq!(second.status(), 200);
    let held = told.elapsed();
    assert!(
        held >= Duration::from_millis(900) && held < Duration::from_secs(3),
        "{held:?}"
    );
}
