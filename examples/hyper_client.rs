//! A hyper-util client behind tollgate: retry → rate limit → timeout → client.
//!
//! `cargo run --example hyper_client` starts a small server on 127.0.0.1
//! that answers its first request with `429 Retry-After: 1`, then sends ten
//! requests through a 4/s source: the retry waits out the server's second,
//! and the rest go at the source's pace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tollgate::tower::{RateLimitLayer, RetryPolicy};
use tollgate::{Policy, Registry, Source, UnknownHost};
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

/// A loopback server: 429 with `Retry-After: 1` for the first request, then 200.
async fn serve() -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .header("retry-after", "1")
                    .body(axum::body::Body::from("slow down"))
                    .unwrap()
            } else {
                Response::new(axum::body::Body::from(format!("answer {n}")))
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = serve().await?;
    let registry = Registry::builder()
        .source(
            Source::new("local-api")
                .limit(Policy::per_second(4.0)?)
                .host(addr.to_string()),
        )
        .unknown_hosts(UnknownHost::Reject)
        .build()?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::default()))
        .layer(RateLimitLayer::new(registry.clone()))
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        // The retry replays `Full<Bytes>` bodies, so requests go as they are.
        .service(client);

    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let svc = svc.clone();
            let uri = format!("http://{addr}/items/{i}");
            tokio::spawn(async move {
                let request = Request::get(uri).body(Full::new(Bytes::new()))?;
                let response = svc.oneshot(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, tower::BoxError>((i, status, body, start.elapsed()))
            })
        })
        .collect();
    for t in tasks {
        let (i, status, body, took) = t.await??;
        println!(
            "request {i}: {status} {:?} after {:>6.1} ms",
            String::from_utf8_lossy(&body),
            took.as_secs_f64() * 1e3
        );
    }
    let snapshot = &registry.snapshot()[0];
    let limits: Vec<String> = snapshot.limits.iter().map(ToString::to_string).collect();
    println!("source {}: limits {limits:?}", snapshot.name);
    Ok(())
}
