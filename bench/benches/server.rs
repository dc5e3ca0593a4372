//! Per-request overhead of the server guard beside tower_governor on the
//! same axum app, in one run: `cargo bench -p tollgate-bench --bench server`.
//!
//! Each iteration builds a request (with the peer's address in its
//! extensions, as `into_make_service_with_connect_info` leaves it), clones
//! the `Router` and calls it with `oneshot`, polling the response to
//! completion. Both limiters key by the client IP from axum's `ConnectInfo`.
//!
//! * *admitted*: one client, a limit never reached;
//! * *1,000 clients*: addresses visited round-robin, never limited;
//! * *refused*: one client over its limit, answered 429.
//!
//! On a shared, noisy machine a load spike during one case skews a
//! comparison between cases. `INTERLEAVED=1 cargo bench -p tollgate-bench
//! --bench server` instead runs every case in turn, 30 rounds of 20,000
//! requests, and prints each case's best round: a spike then hits one round
//! of every case, not one case.

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, Criterion};
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

/// Every case of the comparison, built once.
struct Cases {
    one: IpAddr,
    clients: Vec<IpAddr>,
    bare: Router,
    admitted: [(&'static str, Router); 4],
    refusing: [(&'static str, Router); 2],
}

impl Cases {
    fn new(rt: &tokio::runtime::Runtime) -> Self {
        let fast = Policy::new(1e9, 1e9).unwrap();
        let slow = Policy::per_hour(1.0).unwrap();
        let cases = Cases {
            one: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            clients: (0..1_000u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
                .collect(),
            bare: app(),
            admitted: [
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
            ],
            refusing: [
                ("tollgate", tollgate_app(slow, SuccessHeaders::RateLimit)),
                ("tower_governor", governor_app(3_600_000_000_000, 1, true)),
            ],
        };
        for (_, router) in &cases.admitted {
            assert_eq!(once(rt, router, cases.one), StatusCode::OK);
        }
        for (_, router) in &cases.refusing {
            once(rt, router, cases.one);
            assert_eq!(once(rt, router, cases.one), StatusCode::TOO_MANY_REQUESTS);
        }
        cases
    }
}

fn server(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let cases = Cases::new(&rt);
    let one = cases.one;
    let mut g = c.benchmark_group("server");
    g.bench_function("bare router", |b| {
        b.iter(|| black_box(once(&rt, &cases.bare, one)))
    });
    for (name, router) in &cases.admitted {
        g.bench_function(format!("admitted: {name}"), |b| {
            b.iter(|| black_box(once(&rt, router, one)))
        });
        let mut i = 0;
        g.bench_function(format!("1,000 clients: {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % cases.clients.len();
                black_box(once(&rt, router, cases.clients[i]))
            })
        });
    }
    for (name, router) in &cases.refusing {
        g.bench_function(format!("refused: {name}"), |b| {
            b.iter(|| black_box(once(&rt, router, one)))
        });
    }
    g.finish();
}

/// Every case in turn, round after round; each case's best round.
fn interleaved() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let cases = Cases::new(&rt);
    let mut rows: Vec<(String, &Router, bool)> = vec![("bare router".into(), &cases.bare, false)];
    for (name, router) in &cases.admitted {
        rows.push((format!("admitted: {name}"), router, false));
        rows.push((format!("1,000 clients: {name}"), router, true));
    }
    for (name, router) in &cases.refusing {
        rows.push((format!("refused: {name}"), router, false));
    }
    const ROUNDS: usize = 30;
    const PER_ROUND: usize = 20_000;
    let mut best = vec![f64::INFINITY; rows.len()];
    for _ in 0..ROUNDS {
        for (row, (_, router, many)) in rows.iter().enumerate() {
            let start = Instant::now();
            for i in 0..PER_ROUND {
                let ip = if *many {
                    cases.clients[i % cases.clients.len()]
                } else {
                    cases.one
                };
                black_box(once(&rt, router, ip));
            }
            let ns = start.elapsed().as_nanos() as f64 / PER_ROUND as f64;
            best[row] = best[row].min(ns);
        }
    }
    println!("| case | best round, per request | over bare |");
    println!("|---|---|---|");
    for (row, (name, _, _)) in rows.iter().enumerate() {
        let over = best[row] - best[0];
        let over = if row == 0 {
            "—".to_string()
        } else {
            format!("+{over:.0} ns")
        };
        println!("| {name} | {:.0} ns | {over} |", best[row]);
    }
}

criterion_group!(benches, server);

fn main() {
    if std::env::var_os("INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
