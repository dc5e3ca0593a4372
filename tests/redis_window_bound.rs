//! The bucket's promise on the Redis store, on random schedules in real
//! time: in every half-open window of length `W` on Redis's clock, the
//! admitted weight is at most capacity + rate·W (largest policy in force).
//! An admission counts at the time the script returned for it (its `TIME`
//! for an immediate take, the slot of a kept reservation).
//!
//! Fewer cases than the local property test (64 by default, or
//! `REDIS_PROPTEST_CASES`): each runs against a real server. The same
//! runs on a Redis Cluster (`REDIS_CLUSTER_URLS`, see
//! `tests/common/redis.rs`), where the buckets of the cases spread over
//! its masters.
#![cfg(feature = "redis")]

use std::time::Duration;

mod common;
#[path = "common/redis.rs"]
mod redis_env;

use common::max_in_window;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tollgate::redis::{RedisReservation, RedisStore};
use tollgate::{ErrorKind, Policy};

#[derive(Clone, Debug)]
enum Op {
    Sleep(u64),
    Try(f64),
    Reserve { tokens: f64, max_wait_ms: u64 },
    Commit(usize),
    Cancel(usize),
    SetPolicy(Vec<Policy>),
    Defer(u64),
}

fn policy() -> impl Strategy<Value = Policy> {
    (0.5f64..6.0, 20.0f64..400.0).prop_map(|(c, r)| Policy::new(c, r).unwrap())
}

fn op(limits: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..12).prop_map(Op::Sleep),
        4 => (0.05f64..=1.0).prop_map(Op::Try),
        3 => (0.05f64..=1.0, 0u64..60).prop_map(|(tokens, max_wait_ms)| Op::Reserve { tokens, max_wait_ms }),
        2 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => prop::collection::vec(policy(), limits).prop_map(Op::SetPolicy),
        1 => (0u64..40).prop_map(Op::Defer),
    ]
}

/// Runs a schedule on a fresh bucket; returns admissions as (Redis ns, weight).
async fn run(store: &RedisStore, name: &str, first: &[Policy], ops: &[Op]) -> Vec<(u64, f64)> {
    let bucket = store.bucket(name, first).unwrap();
    let mut admitted = Vec::new();
    let mut pending: Vec<(RedisReservation, f64)> = Vec::new();
    for op in ops {
        match op {
            Op::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Op::Try(w) => match bucket.try_acquire(*w).await {
                Ok(a) => admitted.push((a.at().expect("by Redis").as_nanos(), *w)),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::RateLimited | ErrorKind::InsufficientCapacity
                    ) => {}
                Err(e) => panic!("{e}"),
            },
            Op::Reserve {
                tokens,
                max_wait_ms,
            } => match bucket
                .reserve(*tokens, Duration::from_millis(*max_wait_ms))
                .await
            {
                Ok(r) => pending.push((r, *tokens)),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::RateLimited | ErrorKind::InsufficientCapacity
                    ) => {}
                Err(e) => panic!("{e}"),
            },
            Op::Commit(i) if !pending.is_empty() => {
                let (r, w) = pending.remove(i % pending.len());
                keep(r, w, &mut admitted);
            }
            Op::Cancel(i) if !pending.is_empty() => {
                let (r, w) = pending.remove(i % pending.len());
                let slot = r.ready_at().unwrap().as_nanos();
                // Given back, or kept (its slot had come, or later ones
                // depend on it): kept tokens count as admitted at the slot.
                if r.cancel().await.unwrap() == 0.0 {
                    admitted.push((slot, w));
                }
            }
            Op::Commit(_) | Op::Cancel(_) => {}
            Op::SetPolicy(p) => bucket.set_policies(p).await.unwrap(),
            Op::Defer(ms) => bucket.defer_for(Duration::from_millis(*ms)).await.unwrap(),
        }
    }
    for (r, w) in pending {
        keep(r, w, &mut admitted);
    }
    admitted.sort_by_key(|a| a.0);
    admitted
}

