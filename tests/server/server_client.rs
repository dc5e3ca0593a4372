//! The crate's own client against its own server: a reqwest-middleware
//! client whose registry sets no limit of its own for the server's host
//! reads the guard's `RateLimit` and `Retry-After` headers, and so is never
//! refused once it has heard from the server. Real time over loopback;
//! assertions are on counts.
#![cfg(all(feature = "server", feature = "reqwest"))]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tollgate::reqwest::RateLimitMiddleware;
use tollgate::server::{tier, GuardLayer, HeaderKey};
use tollgate::{Registry, Source, UnknownHost};

async fn server() -> SocketAddr {
    let registry = Registry::builder()
        .source(tier("api").limit("5/s burst 5".parse().unwrap()))
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key").unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(guard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A client with no limit of its own for the server: only what the server
/// says slows it down.
fn client() -> ClientWithMiddleware {
    let registry = Registry::builder()
        .source(
            Source::new("own-server")
                .limit(tollgate::Policy::unlimited())
                .host("127.0.0.1"),
        )
        .unknown_hosts(UnknownHost::Reject)
        .build()
        .unwrap();
    ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(registry))
        .build()
}

/// Sends requests one after another for `run`; returns the statuses.
async fn hammer(
    client: &ClientWithMiddleware,
    addr: SocketAddr,
    key: &str,
    run: Duration,
) -> Vec<u16> {
    let start = Instant::now();
    let mut statuses = Vec::new();
    while start.elapsed() < run && statuses.len() < 1_000 {
        let resp = client
            .get(format!("http://{addr}/"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn a_client_that_reads_the_headers_is_not_refused() {
    let addr = server().await;
    let run = Duration::from_millis(2_500);
    let start = Instant::now();
    let seen = hammer(&client(), addr, "reader", run).await;
    let elapsed = start.elapsed().as_secs_f64();
    // `r=0;t=1` on the fifth success defers the client until the key's
    // bucket is full again: five a second, the whole quota, and no refusal.
    assert_eq!(count(&seen, 429), 0, "{seen:?}");
    let ok = count(&seen, 200);
    assert!(ok as f64 <= 5.0 + 5.0 * elapsed, "{ok} in {elapsed} s");
    assert!(ok >= 10, "{ok} in {elapsed} s: the client waited too long");
}

#[tokio::test]
async fn a_client_refused_once_is_not_refused_again() {
    let addr = server().await;
    // Someone else used the key's quota up.
    let plain = reqwest::Client::new();
    for _ in 0..5 {
        let r = plain
            .get(format!("http://{addr}/"))
            .header("x-api-key", "shared")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let seen = hammer(&client(), addr, "shared", Duration::from_millis(2_500)).await;
    // The first answer is a 429 with `Retry-After: 1`; the client defers
    // and is never refused again.
    assert_eq!(seen.first(), Some(&429), "{seen:?}");
    assert_eq!(count(&seen, 429), 1, "{seen:?}");
    assert!(count(&seen, 200) >= 5, "{seen:?}");
}

mod in_process {
    //! The guard's answers read by the client's parser, without a network.
    use std::convert::Infallible;
    use std::time::SystemTime;

    use http::{Request, Response, StatusCode};
    use tollgate::server::{tier, GuardLayer, PathKey, SuccessHeaders};
    use tollgate::{Policy, Registry, Signal, SignalConfig};
    use tower::{Layer, ServiceExt};

    /// The largest integer RFC 9651 allows: 15 digits.
    const SF_MAX: f64 = 999_999_999_999_999.0;

    fn integers(field: &str) -> Vec<u64> {
        field
            .split([';', ','])
            .filter_map(|p| p.trim().split_once('='))
            .map(|(_, v)| v.parse().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn numbers_past_fifteen_digits_are_clamped_so_the_fields_stay_valid() {
        let huge = Policy::per_second(1e9).unwrap().burst(1e16).unwrap();
        let registry = Registry::builder()
            .source(tier("huge").limit(huge))
            .build()
            .unwrap();
        let guard = GuardLayer::builder(registry, PathKey)
            .success_headers(SuccessHeaders::RateLimitAndPolicy)
            .build()
            .unwrap();
        let svc = guard.layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        for name in ["ratelimit", "ratelimit-policy"] {
            let field = resp.headers()[name].to_str().unwrap();
            for n in integers(field) {
                assert!(n as f64 <= SF_MAX, "{name}: {field}");
            }
        }
        let signal = Signal::parse(
            resp.status(),
            resp.headers(),
            SystemTime::now(),
            &SignalConfig::default(),
        );
        assert_eq!(signal.remaining, Some(SF_MAX), "{:?}", resp.headers());
    }
}
