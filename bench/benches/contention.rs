//! Contention: 1, 2 and 8 threads hammering one bucket, and one keyed
//! source with 16 and 10,000 keys, beside governor's direct and keyed
//! limiters, in one run. Every limiter allows everything (the CAS loop and
//! the lookup are what is measured). Reports throughput (calls a second,
//! all threads together) and the 99th percentile of one call, timed with
//! the TSC (through quanta) around each call.
//!
//! `cargo bench -p tollgate-bench --bench contention` (`CALLS` sets the calls per thread).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use tollgate::{Policy, Registry, Source, Target, TokenBucket};

struct Outcome {
    per_second: f64,
    p99_ns: f64,
}

/// Runs `call(thread, i)` `calls` times on each of `threads` threads.
fn hammer<F>(threads: usize, calls: usize, call: F) -> Outcome
where
    F: Fn(usize, usize) -> bool + Send + Sync + 'static,
{
    let call = Arc::new(call);
    let clock = quanta::Clock::new();
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (call, clock, start) = (call.clone(), clock.clone(), start.clone());
            thread::spawn(move || {
                let mut lat = Vec::with_capacity(calls);
                start.wait();
                for i in 0..calls {
                    let a = clock.raw();
                    black_box(call(t, i));
                    lat.push(clock.delta_as_nanos(a, clock.raw()));
                }
                lat
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut all: Vec<u64> = Vec::with_capacity(threads * calls);
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let took = began.elapsed().as_secs_f64();
    all.sort_unstable();
    Outcome {
        per_second: (threads * calls) as f64 / took,
        p99_ns: all[all.len() * 99 / 100] as f64,
    }
}

fn hosts(n: usize) -> Arc<Vec<String>> {
    Arc::new((0..n).map(|i| format!("api{i}.example.com")).collect())
}

fn row(what: &str, ours: Outcome, theirs: Outcome) {
    println!(
        "| {what} | {:.1} M/s | {:.0} ns | {:.1} M/s | {:.0} ns | {:.2} |",
        ours.per_second / 1e6,
        ours.p99_ns,
        theirs.per_second / 1e6,
        theirs.p99_ns,
        ours.per_second / theirs.per_second
    );
}

fn main() {
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let open = Policy::new(1e9, 1e9).unwrap();
    let quota = governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000_000).unwrap());
    println!("{calls} calls a thread; throughput of all threads together, p99 of one call");
    println!("| case | tollgate | tollgate p99 | governor | governor p99 | tollgate / governor |");
    println!("|---|---|---|---|---|---|");
    for threads in [1, 2, 8] {
        let bucket = Arc::new(TokenBucket::new(open));
        let ours = hammer(threads, calls, move |_, _| bucket.try_acquire(1.0).is_ok());
        let gov = Arc::new(governor::RateLimiter::direct(quota));
        let theirs = hammer(threads, calls, move |_, _| gov.check().is_ok());
        row(&format!("one bucket, {threads} thread(s)"), ours, theirs);
    }
    for keys in [16, 10_000] {
        for threads in [1, 2, 8] {
            let names = hosts(keys);
            let registry = Registry::builder()
                .source(Source::new("all").limit(open).host("*").per_host())
                .build()
                .unwrap();
            for h in names.iter() {
                let _ = registry.check(&Target::new(h, Some(443), "/"), 1.0);
            }
            let n = names.clone();
            let ours = hammer(threads, calls / 4, move |t, i| {
                let h = &n[(i + t * 7919) % keys];
                registry.check(&Target::new(h, Some(443), "/"), 1.0).is_ok()
            });
            let keyed = Arc::new(governor::RateLimiter::<String, _, _>::keyed(quota));
            for h in names.iter() {
                let _ = keyed.check_key(h);
            }
            let n = names.clone();
            let theirs = hammer(threads, calls / 4, move |t, i| {
                keyed.check_key(&n[(i + t * 7919) % keys]).is_ok()
            });
            row(&format!("{keys} keys, {threads} thread(s)"), ours, theirs);
        }
    }
}
