//! Policy changes on a per-host source while other threads send to new
//! hosts: no lock is taken under the host table's write lock, so the two
//! never wait on each other in a cycle. A watchdog fails the test on a stall.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tollgate::{Policy, Registry, Source, Target};

const ROUNDS: usize = 2_000;

#[test]
fn policy_changes_and_new_hosts_never_deadlock() {
    let registry = Registry::builder()
        .source(
            Source::new("hosts")
                .limit(Policy::per_second(1e6).unwrap())
                .host("*.example")
                .per_host(),
        )
        .max_hosts(64)
        .build()
        .unwrap();
    let (done, finished) = mpsc::channel();
    let mut workers = Vec::new();
    for w in 0..2 {
        let r = registry.clone();
        let done = done.clone();
        workers.push(thread::spawn(move || {
            for i in 0..ROUNDS {
                let host = format!("h{w}-{i}.example");
                let _ = r.try_acquire(&Target::new(&host, None, "/"), 1.0);
            }
            done.send("sender").unwrap();
        }));
    }
    for _ in 0..2 {
        let r = registry.clone();
        let done = done.clone();
        workers.push(thread::spawn(move || {
            for i in 0..ROUNDS {
                let rate = 1e6 - (i % 7) as f64;
                r.set_policy("hosts", Policy::per_second(rate).unwrap())
                    .unwrap();
                r.slow_down(if i % 2 == 0 { 0.5 } else { 1.0 }).unwrap();
                r.set_limits("hosts", vec![Policy::per_second(rate).unwrap()])
                    .unwrap();
            }
            done.send("changer").unwrap();
        }));
    }
    for _ in 0..workers.len() {
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("a thread stalled: a lock-order cycle between policy changes and new hosts");
    }
    for w in workers {
        w.join().unwrap();
    }
}
