//! The bucket's promise on random schedules: in every half-open window of
//! length `W`, admitted weight ≤ capacity + rate·W (largest policy in force),
//! and a `Policy::window(n, w)` admits at most `n` one-token requests in any
//! window `w`. Cases: `PROPTEST_CASES` (CI sets 10000); failing seeds are kept
//! in `window_bound.proptest-regressions` beside this file and run first.

use std::time::Duration;

use crate::common;

use common::max_in_window;
use proptest::prelude::*;
use tollgate::{Clock, ErrorKind, ManualClock, Policy, Reservation, TokenBucket};

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Try(f64),
    Reserve { tokens: f64, max_wait: u64 },
    Commit(usize),
    Cancel(usize),
    SetPolicy(Policy),
    Defer(u64),
}

fn policy() -> impl Strategy<Value = Policy> {
    (0.5f64..8.0, 0.2f64..200.0).prop_map(|(c, r)| Policy::new(c, r).unwrap())
}

fn op(max_weight: f64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..400).prop_map(|ms| Op::Advance(ms * 1_000_000 / 7 + ms % 3)),
        4 => (0.05f64..=1.0).prop_map(move |f| Op::Try(f * max_weight)),
        3 => (0.05f64..=1.0, 0u64..5_000).prop_map(move |(f, ms)| Op::Reserve { tokens: f * max_weight, max_wait: ms * 1_000_000 }),
        2 => any::<usize>().prop_map(Op::Commit),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => policy().prop_map(Op::SetPolicy),
        1 => (0u64..3_000).prop_map(|ms| Op::Defer(ms * 1_000_000)),
    ]
}

/// Runs a schedule; returns the admissions as (time ns, weight).
fn run(first: Policy, ops: &[Op]) -> Vec<(u64, f64)> {
    run_checked(first, ops, |_, _| {})
}

/// Runs a schedule, showing `check` each admission (its time) with the
/// latest deferral asked for before it was taken.
fn run_checked(first: Policy, ops: &[Op], mut check: impl FnMut(u64, u64)) -> Vec<(u64, f64)> {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let bucket = TokenBucket::with_clock(first, clock.clone());
    let mut admitted = Vec::new();
    let mut pending: Vec<(Reservation<'_, ManualClock>, f64)> = Vec::new();
    let mut deferred = 0;
    for op in ops {
        let now = clock.now().as_nanos();
        match op {
            Op::Advance(ns) => clock.advance(Duration::from_nanos(*ns)),
            Op::Try(w) => match bucket.try_acquire(*w) {
                Ok(()) => {
                    check(now, deferred);
                    admitted.push((now, *w))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::RateLimited | ErrorKind::InsufficientCapacity
                    ) => {}
                Err(e) => panic!("{e}"),
            },
            Op::Reserve { tokens, max_wait } => {
                if let Ok(r) = bucket.reserve(*tokens, Duration::from_nanos(*max_wait)) {
                    check(r.ready_at().as_nanos(), deferred);
                    pending.push((r, *tokens));
                }
            }
            Op::Commit(i) if !pending.is_empty() => {
                let (r, w) = pending.remove(i % pending.len());
                admitted.push((r.ready_at().as_nanos(), w));
                r.commit();
            }
            Op::Cancel(i) if !pending.is_empty() => {
                let (r, _) = pending.remove(i % pending.len());
                r.cancel();
            }
            Op::Commit(_) | Op::Cancel(_) => {}
            Op::SetPolicy(p) => bucket.set_policy(*p),
            Op::Defer(ns) => {
                deferred = deferred.max(now + ns);
                bucket.defer_for(Duration::from_nanos(*ns))
            }
        }
    }
    for (r, w) in pending {
        admitted.push((r.ready_at().as_nanos(), w));
        r.commit();
    }
    admitted.sort_by_key(|a| a.0);
    admitted
}

fn windows(policies: &[Policy]) -> Vec<u64> {
    let mut ws = vec![
        1,
        1_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
        10_000_000_000,
    ];
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)
    ))]

    #[test]
    fn admitted_weight_never_exceeds_capacity_plus_rate_times_window(
        first in policy(),
        ops in prop::collection::vec(op(1.0), 1..120),
        scale in 0.1f64..1.0,
    ) {
        // Weights are a fraction of the smallest capacity the schedule uses.
        let mut policies = vec![first];
        policies.extend(ops.iter().filter_map(|o| match o { Op::SetPolicy(p) => Some(*p), _ => None }));
        let min_cap = policies.iter().map(|p| p.capacity()).fold(f64::INFINITY, f64::min);
        let ops: Vec<Op> = ops.into_iter().map(|o| match o {
            Op::Try(f) => Op::Try(f * min_cap * scale.max(0.1)),
            Op::Reserve { tokens, max_wait } => Op::Reserve { tokens: tokens * min_cap, max_wait },
            o => o,
        }).collect();
        let admitted = run(first, &ops);
        let cap = policies.iter().map(|p| p.capacity()).fold(0.0, f64::max);
        let rate = policies.iter().map(|p| p.tokens_per_second()).fold(0.0, f64::max);
        for w in windows(&policies) {
            let got = max_in_window(&admitted, w);
            let bound = cap + rate * w as f64 / 1e9;
            prop_assert!(got <= bound + 1e-9, "window {w} ns: admitted {got} > bound {bound}; {admitted:?}");
        }
    }

    #[test]
    fn nothing_is_admitted_before_a_deferral_whatever_the_policy_changes(
        first in policy(),
        ops in prop::collection::vec(op(1.0), 1..120),
        unlimited in prop::collection::vec(any::<bool>(), 120),
    ) {
        // Some policy changes go to unlimited: a deferral must outlive them too.
        let ops: Vec<Op> = ops.into_iter().zip(unlimited).map(|(o, u)| match o {
            Op::SetPolicy(_) if u => Op::SetPolicy(Policy::unlimited()),
            Op::Try(f) => Op::Try(f * 0.5),
            Op::Reserve { tokens, max_wait } => Op::Reserve { tokens: tokens * 0.5, max_wait },
            o => o,
        }).collect();
        let mut early = None;
        run_checked(first, &ops, |at, deferred| {
            if at < deferred && early.is_none() {
                early = Some((at, deferred));
            }
        });
        prop_assert!(early.is_none(), "admitted at {:?} before the deferral", early);
    }

    #[test]
    fn window_policy_admits_at_most_n_in_any_window(
        n in 1u32..30,
        window_ms in 50u64..5_000,
        burst_frac in 0.0f64..1.0,
        ops in prop::collection::vec(op(1.0), 1..150),
    ) {
        let burst = (1.0 + (n as f64 - 1.0) * burst_frac).floor();
        let policy = Policy::window(n, Duration::from_millis(window_ms)).unwrap().burst(burst).unwrap();
        // One-token requests; no policy changes (the promise is per policy).
        let ops: Vec<Op> = ops.into_iter().filter_map(|o| match o {
            Op::Try(_) => Some(Op::Try(1.0)),
            Op::Reserve { max_wait, .. } => Some(Op::Reserve { tokens: 1.0, max_wait }),
            Op::SetPolicy(_) => None,
            o => Some(o),
        }).collect();
        let admitted = run(policy, &ops);
        let got = max_in_window(&admitted, window_ms * 1_000_000);
        prop_assert!(got <= n as f64, "{policy}: {got} in a window of {window_ms} ms; {admitted:?}");
    }
}
