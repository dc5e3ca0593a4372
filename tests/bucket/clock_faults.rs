//! Clocks that misbehave: one that stalls for seconds, one that jumps
//! forward by a day, and one that steps backwards (which the `Clock`
//! contract forbids, but an OS clock source can do). The bucket survives
//! each: no panic, no wait longer than the schedule asks for, and no burst
//! above the window bound after the jump.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common;

use common::max_in_window;
use tollgate::clock::Sleep;
use tollgate::{Clock, Policy, Timestamp, TokenBucket};

const SEC: u64 = 1_000_000_000;

/// A clock set by hand that may go anywhere, backwards included.
#[derive(Clone, Default)]
struct Jumpy(Arc<AtomicU64>);

impl Jumpy {
    fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::SeqCst);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for Jumpy {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.get())
    }
    fn sleep_until(&self, _: Timestamp) -> Sleep {
        Box::pin(async {})
    }
    fn sleep_until_blocking(&self, _: Timestamp) {}
}

fn policy() -> Policy {
    Policy::new(5.0, 10.0).unwrap()
}

/// Tries `tokens` at each step of `times`; returns the admissions.
fn drive(
    bucket: &TokenBucket<Jumpy>,
    clock: &Jumpy,
    times: impl IntoIterator<Item = u64>,
) -> Vec<(u64, f64)> {
    let mut admitted = Vec::new();
    for t in times {
        clock.set(t);
        while bucket.try_acquire(1.0).is_ok() {
            admitted.push((t, 1.0));
        }
    }
    admitted
}

#[test]
fn a_jump_forward_by_a_day_refills_to_the_burst_and_no_more() {
    let clock = Jumpy::default();
    clock.set(SEC);
    let bucket = TokenBucket::with_clock(policy(), clock.clone());
    let day = 86_400 * SEC;
    // Busy for a second, then the clock leaps a day, then busy again.
    let before = (0..100).map(|i| SEC + i * SEC / 100);
    let after = (0..100).map(|i| 2 * SEC + day + i * SEC / 100);
    let mut admitted = drive(&bucket, &clock, before);
    admitted.extend(drive(&bucket, &clock, after));
    for w in [1, SEC / 10, SEC, 10 * SEC] {
        let got = max_in_window(&admitted, w);
        let bound = 5.0 + 10.0 * w as f64 / 1e9;
        assert!(got <= bound + 1e-9, "window {w} ns: {got} > {bound}");
    }
    // A day's worth of refill is capped at the burst.
    clock.set(3 * SEC + 2 * day);
    assert_eq!(bucket.available(), 5.0);
}

#[test]
fn a_stalled_clock_refuses_with_the_wait_and_resumes() {
    let clock = Jumpy::default();
    clock.set(SEC);
    let bucket = TokenBucket::with_clock(policy(), clock.clone());
    for _ in 0..5 {
        bucket.try_acquire(1.0).unwrap();
    }
    // The clock stands still: every try is refused with the same exact wait,
    // which never grows.
    let waits: Vec<Duration> = (0..1_000)
        .map(|_| {
            bucket
                .try_acquire(1.0)
                .unwrap_err()
                .as_rate_limited()
                .unwrap()
                .retry_after()
        })
        .collect();
    assert!(
        waits.iter().all(|w| *w == Duration::from_millis(100)),
        "{:?}",
        &waits[..3]
    );
    // A reservation made while stalled waits only its slot.
    let r = bucket.reserve(1.0, Duration::from_secs(1)).unwrap();
    assert_eq!(r.delay(), Duration::from_millis(100));
    r.commit();
    clock.set(SEC + SEC / 5);
    bucket.try_acquire(1.0).unwrap();
}

#[test]
fn a_clock_that_steps_backwards_neither_panics_nor_bursts() {
    let clock = Jumpy::default();
    clock.set(100 * SEC);
    let bucket = TokenBucket::with_clock(policy(), clock.clone());
    let mut admitted = drive(&bucket, &clock, (0..50).map(|i| 100 * SEC + i * SEC / 50));
    // Back by a minute, then forward again past where it was.
    let back: Vec<u64> = (0..700).map(|i| 40 * SEC + i * SEC / 10).collect();
    let later = drive(&bucket, &clock, back);
    // Nothing is admitted while the clock reads earlier than its debt, and
    // admissions resume once it has caught up.
    assert!(later.iter().all(|(t, _)| *t >= 100 * SEC), "{later:?}");
    assert!(later.len() >= 90, "{}", later.len());
    admitted.extend(later);
    admitted.sort_by_key(|a| a.0);
    bucket.reserve(1.0, Duration::MAX).unwrap().commit();
    assert!(bucket.available() >= 0.0);
    // Whatever the clock did, the admissions it reports keep the bound.
    let got = max_in_window(&admitted, SEC);
    assert!(got <= 5.0 + 10.0 + 1e-9, "{got}");
}
