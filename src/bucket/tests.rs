//! Per-operation tests on a manual clock.

use std::time::Duration;

use super::*;
use crate::{ErrorKind, ManualClock};

fn bucket(capacity: f64, rate: f64) -> (TokenBucket<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1000));
    let b = TokenBucket::with_clock(Policy::new(capacity, rate).unwrap(), clock.clone());
    (b, clock)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn retry_after(e: Error) -> Duration {
    e.as_rate_limited().expect("rate limited").retry_after()
}

#[test]
fn starts_full_and_refuses_with_the_exact_wait() {
    let (b, clock) = bucket(3.0, 10.0);
    assert_eq!(b.available(), 3.0);
    for _ in 0..3 {
        b.try_acquire(1.0).unwrap();
    }
    assert_eq!(retry_after(b.try_acquire(1.0).unwrap_err()), ms(100));
    clock.advance(ms(99));
    assert_eq!(retry_after(b.try_acquire(1.0).unwrap_err()), ms(1));
    clock.advance(ms(1));
    b.try_acquire(1.0).unwrap();
    assert_eq!(b.available(), 0.0);
}

#[test]
fn refusal_takes_nothing() {
    let (b, clock) = bucket(2.0, 1.0);
    b.try_acquire(2.0).unwrap();
    for _ in 0..100 {
        assert!(b.try_acquire(1.0).is_err());
    }
    clock.advance(Duration::from_secs(1));
    b.try_acquire(1.0).unwrap();
}

#[test]
fn fractional_and_weighted_tokens() {
    let (b, clock) = bucket(2.0, 4.0);
    b.try_acquire(0.5).unwrap();
    b.try_acquire(1.25).unwrap();
    assert!((b.available() - 0.25).abs() < 1e-9);
    assert_eq!(
        retry_after(b.try_acquire(0.5).unwrap_err()),
        ms(62) + Duration::from_micros(500)
    );
    clock.advance(ms(500));
    assert!((b.available() - 2.0).abs() < 1e-9);
    b.try_acquire(2.0).unwrap();
}

#[test]
fn reserve_is_fifo_and_respects_max_wait() {
    let (b, _clock) = bucket(1.0, 10.0);
    let r0 = b.reserve(1.0, Duration::ZERO).unwrap();
    let r1 = b.reserve(1.0, ms(100)).unwrap();
    let r2 = b.reserve(1.0, ms(200)).unwrap();
    assert_eq!(r0.delay(), Duration::ZERO);
    assert_eq!(r1.delay(), ms(100));
    assert_eq!(r2.delay(), ms(200));
    let refused = b.reserve(1.0, ms(299)).unwrap_err();
    assert_eq!(retry_after(refused), ms(300));
    // The refusal took nothing: the next slot is still 300 ms.
    let r3 = b.reserve(1.0, ms(300)).unwrap();
    assert_eq!(r3.delay(), ms(300));
    for r in [r0, r1, r2, r3] {
        r.commit();
    }
}

#[test]
fn go_cancel_the_last_reservation_gives_its_tokens_back() {
    let (b, _clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).unwrap();
    assert_eq!(r.delay(), Duration::from_secs(1));
    assert_eq!(r.cancel(), 1.0);
    assert_eq!(
        b.reserve(1.0, Duration::from_secs(5)).unwrap().delay(),
        Duration::from_secs(1)
    );
}

