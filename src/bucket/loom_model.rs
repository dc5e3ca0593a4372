//! A loom model of the bucket: every interleaving (up to a preemption bound)
//! of takes, reservations with their refunds and commits, policy changes and
//! deferrals from two or three threads, on a clock that stands still.
//!
//! Built only with `--cfg tollgate_loom`, which swaps the bucket's atomics
//! and lock for loom's (see `crate::sync`):
//!
//! ```text
//! RUSTFLAGS="--cfg tollgate_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --lib loom_model
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` overrides the preemption bound (2 here).
//!
//! What every interleaving must keep:
//! * the window bound: the weight admitted in any window `[t, t + W)` is at
//!   most `capacity + rate·W`, with the largest capacity and rate in force
//!   (a reservation counts at its slot unless its cancel gave it back);
//! * the policy seqlock: a reader sees the params of one policy set, never
//!   the interval of one and the tolerance of another, and an even version;
//! * the floor: once a thread knows `defer_until(d)` has returned, nothing
//!   it is admitted lies before `d`, whatever the policy changes;
//! * conservation: with one policy, `tat` ends one interval past the start
//!   for every request that kept its token, none more, none less.

use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;

use super::{Params, TokenBucket};
use crate::clock::{Clock, Sleep, Timestamp};
use crate::sync::{model, Ordering};
use crate::Policy;

use std::time::Duration;

/// The model's "now": 10 s after the epoch, so a fresh bucket is full.
const T0: u64 = 10_000_000_000;

/// A clock that stands still. It is a std atomic, not loom's: no thread
/// writes it while the model runs, and every loom access is a scheduling
/// point, so a loom atomic would only multiply the interleavings without
/// adding one that matters. The model never sleeps: every wait it makes is
/// a reservation it commits or cancels.
#[derive(Clone)]
struct ModelClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl ModelClock {
    fn at(nanos: u64) -> Self {
        ModelClock(std::sync::Arc::new(nanos.into()))
    }
}

impl Clock for ModelClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn sleep_until(&self, _: Timestamp) -> Sleep {
        unreachable!("the loom model never sleeps")
    }

    fn sleep_until_blocking(&self, _: Timestamp) {
        unreachable!("the loom model never sleeps")
    }
}

type Bucket = TokenBucket<ModelClock>;
/// Admissions: (time in ns, weight).
type Log = Vec<(u64, f64)>;

fn bucket(policy: Policy) -> Arc<Bucket> {
    Arc::new(TokenBucket::with_clock(policy, ModelClock::at(T0)))
}

fn policy(capacity: f64, rate: f64) -> Policy {
    Policy::new(capacity, rate).expect("a valid model policy")
}

/// `try_acquire(w)`, logging an admission at the time it read.
fn take(bucket: &Bucket, w: f64, log: &mut Log) -> bool {
    match bucket.try_acquire_now(w) {
        Ok(at) => {
            log.push((at.as_nanos(), w));
            true
        }
        Err(e) if e.is_rate_limited() => false,
        Err(e) => panic!("try_acquire({w}): {e}"),
    }
}

/// `reserve(w)` then commit: admitted at its slot.
fn reserve_commit(bucket: &Bucket, w: f64, log: &mut Log) -> Option<u64> {
    let r = bucket.reserve(w, Duration::from_secs(60)).ok()?;
    let slot = r.ready_at().as_nanos();
    r.commit();
    log.push((slot, w));
    Some(slot)
}

/// `reserve(w)` then cancel: admitted at its slot unless the cancel gave
/// the tokens back (counting it then too would only make the check stricter,
/// but a refund is meant to undo it).
fn reserve_cancel(bucket: &Bucket, w: f64, log: &mut Log) {
    if let Ok(r) = bucket.reserve(w, Duration::from_secs(60)) {
        let slot = r.ready_at().as_nanos();
        if r.cancel() == 0.0 {
            log.push((slot, w));
        }
    }
}

/// The seqlock: one consistent view holds one policy's params, at an even
/// version.
fn assert_one_policy(bucket: &Bucket, policies: &[Policy]) {
    let v = bucket.view();
    assert_eq!(v.seq % 2, 0, "a view at an odd version: {}", v.seq);
    assert!(
        policies.iter().any(|p| Params::from_policy(p) == v.params),
        "a view mixing policies: {:?}, set were {:?}",
        v.params,
        policies.iter().map(Params::from_policy).collect::<Vec<_>>()
    );
}

/// The window bound over every window that starts at an admission (the
/// worst ones): weight in `[t_i, t_j]` ≤ cap + rate·(t_j − t_i + 1 ns).
fn assert_bound(mut admitted: Log, policies: &[Policy]) {
    admitted.sort_by_key(|a| a.0);
    let cap = policies.iter().map(Policy::capacity).fold(0.0, f64::max);
    let rate = policies
        .iter()
        .map(Policy::tokens_per_second)
        .fold(0.0, f64::max);
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let mut sum = 0.0;
        for &(t, w) in &admitted[i..] {
            sum += w;
            let bound = cap + rate * (t - start + 1) as f64 / 1e9;
            assert!(
                sum <= bound + 1e-9,
                "{sum} admitted in [{start}, {t}] ns > bound {bound}: {admitted:?}"
            );
        }
    }
}

/// Takes from two threads while a third changes the policy (to a smaller
/// burst at a faster rate).
#[test]
fn loom_model_takes_and_a_policy_change() {
    model("takes_and_a_policy_change", || {
        let (p1, p2) = (policy(2.0, 1.0), policy(1.0, 4.0));
        let b = bucket(p1);
        let taker = {
            let b = b.clone();
            thread::spawn(move || {
                let mut log = Log::new();
                take(&b, 1.0, &mut log);
                take(&b, 1.0, &mut log);
                log
            })
        };
        let changer = {
            let b = b.clone();
            thread::spawn(move || b.set_policy(p2))
        };
        let mut log = Log::new();
        take(&b, 1.0, &mut log);
        log.extend(taker.join().unwrap());
        changer.join().unwrap();
        assert_one_policy(&b, &[p2]);
        assert_bound(log, &[p1, p2]);
    });
}

/// Reservations cancelled and committed against takes: a refund gives back
/// only what no one has queued behind, so the bound holds over the slots,
/// and no token is lost or made (every update is a compare-and-swap).
#[test]
fn loom_model_reserve_refund_commit() {
    model("reserve_refund_commit", || {
        let p = policy(2.0, 1.0);
        let b = bucket(p);
        let canceller = {
            let b = b.clone();
            thread::spawn(move || {
                let mut log = Log::new();
                reserve_cancel(&b, 1.0, &mut log);
                log
            })
        };
        let committer = {
            let b = b.clone();
            thread::spawn(move || {
                let mut log = Log::new();
                reserve_commit(&b, 1.0, &mut log);
                log
            })
        };
        let mut log = Log::new();
        take(&b, 1.0, &mut log);
        take(&b, 1.0, &mut log);
        log.extend(canceller.join().unwrap());
        log.extend(committer.join().unwrap());
        // Whatever was refunded is there to take again: the bound must
        // still hold with one more request at the next free slot.
        reserve_commit(&b, 1.0, &mut log);
        // Nothing lost, nothing made: on a clock that stands still, `tat`
        // has grown by one interval for each request that kept its token.
        let kept = log.len() as u64;
        assert_eq!(b.view().tat, T0 + kept * p.interval_nanos(), "{log:?}");
        assert_bound(log, &[p]);
    });
}

/// A policy change while one reservation is made and cancelled and another
/// is made and committed; then one more is made after it all.
#[test]
fn loom_model_policy_change_under_reservations() {
    model("policy_change_under_reservations", || {
        let (p1, p2) = (policy(2.0, 1.0), policy(1.0, 4.0));
        let b = bucket(p1);
        let canceller = {
            let b = b.clone();
            thread::spawn(move || {
                let mut log = Log::new();
                reserve_cancel(&b, 1.0, &mut log);
                log
            })
        };
        let changer = {
            let b = b.clone();
            thread::spawn(move || b.set_policy(p2))
        };
        let mut log = Log::new();
        reserve_commit(&b, 1.0, &mut log);
        log.extend(canceller.join().unwrap());
        changer.join().unwrap();
        reserve_commit(&b, 1.0, &mut log);
        assert_bound(log, &[p1, p2]);
    });
}

/// Two policy changes racing a reader: the seqlock serves one policy whole.
#[test]
fn loom_model_two_policy_changes_and_a_reader() {
    model("two_policy_changes_and_a_reader", || {
        let (p1, p2, p3) = (policy(2.0, 1.0), policy(1.0, 4.0), policy(3.0, 0.5));
        let b = bucket(p1);
        let changers: Vec<_> = [p2, p3]
            .into_iter()
            .map(|p| {
                let b = b.clone();
                thread::spawn(move || b.set_policy(p))
            })
            .collect();
        assert_one_policy(&b, &[p1, p2, p3]);
        let mut log = Log::new();
        take(&b, 1.0, &mut log);
        for c in changers {
            c.join().unwrap();
        }
        // The last change wins: the policy on record and the params agree.
        let last = b.policy();
        assert!(last == p2 || last == p3);
        assert_one_policy(&b, &[last]);
        assert_bound(log, &[p1, p2, p3]);
    });
}

/// A deferral racing a change to unlimited while a third thread takes or
/// reserves: once it knows the deferral has returned, nothing it is
/// admitted lies before the deadline; and after it all, nothing is.
fn deferral_model(reserve: bool) {
    let deadline = T0 + 3_000_000_000;
    let b = bucket(policy(2.0, 1.0));
    let known = Arc::new(AtomicBool::new(false));
    let deferrer = {
        let (b, known) = (b.clone(), known.clone());
        thread::spawn(move || {
            b.defer_until(Timestamp::from_nanos(deadline));
            known.store(true, Ordering::Release);
        })
    };
    let changer = {
        let b = b.clone();
        thread::spawn(move || b.set_policy(Policy::unlimited()))
    };
    let seen = known.load(Ordering::Acquire);
    let mut log = Log::new();
    if reserve {
        reserve_commit(&b, 1.0, &mut log);
    } else {
        take(&b, 1.0, &mut log);
    }
    if let Some(&(at, _)) = log.first() {
        assert!(
            !seen || at >= deadline,
            "admitted at {at} after a deferral to {deadline} returned"
        );
    }
    deferrer.join().unwrap();
    changer.join().unwrap();
    assert_eq!(b.deferred_until().as_nanos(), deadline);
    assert!(b.try_acquire(1.0).is_err(), "admitted before the deferral");
    let slot = reserve_commit(&b, 1.0, &mut Log::new()).expect("a slot within 60 s");
    assert!(
        slot >= deadline,
        "slot {slot} before the deferral to {deadline}"
    );
}

#[test]
fn loom_model_deferral_outlives_a_policy_change_take() {
    model("deferral_outlives_a_policy_change_take", || {
        deferral_model(false)
    });
}

#[test]
fn loom_model_deferral_outlives_a_policy_change_reserve() {
    model("deferral_outlives_a_policy_change_reserve", || {
        deferral_model(true)
    });
}
