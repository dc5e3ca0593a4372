//! Several limits on one source under random schedules: every limit's
//! window bound holds at once (`capacity + rate·W` for each), with waits,
//! immediate takes and cancelled waits mixed. Cases: `PROPTEST_CASES`.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::common;

use common::max_in_window;
use proptest::prelude::*;
use tokio_test::task;
use tollgate::{Clock, Error, ManualClock, Permit, Policy, Registry, Source};

type Waiting = task::Spawn<Pin<Box<dyn Future<Output = Result<Permit, Error>>>>>;

fn poll_all(pending: &mut Vec<(Waiting, f64)>, admitted: &mut Vec<(u64, f64)>) {
    pending.retain_mut(|(fut, w)| match fut.poll() {
        Poll::Ready(Ok(p)) => {
            admitted.push((p.admitted_at().as_nanos(), *w));
            false
        }
        Poll::Ready(Err(e)) => panic!("{e}"),
        Poll::Pending => true,
    });
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Try(f64),
    Start(f64),
    Drop(usize),
    /// Both limits replaced (`Registry::set_limits`) while requests wait.
    SetLimits(Policy, Policy),
}

fn policy() -> impl Strategy<Value = Policy> {
    (0.5f64..6.0, 0.2f64..50.0).prop_map(|(c, r)| Policy::new(c, r).unwrap())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u64..300).prop_map(|ms| Op::Advance(ms * 1_000_000 / 3 + 1)),
            3 => (0.05f64..=1.0).prop_map(Op::Try),
            3 => (0.05f64..=1.0).prop_map(Op::Start),
            1 => any::<usize>().prop_map(Op::Drop),
            1 => (policy(), policy()).prop_map(|(a, b)| Op::SetLimits(a, b)),
        ],
        1..100,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1_000)
    ))]

    #[test]
    fn every_limit_of_a_source_keeps_its_bound(a in policy(), b in policy(), ops in ops()) {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(1));
        let registry = Registry::builder()
            .source(Source::new("s").limit(a).limit(b))
            .clock(clock.clone())
            .build()
            .unwrap();
        let src = registry.source("s").unwrap();
        // Every limit each position has had: a request weighs at most the
        // smallest capacity, and a window's bound takes the largest.
        let mut had = [vec![a], vec![b]];
        for op in &ops {
            if let Op::SetLimits(x, y) = op {
                had[0].push(*x);
                had[1].push(*y);
            }
        }
        let max_w = had
            .iter()
            .flatten()
            .map(|p| p.capacity())
            .fold(f64::INFINITY, f64::min);
        let mut admitted = Vec::new();
        let mut pending: Vec<(Waiting, f64)> = Vec::new();
        for op in &ops {
            match op {
                Op::Advance(ns) => {
                    clock.advance(Duration::from_nanos(*ns));
                    poll_all(&mut pending, &mut admitted);
                }
                Op::Try(f) => {
                    if let Ok(p) = src.try_acquire(f * max_w) {
                        admitted.push((p.admitted_at().as_nanos(), f * max_w));
                    }
                }
                Op::Start(f) => {
                    let s = src.clone();
                    let w = f * max_w;
                    let mut fut: Waiting = task::spawn(Box::pin(async move { s.acquire(w).await }));
                    match fut.poll() {
                        Poll::Ready(r) => admitted.push((r.unwrap().admitted_at().as_nanos(), w)),
                        Poll::Pending => pending.push((fut, w)),
                    }
                }
                Op::Drop(i) if !pending.is_empty() => {
                    let i = i % pending.len();
                    drop(pending.remove(i)); // cancels the wait
                }
                Op::Drop(_) => {}
                Op::SetLimits(x, y) => {
                    registry.set_limits("s", vec![*x, *y]).unwrap();
                    poll_all(&mut pending, &mut admitted);
                }
            }
        }
        while !pending.is_empty() {
            clock.advance(Duration::from_millis(50));
            poll_all(&mut pending, &mut admitted);
        }
        admitted.sort_by_key(|x| x.0);
        for policies in &had {
            let cap = policies.iter().map(|p| p.capacity()).fold(0.0, f64::max);
            let rate = policies.iter().map(|p| p.tokens_per_second()).fold(0.0, f64::max);
            for p in policies {
                let t = p.interval_nanos();
                for w in [1, 1_000_000, 100_000_000, 1_000_000_000, t, 2 * t + 1, p.tolerance_nanos(), 5 * t] {
                    let got = max_in_window(&admitted, w);
                    let bound = cap + rate * w as f64 / 1e9;
                    prop_assert!(got <= bound + 1e-9, "{p}: {got} > {bound} in {w} ns; {admitted:?}");
                }
            }
        }
        let _ = clock.now();
    }
}
