//! tollgate beside the crate a user would pick instead, path by path, in one
//! process: `cargo bench -p tollgate-bench --bench versus`.
//!
//! Criterion runs of separate benches move by 20–40 % between runs on a
//! shared machine, enough to hide a 20 % gap either way. Here every path
//! runs tollgate and its peer in alternating rounds (`ROUNDS`, 15 by
//! default), so a load spike lands on a round of each, and each side's best
//! round is compared: one ratio per path, tollgate's cost over the peer's
//! (below 1.0 is faster), or for contention tollgate's throughput over the
//! peer's (above 1.0 is faster).
//!
//! | path | tollgate | peer |
//! |---|---|---|
//! | bucket allow, deny | `TokenBucket::try_acquire` | governor direct `check` |
//! | per-host lookup + check, 16 / 10,000 / 1,000,000 keys | a per-host source, `Registry::check` | governor keyed `check_key` |
//! | one source per host, 16 / 10,000 / 1,000,000 sources | one exact host rule each, `Registry::check` | governor keyed `check_key` |
//! | contention, 1 / 2 / 8 threads, one bucket and 16 keys | `try_acquire`, per-host `check` | `check`, `check_key` |
//! | a tower client layer, routed and passed through | `RateLimitLayer` over a no-op service | tower `RateLimit` |
//! | a server guard, admitted and refused | `GuardLayer` on an axum router | tower_governor |
//! | a server guard over a bare service, admitted | `GuardLayer` over a service that answers at once | tower_governor |
//!
//! Memory is counted by a global allocator that adds up what is allocated:
//! bytes per bucket and per host set (against governor's state per key), and
//! per waiting request (against leaky-bucket's `acquire` future). Set
//! `QUICK=1` to skip the million-key rows.

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::{pin, Pin};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode, Uri};
use tollgate::server::{tier, ClientIp, GuardLayer, SuccessHeaders};
use tollgate::tower::RateLimitLayer;
use tollgate::{Policy, Registry, Source, Target, TokenBucket};
use tollgate_bench::{call_once, live, Counting, Noop};
use tower::{ServiceBuilder, ServiceExt};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

#[global_allocator]
static ALLOC: Counting = Counting;

fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

/// Whether a row runs: `ONLY=text` keeps the rows whose path contains it.
fn wanted(path: &str) -> bool {
    std::env::var("ONLY").map_or(true, |only| path.contains(&only))
}

fn quick() -> bool {
    std::env::var_os("QUICK").is_some()
}

/// Nanoseconds per call of `f`, timed over `iters` calls.
///
/// One copy of the loop per closure, never inlined into its caller: each
/// side's closure is inlined into its own loop, the same way for both. (A
/// `dyn FnMut` loop inlined into `versus` let the compiler call one side
/// directly and the other through the pointer, whichever it could see
/// through, worth 2 to 3 ns of a 12 ns check.)
#[inline(never)]
fn per_call<F: FnMut(usize) -> bool>(iters: usize, f: &mut F) -> f64 {
    let start = Instant::now();
    for i in 0..iters {
        black_box(f(i));
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Alternating rounds of `ours` and `peer`; prints each side's best round
/// and the ratio of tollgate's cost to the peer's.
fn versus(
    path: &str,
    iters: usize,
    mut ours: impl FnMut(usize) -> bool,
    mut peer: impl FnMut(usize) -> bool,
) {
    if !wanted(path) {
        return;
    }
    // One untimed pass each, to warm caches and fill tables.
    per_call(iters.min(100_000), &mut ours);
    per_call(iters.min(100_000), &mut peer);
    let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds() {
        a = a.min(per_call(iters, &mut ours));
        b = b.min(per_call(iters, &mut peer));
    }
    println!("| {path} | {a:.1} ns | {b:.1} ns | {:.2} |", a / b);
}

fn open() -> Policy {
    Policy::new(1e9, 1e9).unwrap()
}

fn open_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000_000).unwrap())
}

fn hosts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("api{i}.example.com")).collect()
}

/// A stride through `n` keys that visits them all in a scattered order, so
/// that a large table is not walked in memory order.
fn scatter(i: usize, n: usize) -> usize {
    i.wrapping_mul(7919) % n
}

fn bucket() {
    let ours = TokenBucket::new(open());
    let gov = governor::RateLimiter::direct(open_quota());
    versus(
        "bucket allow",
        2_000_000,
        |_| ours.try_acquire(1.0).is_ok(),
        |_| gov.check().is_ok(),
    );
    let ours = TokenBucket::new(Policy::per_hour(1.0).unwrap());
    let _ = ours.try_acquire(1.0);
    let gov = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::new(1).unwrap()));
    let _ = gov.check();
    versus(
        "bucket deny",
        2_000_000,
        |_| ours.try_acquire(1.0).is_err(),
        |_| gov.check().is_err(),
    );
}