#[test]
fn go_cancel_one_that_later_reservations_depend_on_gives_nothing() {
    let (b, _clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    let first = b.reserve(1.0, Duration::from_secs(5)).unwrap();
    let second = b.reserve(1.0, Duration::from_secs(5)).unwrap();
    assert_eq!(second.delay(), Duration::from_secs(2));
    assert_eq!(first.cancel(), 0.0);
    // The second keeps its slot, and the next one queues after it.
    assert_eq!(
        b.reserve(1.0, Duration::from_secs(5)).unwrap().delay(),
        Duration::from_secs(3)
    );
    second.commit();
}

#[test]
fn a_partial_refund_is_not_given_unlike_go() {
    // Go would give back 1.5 here (2 less the 0.5 queued behind); that can
    // break the window bound when two such cancels stack up.
    let (b, _clock) = bucket(2.0, 1.0);
    b.try_acquire(2.0).unwrap();
    let big = b.reserve(2.0, Duration::from_secs(9)).unwrap();
    let small = b.reserve(0.5, Duration::from_secs(9)).unwrap();
    assert_eq!(big.cancel(), 0.0);
    assert_eq!(small.cancel(), 0.5, "the last one still comes back");
}

#[test]
fn stacked_cancels_never_let_a_newer_request_overtake_a_pending_one() {
    let (b, _clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    let r1 = b.reserve(0.6, Duration::from_secs(9)).unwrap();
    let r2 = b.reserve(0.6, Duration::from_secs(9)).unwrap();
    let pending = b.reserve(0.2, Duration::from_secs(9)).unwrap();
    r2.cancel();
    r1.cancel();
    let newer = b.reserve(1.0, Duration::from_secs(9)).unwrap();
    assert!(newer.ready_at() >= pending.ready_at() + Duration::from_secs(1));
    pending.commit();
    newer.commit();
}

#[test]
fn go_cancel_too_late_gives_nothing() {
    let (b, clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(r.cancel(), 0.0);
    assert!(b.try_acquire(1.0).is_err());
}

#[test]
fn drop_refunds_and_commit_keeps() {
    let (b, _clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    drop(b.reserve(1.0, Duration::from_secs(5)).unwrap());
    b.reserve(1.0, Duration::from_secs(5)).unwrap().commit();
    assert_eq!(
        b.reserve(1.0, Duration::from_secs(5)).unwrap().delay(),
        Duration::from_secs(2)
    );
}

#[test]
fn cancel_after_a_policy_change_gives_nothing() {
    let (b, _clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).unwrap();
    b.set_policy(Policy::per_second(2.0).unwrap());
    assert_eq!(r.cancel(), 0.0);
}

#[tokio::test]
async fn acquire_sleeps_exactly_to_the_slot_and_a_dropped_wait_refunds() {
    let (b, clock) = bucket(1.0, 2.0);
    b.acquire(1.0).await.unwrap();
    let mut waiting = tokio_test::task::spawn(b.acquire(1.0));
    assert!(waiting.poll().is_pending());
    clock.advance(ms(499));
    assert!(waiting.poll().is_pending());
    clock.advance(ms(1));
    assert!(waiting.is_woken());
    assert!(waiting.poll().is_ready());
    drop(waiting);

    let mut abandoned = tokio_test::task::spawn(b.acquire(1.0));
    assert!(abandoned.poll().is_pending());
    drop(abandoned);
    assert_eq!(
        b.reserve(1.0, Duration::from_secs(1)).unwrap().delay(),
        ms(500)
    );
}

#[test]
fn acquire_blocking_waits_for_the_clock() {
    let (b, clock) = bucket(1.0, 1.0);
    let b = std::sync::Arc::new(b);
    b.acquire_blocking(1.0).unwrap();
    let b2 = b.clone();
    let t = std::thread::spawn(move || b2.acquire_blocking(1.0));
    std::thread::sleep(ms(20));
    assert!(!t.is_finished(), "waits until the manual clock moves");
    clock.advance(Duration::from_secs(1));
    t.join().unwrap().unwrap();
}

#[test]
fn set_policy_keeps_the_level_clamped_to_the_new_capacity() {
    let (b, clock) = bucket(10.0, 1.0);
    b.try_acquire(4.0).unwrap();
    b.set_policy(Policy::new(20.0, 1.0).unwrap());
    assert!((b.available() - 6.0).abs() < 1e-9);
    b.set_policy(Policy::new(3.0, 100.0).unwrap());
    assert!((b.available() - 3.0).abs() < 1e-9);
    b.try_acquire(3.0).unwrap();
    clock.advance(ms(10));
    b.try_acquire(1.0).unwrap();
    assert_eq!(b.policy(), Policy::new(3.0, 100.0).unwrap());
}

#[test]
fn set_policy_keeps_pending_slots() {
    let (b, _clock) = bucket(1.0, 1.0);
    b.try_acquire(1.0).unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).unwrap();
    b.set_policy(Policy::per_second(10.0).unwrap());
    assert_eq!(r.delay(), Duration::from_secs(1));
    r.commit();
    assert_eq!(
        b.reserve(1.0, Duration::from_secs(5)).unwrap().delay(),
        ms(1100)
    );
}

#[test]
fn a_faster_policy_does_not_count_again_what_a_deferred_reservation_holds() {
    // 1/s burst 4, emptied, then deferred 2 s: one token at the deferral's
    // end. Sped up to 10/s, the level counts from the deferral's end (one
    // token there), not from now: from now, the 2 s before the deferral's
    // end would refill at 10/s, and a second speed-up would hand out the
    // same tokens again (4 + 2 at one instant under a burst of 4).
    let (b, _clock) = bucket(4.0, 1.0);
    b.try_acquire(4.0).unwrap();
    b.defer_for(Duration::from_secs(2));
    b.set_policy(Policy::new(4.0, 10.0).unwrap());
    let first = b.reserve(2.0, Duration::from_secs(5)).unwrap();
    assert_eq!(first.delay(), ms(2100));
    first.commit();
    b.set_policy(Policy::new(4.0, 20.0).unwrap());
    let next = b.reserve(2.0, Duration::from_secs(5)).unwrap();
    assert_eq!(next.delay(), ms(2200));
}

#[test]
fn a_slower_policy_counts_from_now_even_with_a_chosen_slot_ahead() {
    // A slot chosen by a caller (a source's other limit) lies 3 s ahead and
    // is then given back (the bucket is as before it). Slowing down must not
    // grant, before that slot, what the old rate would have gathered by it.
    let (b, clock) = bucket(4.0, 10.0);
    b.try_acquire(4.0).unwrap();
    let at = clock.now() + Duration::from_secs(3);
    let t = b.reserve_ticket(1.0, Some(at), Duration::MAX).unwrap();
    b.hold_until(at);
    b.cancel_ticket(&t);
    b.set_policy(Policy::new(4.0, 1.0).unwrap());
    // Empty now under either policy: the next token is 1 s away at 1/s.
    let e = b.try_acquire(1.0).unwrap_err();
    assert_eq!(retry_after(e), Duration::from_secs(1));
}

#[test]
fn a_cancelled_reservation_at_a_chosen_slot_leaves_the_bucket_as_it_was() {
    let (b, clock) = bucket(4.0, 10.0);
    b.try_acquire(4.0).unwrap();
    let t = b.reserve_ticket(
        1.0,
        Some(clock.now() + Duration::from_secs(3)),
        Duration::MAX,
    );
    let back = b.cancel_ticket(&t.unwrap());
    assert!((back - 1.0).abs() < 1e-9, "{back}");
    // Empty as before: the next token in 0.1 s, not after the 3 s slot.
    assert_eq!(retry_after(b.try_acquire(1.0).unwrap_err()), ms(100));
}

#[test]
fn unlimited_admits_everything_unless_deferred() {
    let (b, clock) = bucket(1.0, 1.0);
    b.set_policy(Policy::unlimited());
    for _ in 0..1000 {
        b.try_acquire(1e6).unwrap();
    }
    assert_eq!(b.available(), f64::INFINITY);
    b.defer_for(Duration::from_secs(2));
    assert_eq!(
        retry_after(b.try_acquire(1.0).unwrap_err()),
        Duration::from_secs(2)
    );
    clock.advance(Duration::from_secs(2));
    b.try_acquire(1.0).unwrap();
    b.set_policy(Policy::per_second(1.0).unwrap());
    assert_eq!(b.available(), 1.0, "from unlimited, the bucket starts full");
}

#[test]
fn defer_until_admits_one_at_the_deadline_then_refills() {
    let (b, clock) = bucket(5.0, 10.0);
    let deadline = clock.now() + Duration::from_secs(3);
    b.defer_until(deadline);
    assert_eq!(
        retry_after(b.try_acquire(1.0).unwrap_err()),
        Duration::from_secs(3)
    );
    b.defer_until(clock.now() + Duration::from_secs(1));
    assert_eq!(
        b.next_available(),
        deadline,
        "an earlier deferral never moves it back"
    );
    clock.set(deadline);
    b.try_acquire(1.0).unwrap();
    assert!(b.try_acquire(1.0).is_err());
    clock.advance(ms(100));
    b.try_acquire(1.0).unwrap();
}

#[test]
fn is_full_once_refilled() {
    let (b, clock) = bucket(2.0, 2.0);
    assert!(b.is_full());
    b.try_acquire(1.0).unwrap();
    assert!(!b.is_full());
    clock.advance(ms(500));
    assert!(b.is_full());
}

#[test]
fn bad_token_counts_are_typed_errors() {
    let (b, _clock) = bucket(2.0, 2.0);
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(
            matches!(b.try_acquire(t), Err(e) if e.kind() == ErrorKind::InvalidTokens),
            "{t}"
        );
    }
    assert!(matches!(
        b.try_acquire(2.5),
        Err(e) if e.kind() == ErrorKind::InsufficientCapacity
    ));
    assert!(matches!(
        b.reserve(3.0, Duration::MAX),
        Err(e) if e.kind() == ErrorKind::InsufficientCapacity
    ));
    b.try_acquire(2.0).unwrap();
}