fn keep(r: RedisReservation, w: f64, admitted: &mut Vec<(u64, f64)>) {
    let at = r.commit().at().expect("admitted by Redis");
    admitted.push((at.as_nanos(), w));
}

fn windows(policies: &[Policy]) -> Vec<u64> {
    let mut ws = vec![1_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];
    for p in policies {
        let t = p.interval_nanos();
        ws.extend([
            t,
            t - 1,
            t + 1,
            2 * t,
            3 * t + 1,
            p.tolerance_nanos(),
            p.tolerance_nanos() + t,
        ]);
    }
    ws
}

/// Where the buckets live.
#[derive(Clone, Copy)]
enum On {
    Node,
    Cluster,
}

/// Runs `REDIS_PROPTEST_CASES` (default `default_cases`) random schedules
/// on buckets of `limits` limits and checks every limit's bound.
fn check_bound(test: &str, on: On, limits: usize, default_cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = redis_env::unique_prefix(test);
    let store = match on {
        On::Node => {
            let Some(url) = redis_env::redis_url(test) else {
                return;
            };
            rt.block_on(redis_env::connect(&url, &prefix))
        }
        On::Cluster => {
            let Some(urls) = redis_env::redis_cluster_urls(test) else {
                return;
            };
            rt.block_on(redis_env::connect_cluster(&urls, &prefix))
        }
    };
    // A runner of our own rather than `proptest!`, which lets
    // PROPTEST_CASES (10,000 in CI, for the local tests) override the count.
    let mut runner = TestRunner::new(ProptestConfig {
        cases: std::env::var("REDIS_PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(default_cases),
        // Real-time runs, not replayable seeds: nothing to keep.
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let case = std::cell::Cell::new(0u64);
    let result = runner.run(
        &(
            prop::collection::vec(policy(), limits),
            prop::collection::vec(op(limits), 1..60),
        ),
        |(first, ops)| {
            // Every policy each limit has had.
            let mut had: Vec<Vec<Policy>> = first.iter().map(|p| vec![*p]).collect();
            for o in &ops {
                if let Op::SetPolicy(ps) = o {
                    for (h, p) in had.iter_mut().zip(ps) {
                        h.push(*p);
                    }
                }
            }
            let min_cap = had
                .iter()
                .flatten()
                .map(|p| p.capacity())
                .fold(f64::INFINITY, f64::min);
            let ops: Vec<Op> = ops
                .into_iter()
                .map(|o| match o {
                    Op::Try(f) => Op::Try(f * min_cap),
                    Op::Reserve {
                        tokens,
                        max_wait_ms,
                    } => Op::Reserve {
                        tokens: tokens * min_cap,
                        max_wait_ms,
                    },
                    o => o,
                })
                .collect();
            case.set(case.get() + 1);
            let admitted = rt.block_on(run(&store, &format!("w{}", case.get()), &first, &ops));
            for policies in &had {
                let cap = policies.iter().map(|p| p.capacity()).fold(0.0, f64::max);
                let rate = policies
                    .iter()
                    .map(|p| p.tokens_per_second())
                    .fold(0.0, f64::max);
                for w in windows(policies) {
                    let got = max_in_window(&admitted, w);
                    let bound = cap + rate * w as f64 / 1e9;
                    prop_assert!(
                        got <= bound + 1e-9,
                        "window {w} ns: admitted {got} > bound {bound}; {admitted:?}"
                    );
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn redis_admits_at_most_capacity_plus_rate_times_window() {
    check_bound("redis_window_bound", On::Node, 1, 64);
}

/// Two limits taken in one script call, with policy changes while
/// reservations wait: each limit keeps its own bound.
#[test]
fn redis_keeps_every_limit_of_a_bucket_within_its_bound() {
    check_bound("redis_window_bound_two", On::Node, 2, 32);
}

#[test]
fn a_cluster_admits_at_most_capacity_plus_rate_times_window() {
    check_bound("cluster_window_bound", On::Cluster, 1, 64);
}

#[test]
fn a_cluster_keeps_every_limit_of_a_bucket_within_its_bound() {
    check_bound("cluster_window_bound_two", On::Cluster, 2, 32);
}