fn lookups() {
    let sizes: &[usize] = if quick() {
        &[16, 10_000]
    } else {
        &[16, 10_000, 1_000_000]
    };
    for &n in sizes {
        let names = hosts(n);
        let iters = 1_000_000.max(n);

        let per_host = Registry::builder()
            .source(Source::new("all").limit(open()).host("*").per_host())
            .max_hosts(n)
            .build()
            .unwrap();
        for h in &names {
            let _ = per_host.check(&Target::new(h, Some(443), "/"), 1.0);
        }
        let keyed = governor::RateLimiter::<String, _, _>::keyed(open_quota());
        for h in &names {
            let _ = keyed.check_key(h);
        }
        versus(
            &format!("per-host lookup + check, {n} keys"),
            iters,
            |i| {
                let h = &names[scatter(i, n)];
                per_host.check(&Target::new(h, Some(443), "/"), 1.0).is_ok()
            },
            |i| keyed.check_key(&names[scatter(i, n)]).is_ok(),
        );
        drop(per_host);

        let routed = Registry::builder()
            .sources(
                names
                    .iter()
                    .enumerate()
                    .map(|(k, h)| Source::new(format!("s{k}")).limit(open()).host(h)),
            )
            .build()
            .unwrap();
        versus(
            &format!("one source per host, {n} sources"),
            iters,
            |i| {
                let h = &names[scatter(i, n)];
                routed.check(&Target::new(h, Some(443), "/"), 1.0).is_ok()
            },
            |i| keyed.check_key(&names[scatter(i, n)]).is_ok(),
        );
    }
}

