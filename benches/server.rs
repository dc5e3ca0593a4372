//! Per-request overhead of the server guard beside tower_governor on the
//! same axum app, in one run: `cargo bench --bench server --features server`.
//!
//! Each iteration builds a request (with the peer's address in its
//! extensions, as `into_make_service_with_connect_info` leaves it), clones
//! the `Router` and calls it with `oneshot`, polling the response to
//! completion. Both limiters key by the client IP from axum's `ConnectInfo`.
//!
//! * *admitted*: one client, a limit never reached;
//! * *1,000 clients*: addresses visited round-robin, never limited;
//! * *refused*: one client over its limit, answered 429.

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, StatusCode};
use tollgate::server::{tier, ClientIp, GuardLayer, SuccessHeaders};
use tollgate::{Policy, Registry};
use tower::ServiceExt;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn request(ip: IpAddr) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    req
}

/// Calls the router once; its future is usually ready at the first poll.
fn once(rt: &tokio::runtime::Runtime, router: &Router, ip: IpAddr) -> StatusCode {
    let mut fut = pin!(router.clone().oneshot(request(ip)));
    let mut cx = Context::from_waker(Waker::noop());
    let resp = match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => rt.block_on(fut),
    };
    resp.unwrap().status()
}

fn connect_info(ext: &http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

fn tollgate_app(policy: Policy, headers: SuccessHeaders) -> Router {
    let registry = Registry::builder()
        .source(tier("per-ip").limit(policy))
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, ClientIp::peer().peer_from(connect_info))
        .success_headers(headers)
        .build()
        .unwrap();
    app().layer(guard)
}

fn governor_app(per_nanos: u64, burst: u32, headers: bool) -> Router {
    let mut builder = GovernorConfigBuilder::default();
    builder.per_nanosecond(per_nanos).burst_size(burst);
    if headers {
        let config = builder.use_headers().finish().unwrap();
        app().layer(GovernorLayer::new(Arc::new(config)))
    } else {
        let config = builder.finish().unwrap();
        app().layer(GovernorLayer::new(Arc::new(config)))
    }
}

fn server(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let one = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let clients: Vec<IpAddr> = (0..1_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let fast = Policy::new(1e9, 1e9).unwrap();
    let slow = Policy::per_hour(1.0).unwrap();

    let mut g = c.benchmark_group("server");
    let bare = app();
    g.bench_function("bare router", |b| {
        b.iter(|| black_box(once(&rt, &bare, one)))
    });

    let cases: [(&str, Router); 4] = [
        (
            "tollgate, no headers",
            tollgate_app(fast, SuccessHeaders::None),
        ),
        (
            "tollgate, RateLimit header",
            tollgate_app(fast, SuccessHeaders::RateLimit),
        ),
        (
            "tower_governor, no headers",
            governor_app(1, 1_000_000_000, false),
        ),
        (
            "tower_governor, x-ratelimit headers",
            governor_app(1, 1_000_000_000, true),
        ),
    ];
    for (name, router) in &cases {
        assert_eq!(once(&rt, router, one), StatusCode::OK);
        g.bench_function(format!("admitted: {name}"), |b| {
            b.iter(|| black_box(once(&rt, router, one)))
        });
        let mut i = 0;
        g.bench_function(format!("1,000 clients: {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % clients.len();
                black_box(once(&rt, router, clients[i]))
            })
        });
    }

    let refusing: [(&str, Router); 2] = [
        ("tollgate", tollgate_app(slow, SuccessHeaders::RateLimit)),
        ("tower_governor", governor_app(3_600_000_000_000, 1, true)),
    ];
    for (name, router) in &refusing {
        once(&rt, router, one);
        assert_eq!(once(&rt, router, one), StatusCode::TOO_MANY_REQUESTS);
        g.bench_function(format!("refused: {name}"), |b| {
            b.iter(|| black_box(once(&rt, router, one)))
        });
    }
    g.finish();
}

criterion_group!(benches, server);
criterion_main!(benches);
