//! The bucket under real threads and under many tasks on paused tokio time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate::{MonotonicClock, Policy, TokenBucket, TokioClock};

#[test]
fn threads_hammering_try_acquire_stay_within_the_bound() {
    let policy = Policy::per_second(1000.0).unwrap().burst(10.0).unwrap();
    // The bucket reads `std::time::Instant`, as the bound below does: the
    // default clock (the TSC, calibrated) may run a few parts per million
    // apart from it, which the exact bound would count against the bucket.
    let start = Instant::now();
    let bucket = Arc::new(TokenBucket::with_clock(policy, MonotonicClock));
    let admitted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (bucket, admitted) = (bucket.clone(), admitted.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until {
                    if bucket.try_acquire(1.0).is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let elapsed = start.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    // Every admission lies inside [start, start + elapsed]: capacity + rate·W.
    let bound = 10.0 + 1000.0 * elapsed;
    println!("admitted {admitted} in {elapsed:.3} s (bound {bound:.1})");
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    // Not starved: busy threads take nearly every token (a loose margin for a busy machine).
    assert!(admitted >= 500.0, "only {admitted} admitted");
}

#[tokio::test(start_paused = true)]
async fn a_hundred_tasks_go_exactly_a_tenth_of_a_second_apart_in_the_order_they_asked() {
    let bucket = Arc::new(TokenBucket::with_clock(
        Policy::per_second(10.0).unwrap(),
        TokioClock::new(),
    ));
    let start = tokio::time::Instant::now();
    let asked = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (bucket, asked, log) = (bucket.clone(), asked.clone(), log.clone());
            tokio::spawn(async move {
                let fut = bucket.acquire(1.0);
                let order = asked.fetch_add(1, Ordering::SeqCst);
                // `acquire` reserves on its first poll, right here.
                fut.await.unwrap();
                log.lock().unwrap().push((order, start.elapsed()));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 100);
    log.sort_by_key(|(_, at)| *at);
    for (i, (order, at)) in log.iter().enumerate() {
        assert_eq!(*order, i, "admitted out of order");
        assert_eq!(*at, Duration::from_millis(100) * i as u32, "task {i}");
    }
}

#[test]
fn blocking_threads_share_one_fifo_schedule() {
    let bucket = Arc::new(TokenBucket::new(Policy::per_second(50.0).unwrap()));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let bucket = bucket.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    bucket.acquire_blocking(1.0).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    // 20 tokens at 50/s, burst 1: the last goes no earlier than 19 × 20 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(380),
        "{:?}",
        start.elapsed()
    );
}