/// Calls a second of `call` on `threads` threads together, `calls` each.
fn throughput(
    threads: usize,
    calls: usize,
    call: Arc<dyn Fn(usize, usize) -> bool + Send + Sync>,
) -> f64 {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (call, start) = (call.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..calls {
                    black_box(call(t, i));
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    (threads * calls) as f64 / began.elapsed().as_secs_f64()
}

fn contention_row(
    path: &str,
    threads: usize,
    ours: Arc<dyn Fn(usize, usize) -> bool + Send + Sync>,
    peer: Arc<dyn Fn(usize, usize) -> bool + Send + Sync>,
) {
    if !wanted(&format!("{path}, {threads} thread")) {
        return;
    }
    let calls = 500_000;
    let (mut a, mut b) = (0f64, 0f64);
    for _ in 0..rounds().div_ceil(3) {
        a = a.max(throughput(threads, calls, ours.clone()));
        b = b.max(throughput(threads, calls, peer.clone()));
    }
    println!(
        "| {path}, {threads} thread(s) | {:.1} M/s | {:.1} M/s | {:.2} (throughput) |",
        a / 1e6,
        b / 1e6,
        a / b
    );
}

fn contention() {
    for threads in [1, 2, 8] {
        let ours = Arc::new(TokenBucket::new(open()));
        let gov = Arc::new(governor::RateLimiter::direct(open_quota()));
        contention_row(
            "contention, one bucket",
            threads,
            Arc::new(move |_, _| ours.try_acquire(1.0).is_ok()),
            Arc::new(move |_, _| gov.check().is_ok()),
        );
    }
    for threads in [1, 2, 8] {
        let names = Arc::new(hosts(16));
        let registry = Registry::builder()
            .source(Source::new("all").limit(open()).host("*").per_host())
            .build()
            .unwrap();
        let keyed = Arc::new(governor::RateLimiter::<String, _, _>::keyed(open_quota()));
        for h in names.iter() {
            let _ = registry.check(&Target::new(h, Some(443), "/"), 1.0);
            let _ = keyed.check_key(h);
        }
        let n = names.clone();
        let ours: Arc<dyn Fn(usize, usize) -> bool + Send + Sync> = Arc::new(move |t, i| {
            let h = &n[(i + t * 7) % 16];
            registry.check(&Target::new(h, Some(443), "/"), 1.0).is_ok()
        });
        let n = names.clone();
        let peer: Arc<dyn Fn(usize, usize) -> bool + Send + Sync> =
            Arc::new(move |t, i| keyed.check_key(&n[(i + t * 7) % 16]).is_ok());
        contention_row("contention, 16 keys", threads, ours, peer);
    }
}

fn layers() {
    if !wanted("tower layer") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let uri: Uri = "https://api.example.com/v1/items/42".parse().unwrap();
    let mut bare = Noop;
    let mut tower_limit = ServiceBuilder::new()
        .rate_limit(1_000_000_000, Duration::from_secs(1))
        .service(Noop);
    let registry = Registry::builder()
        .source(Source::new("api").limit(open()).host("api.example.com"))
        .build()
        .unwrap();
    let mut routed = ServiceBuilder::new()
        .layer(RateLimitLayer::new(registry))
        .service(Noop);
    let mut passing = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Registry::builder().build().unwrap()))
        .service(Noop);
    // The added cost over the bare service, in alternating rounds.
    let iters = 500_000;
    let (mut b, mut r, mut p, mut t) = (f64::INFINITY, f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds() {
        b = b.min(per_call(iters, &mut |_| call_once(&mut bare, &uri)));
        r = r.min(per_call(iters, &mut |_| call_once(&mut routed, &uri)));
        p = p.min(per_call(iters, &mut |_| call_once(&mut passing, &uri)));
        t = t.min(per_call(iters, &mut |_| call_once(&mut tower_limit, &uri)));
    }
    println!(
        "| tower layer, routed host (over a bare service: +{:.0} ns; tower's +{:.0} ns) | {r:.1} ns | {t:.1} ns | {:.2} |",
        r - b,
        t - b,
        r / t
    );
    println!(
        "| tower layer, unknown host passed through (+{:.0} ns) | {p:.1} ns | {t:.1} ns | {:.2} |",
        p - b,
        p / t
    );
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn connect_info(ext: &http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

fn serve_once(rt: &tokio::runtime::Runtime, router: &Router, ip: IpAddr) -> StatusCode {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    let mut fut = pin!(router.clone().oneshot(req));
    let mut cx = Context::from_waker(Waker::noop());
    let resp = match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => rt.block_on(fut),
    };
    resp.unwrap().status()
}

fn guard_app(policy: Policy) -> Router {
    let registry = Registry::builder()
        .source(tier("per-ip").limit(policy))
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, ClientIp::peer().peer_from(connect_info))
        .success_headers(SuccessHeaders::None)
        .build()
        .unwrap();
    app().layer(guard)
}

fn governor_app(per_nanos: u64, burst: u32) -> Router {
    let mut builder = GovernorConfigBuilder::default();
    builder.per_nanosecond(per_nanos).burst_size(burst);
    let config = builder.use_headers().finish().unwrap();
    app().layer(GovernorLayer::new(Arc::new(config)))
}

fn guards() {
    if !wanted("server guard") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let one = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let ours = guard_app(open());
    let peer = {
        let mut builder = GovernorConfigBuilder::default();
        builder.per_nanosecond(1).burst_size(1_000_000_000);
        app().layer(GovernorLayer::new(Arc::new(builder.finish().unwrap())))
    };
    versus(
        "server guard, admitted (no success headers)",
        200_000,
        |_| serve_once(&rt, &ours, one) == StatusCode::OK,
        |_| serve_once(&rt, &peer, one) == StatusCode::OK,
    );
    guard_over_bare(one);
    let ours = guard_app(Policy::per_hour(1.0).unwrap());
    let peer = governor_app(3_600_000_000_000, 1);
    serve_once(&rt, &ours, one);
    serve_once(&rt, &peer, one);
    versus(
        "server guard, refused",
        200_000,
        |_| serve_once(&rt, &ours, one) == StatusCode::TOO_MANY_REQUESTS,
        |_| serve_once(&rt, &peer, one) == StatusCode::TOO_MANY_REQUESTS,
    );
}

/// A service that answers every request at once: what a guard adds to it
/// is the guard's own cost, without a router's around it.
#[derive(Clone)]
struct Answer;

impl tower::Service<Request<Body>> for Answer {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<Body>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Body::empty())))
    }
}

/// One request from `ip` through `svc`, its future polled once: whether it
/// was answered 200 then.
fn answer_once<S>(svc: &mut S, ip: IpAddr) -> bool
where
    S: tower::Service<Request<Body>, Response = http::Response<Body>>,
{
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    let mut cx = Context::from_waker(Waker::noop());
    if !matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))) {
        return false;
    }
    let fut = pin!(svc.call(req));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(r)) if r.status() == StatusCode::OK)
}

