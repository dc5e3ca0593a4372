//! A flood of distinct keys (a million client addresses) through the
//! guard, called in process: the per-key tables stay under `max_hosts`
//! all along, every request is answered, and the time per request stays
//! bounded.
#![cfg(feature = "server")]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use tollgate::server::{tier, ClientIp, GuardLayer};
use tollgate::Registry;
use tower::{Layer, Service, ServiceExt};

const KEYS: u32 = 1_000_000;
const MAX_HOSTS: usize = 2_000;

#[tokio::test]
async fn a_million_keys_stay_within_max_hosts() {
    let registry = Registry::builder()
        .source(tier("per-ip").limit("5/s burst 5".parse().unwrap()))
        .max_hosts(MAX_HOSTS)
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry.clone(), ClientIp::peer())
        .build()
        .unwrap();
    let mut svc = guard.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let (mut ok, mut limited, mut most) = (0u32, 0u32, 0usize);
    let start = Instant::now();
    for i in 0..KEYS {
        let mut req = Request::new(());
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        req.extensions_mut().insert(SocketAddr::from((ip, 40_000)));
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            s => panic!("unexpected {s}"),
        }
        if i % 1_000 == 0 {
            most = most.max(registry.host_count("per-ip").unwrap());
        }
    }
    let elapsed = start.elapsed();
    most = most.max(registry.host_count("per-ip").unwrap());
    println!(
        "{KEYS} keys in {elapsed:?} ({:.0} ns each): {ok} admitted, {limited} refused, at most {most} key sets",
        elapsed.as_nanos() as f64 / f64::from(KEYS)
    );
    assert_eq!(ok + limited, KEYS);
    assert!(most <= MAX_HOSTS, "{most} key sets, cap {MAX_HOSTS}");
    // Keys that found the table full shared the overflow set, which is
    // stricter: many are refused, but the first of each set is admitted.
    assert!(ok >= MAX_HOSTS as u32, "{ok} admitted");
    // Bounded time: far below a millisecond a request even unoptimised.
    assert!(
        elapsed.as_secs_f64() / f64::from(KEYS) < 200e-6,
        "{elapsed:?} for {KEYS} requests"
    );
}
