//! Routing plus admission through the registry, beside governor's keyed
//! limiter, in one run: `cargo bench -p tollgate-bench --bench registry`.
//!
//! Every limiter allows everything (the cost measured is the lookup and the
//! check), and the loop visits the keys round-robin.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tollgate::{Policy, Registry, Source, Target};

fn hosts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("api{i}.example.com")).collect()
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup + check");
    let open = Policy::new(1e9, 1e9).unwrap();
    for n in [16usize, 10_000] {
        let names = hosts(n);

        // One per-host source: a bucket set per host, like a keyed limiter.
        let per_host = Registry::builder()
            .source(Source::new("all").limit(open).host("*").per_host())
            .build()
            .unwrap();
        for h in &names {
            let _ = per_host.try_acquire(&Target::new(h, Some(443), "/"), 1.0);
        }
        let mut i = 0;
        g.bench_with_input(
            BenchmarkId::new("tollgate per-host check", n),
            &n,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % n;
                    let t = Target::new(&names[i], Some(443), "/");
                    black_box(per_host.check(&t, 1.0)).is_ok()
                })
            },
        );
        let mut i = 0;
        g.bench_with_input(
            BenchmarkId::new("tollgate per-host try_acquire", n),
            &n,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % n;
                    let t = Target::new(&names[i], Some(443), "/");
                    black_box(per_host.try_acquire(&t, 1.0)).is_ok()
                })
            },
        );

        // n sources, one exact host rule each.
        let routed = Registry::builder()
            .sources(
                names
                    .iter()
                    .enumerate()
                    .map(|(k, h)| Source::new(format!("s{k}")).limit(open).host(h)),
            )
            .build()
            .unwrap();
        let mut i = 0;
        g.bench_with_input(
            BenchmarkId::new("tollgate n sources check", n),
            &n,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % n;
                    let t = Target::new(&names[i], Some(443), "/");
                    black_box(routed.check(&t, 1.0)).is_ok()
                })
            },
        );
        let mut i = 0;
        g.bench_with_input(
            BenchmarkId::new("tollgate n sources try_acquire", n),
            &n,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % n;
                    let t = Target::new(&names[i], Some(443), "/");
                    black_box(routed.try_acquire(&t, 1.0)).is_ok()
                })
            },
        );

        let quota = governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
            .allow_burst(NonZeroU32::new(1_000_000_000).unwrap());
        let keyed = governor::RateLimiter::<String, _, _>::keyed(quota);
        for h in &names {
            let _ = keyed.check_key(h);
        }
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("governor check_key", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(keyed.check_key(&names[i])).is_ok()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = lookup
}
criterion_main!(benches);
