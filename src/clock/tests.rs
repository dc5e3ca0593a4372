//! The clocks' unit tests.

use super::*;

#[test]
fn timestamps_saturate() {
    let t = Timestamp::from_nanos(5);
    assert_eq!((t - Duration::from_secs(1)).as_nanos(), 0);
    assert_eq!((t + Duration::MAX).as_nanos(), u64::MAX);
    assert_eq!(
        t.saturating_duration_since(Timestamp::from_nanos(9)),
        Duration::ZERO
    );
}

#[test]
fn real_time_clocks_move_forward_at_real_speed() {
    fn check<C: Clock>(c: C) {
        let (a, start) = (c.now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let moved = c.now().saturating_duration_since(a);
        let real = start.elapsed();
        assert!(moved >= Duration::from_millis(19), "{moved:?}");
        // Within 5 ms of the OS clock over the same span.
        assert!(
            moved <= real + Duration::from_millis(5),
            "{moved:?} vs {real:?}"
        );
    }
    check(FastClock::new());
    check(MonotonicClock);
}

#[test]
fn blocking_sleep_reaches_the_deadline() {
    let c = FastClock::new();
    let deadline = c.now() + Duration::from_millis(15);
    c.sleep_until_blocking(deadline);
    assert!(c.now() >= deadline);
}

#[tokio::test]
async fn async_sleep_reaches_the_deadline() {
    let c = FastClock::new();
    let deadline = c.now() + Duration::from_millis(15);
    c.sleep_until(deadline).await;
    assert!(c.now() >= deadline);
}

#[test]
fn manual_clock_never_goes_back_and_wakes_blocking_sleepers() {
    let c = ManualClock::new();
    c.set(Timestamp::from_nanos(100));
    c.set(Timestamp::from_nanos(50));
    assert_eq!(c.now().as_nanos(), 100);
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.sleep_until_blocking(Timestamp::from_nanos(1_000)));
    std::thread::sleep(Duration::from_millis(10));
    assert!(!t.is_finished());
    c.advance(Duration::from_nanos(900));
    t.join().unwrap();
}

#[tokio::test]
async fn manual_sleep_completes_on_advance() {
    let c = ManualClock::new();
    let mut sleep = tokio_test::task::spawn(c.sleep_until(Timestamp::from_nanos(10)));
    assert!(sleep.poll().is_pending());
    c.advance(Duration::from_nanos(9));
    assert!(!sleep.is_woken());
    assert!(sleep.poll().is_pending());
    c.advance(Duration::from_nanos(1));
    assert!(sleep.is_woken());
    assert!(sleep.poll().is_ready());
}