/// The guard and tower_governor over [`Answer`], and what each adds to it,
/// in alternating rounds.
fn guard_over_bare(ip: IpAddr) {
    let path = "server guard over a bare service, admitted";
    if !wanted(path) {
        return;
    }
    let registry = Registry::builder()
        .source(tier("per-ip").limit(open()))
        .build()
        .unwrap();
    let layer = GuardLayer::builder(registry, ClientIp::peer().peer_from(connect_info))
        .success_headers(SuccessHeaders::None)
        .build()
        .unwrap();
    let mut ours = tower::Layer::layer(&layer, Answer);
    let mut builder = GovernorConfigBuilder::default();
    builder.per_nanosecond(1).burst_size(1_000_000_000);
    let mut peer = tower::Layer::layer(
        &GovernorLayer::new(Arc::new(builder.finish().unwrap())),
        Answer,
    );
    let mut bare = Answer;
    let iters = 500_000;
    let (mut b, mut o, mut p) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds() {
        b = b.min(per_call(iters, &mut |_| answer_once(&mut bare, ip)));
        o = o.min(per_call(iters, &mut |_| answer_once(&mut ours, ip)));
        p = p.min(per_call(iters, &mut |_| answer_once(&mut peer, ip)));
    }
    println!(
        "| {path} (over the service: +{:.0} ns; tower_governor's +{:.0} ns) | {o:.1} ns | {p:.1} ns | {:.2} |",
        o - b,
        p - b,
        o / p
    );
}

/// Bytes allocated per item while `make(n)` holds `n` items.
fn bytes_per<T>(n: usize, make: impl FnOnce(usize) -> T) -> f64 {
    let before = live();
    let held = make(n);
    let after = live();
    drop(black_box(held));
    (after - before) as f64 / n as f64
}

fn memory() {
    if !wanted("memory") {
        return;
    }
    let n = 100_000;
    println!();
    println!("| memory | tollgate | peer |");
    println!("|---|---|---|");
    let ours = bytes_per(n, |n| {
        (0..n).map(|_| TokenBucket::new(open())).collect::<Vec<_>>()
    });
    let peer = bytes_per(n, |n| {
        (0..n)
            .map(|_| governor::RateLimiter::direct(open_quota()))
            .collect::<Vec<_>>()
    });
    println!(
        "| a bucket (`TokenBucket` / governor direct `RateLimiter`) | {ours:.0} B | {peer:.0} B |"
    );

    let names = hosts(n);
    let ours = bytes_per(n, |n| {
        let registry = Registry::builder()
            .source(Source::new("all").limit(open()).host("*").per_host())
            .max_hosts(n)
            .build()
            .unwrap();
        for h in &names {
            let _ = registry.check(&Target::new(h, Some(443), "/"), 1.0);
        }
        registry
    });
    let peer = bytes_per(n, |_| {
        let keyed = governor::RateLimiter::<String, _, _>::keyed(open_quota());
        for h in &names {
            let _ = keyed.check_key(h);
        }
        keyed
    });
    println!(
        "| a host's state in a keyed limiter, its name included | {ours:.0} B | {peer:.0} B |"
    );

    // Waiting requests: futures polled once, each then waiting its slot.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let waiters = 10_000;
    let ours = {
        let bucket = Arc::new(TokenBucket::new(Policy::per_second(1.0).unwrap()));
        let _ = bucket.try_acquire(1.0);
        bytes_per(waiters, |n| {
            let mut cx = Context::from_waker(Waker::noop());
            let mut held: Vec<Pin<Box<dyn Future<Output = _>>>> = Vec::with_capacity(n);
            for _ in 0..n {
                let b = bucket.clone();
                let mut f: Pin<Box<dyn Future<Output = _>>> =
                    Box::pin(async move { b.acquire(1.0).await.is_ok() });
                let _ = f.as_mut().poll(&mut cx);
                held.push(f);
            }
            held
        })
    };
    let peer = {
        let limiter = Arc::new(
            leaky_bucket::RateLimiter::builder()
                .max(1)
                .initial(0)
                .refill(1)
                .interval(Duration::from_secs(1))
                .build(),
        );
        bytes_per(waiters, |n| {
            let mut cx = Context::from_waker(Waker::noop());
            let mut held: Vec<Pin<Box<dyn Future<Output = _>>>> = Vec::with_capacity(n);
            for _ in 0..n {
                let l = limiter.clone();
                let mut f: Pin<Box<dyn Future<Output = _>>> = Box::pin(async move {
                    l.acquire_one().await;
                    true
                });
                let _ = f.as_mut().poll(&mut cx);
                held.push(f);
            }
            held
        })
    };
    println!(
        "| a waiting request (a boxed `acquire` future, polled once, and what it holds) | {ours:.0} B | {peer:.0} B |"
    );
}

fn main() {
    // `cargo test` runs bench targets with `--bench`-less arguments; only
    // `cargo bench` (which passes `--bench`) runs the comparison.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let started = Instant::now();
    println!(
        "tollgate beside its peers, {} alternating rounds, each side's best round",
        rounds()
    );
    println!();
    println!("| path | tollgate | peer | ratio |");
    println!("|---|---|---|---|");
    bucket();
    lookups();
    contention();
    layers();
    guards();
    memory();
    println!();
    println!("took {:.0} s", started.elapsed().as_secs_f64());
}
