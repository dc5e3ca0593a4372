//! Every control operation against admissions, from several threads at
//! once, for a few seconds: policy changes, slow-downs, server signals,
//! snapshots and eviction sweeps (a small host table) while requests go to
//! new and old hosts. A watchdog fails the test if any thread stops making
//! progress; at the end every deferral a server asked for still holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use tollgate::{Policy, Registry, Source, Target};

const RUN_FOR: Duration = Duration::from_secs(3);
const STALL: Duration = Duration::from_secs(10);

fn registry() -> Registry {
    Registry::builder()
        .source(
            Source::new("hosts")
                .limit(Policy::new(50.0, 5_000.0).unwrap())
                .limit(Policy::new(500.0, 50_000.0).unwrap())
                .host("*.hosts.test")
                .per_host()
                .max_in_flight(64),
        )
        .source(
            Source::new("one")
                .limit(Policy::new(50.0, 5_000.0).unwrap())
                .host("one.test"),
        )
        .max_hosts(32)
        .build()
        .unwrap()
}

fn quota(q: u32) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("\"default\";q={q};w=1");
    h.insert("ratelimit-policy", HeaderValue::from_str(&v).unwrap());
    h
}

#[test]
fn control_operations_and_admissions_never_stall() {
    let registry = registry();
    let stop = Arc::new(AtomicBool::new(false));
    let mut progress = Vec::new();
    let mut threads = Vec::new();
    let mut spawn = |name: &'static str, work: Box<dyn Fn(u64) + Send>| {
        let counter = Arc::new(AtomicU64::new(0));
        progress.push((name, counter.clone()));
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 5_000_000 {
                work(i);
                i += 1;
                counter.store(i, Ordering::Relaxed);
            }
        }));
    };
    for t in 0..2u64 {
        let r = registry.clone();
        spawn(
            "new hosts",
            Box::new(move |i| {
                let host = format!("h{t}-{i}.hosts.test");
                let _ = r.try_acquire(&Target::new(&host, None, "/"), 1.0);
            }),
        );
    }
    let r = registry.clone();
    spawn(
        "old hosts",
        Box::new(move |i| {
            let host = format!("h0-{}.hosts.test", i % 8);
            if let Ok(p) = r.try_acquire(&Target::new(&host, None, "/"), 1.0) {
                if i % 50 == 0 {
                    p.observe(StatusCode::OK, &quota(100 + (i % 7) as u32 * 1_000));
                }
            }
            let _ = r.check(&Target::new("one.test", None, "/"), 1.0);
        }),
    );
    let r = registry.clone();
    spawn(
        "policy changes",
        Box::new(move |i| {
            let rate = 5_000.0 - (i % 13) as f64;
            r.set_limits(
                "hosts",
                vec![
                    Policy::new(50.0, rate).unwrap(),
                    Policy::new(500.0, rate * 10.0).unwrap(),
                ],
            )
            .unwrap();
            r.set_policy("one", Policy::new(50.0, rate).unwrap())
                .unwrap();
            r.slow_down(if i % 2 == 0 { 0.5 } else { 1.0 }).unwrap();
        }),
    );
    let r = registry.clone();
    spawn(
        "snapshots",
        Box::new(move |_| {
            let snap = r.snapshot();
            assert_eq!(snap.len(), 2);
            assert!(r.host_count("hosts").unwrap() <= 32);
        }),
    );
    let start = Instant::now();
    let mut last: Vec<u64> = vec![0; progress.len()];
    let mut last_move = vec![Instant::now(); progress.len()];
    while start.elapsed() < RUN_FOR {
        thread::sleep(Duration::from_millis(100));
        for (k, (name, counter)) in progress.iter().enumerate() {
            let now = counter.load(Ordering::Relaxed);
            if now != last[k] {
                last[k] = now;
                last_move[k] = Instant::now();
            }
            assert!(
                last_move[k].elapsed() < STALL,
                "thread `{name}` made no progress for {STALL:?}: a stall"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + STALL;
    for t in threads {
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "a thread did not stop: a stall");
            thread::sleep(Duration::from_millis(10));
        }
        t.join().unwrap();
    }
    for (name, counter) in &progress {
        assert!(counter.load(Ordering::Relaxed) > 10, "`{name}` barely ran");
    }

    // After all of it, a server's deferral still holds against every change.
    let p = registry.try_acquire(&Target::new("one.test", None, "/"), 1.0);
    let p = p.or_else(|_| {
        thread::sleep(Duration::from_millis(50));
        registry.try_acquire(&Target::new("one.test", None, "/"), 1.0)
    });
    let p = p.unwrap();
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("30"));
    p.observe(StatusCode::TOO_MANY_REQUESTS, &h);
    registry.set_policy("one", Policy::unlimited()).unwrap();
    registry.slow_down(1.0).unwrap();
    let refused = registry
        .try_acquire(&Target::new("one.test", None, "/"), 1.0)
        .unwrap_err();
    let wait = refused.as_rate_limited().unwrap().retry_after();
    assert!(wait > Duration::from_secs(29), "{wait:?}");
}
