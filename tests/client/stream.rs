//! The executor: a stream of futures run at a source's rate with a
//! concurrency cap, in paused time (the registry on `TokioClock`), so every
//! start time is exact.
#![cfg(feature = "stream")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tollgate::stream::{self, RateLimitExt};
use tollgate::{OnLimit, Policy, Registry, Source, TokenBucket, TokioClock};

const TASKS: usize = 1_000;
const RATE: f64 = 50.0;
const CONCURRENCY: usize = 4;

fn registry(policy: &str) -> Registry {
    Registry::builder()
        .source(Source::new("api").limit(policy.parse().unwrap()))
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

/// Records when each task starts, and how many run at once at most.
#[derive(Clone, Default)]
struct Probe {
    starts: Arc<Mutex<Vec<Duration>>>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Probe {
    /// Task `i`: runs 10 to 60 ms (shorter than 4 slots, so the rate, not
    /// the cap, is what binds), and returns `i`.
    fn task(&self, i: usize, origin: Instant) -> impl std::future::Future<Output = usize> {
        let probe = self.clone();
        async move {
            probe.starts.lock().unwrap().push(origin.elapsed());
            let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
            probe.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10 + (i as u64 * 7) % 51)).await;
            probe.running.fetch_sub(1, Ordering::SeqCst);
            i
        }
    }

    fn check(&self) {
        let starts = self.starts.lock().unwrap().clone();
        assert_eq!(starts.len(), TASKS);
        assert!(self.most.load(Ordering::SeqCst) <= CONCURRENCY);
        // "50/s" has burst 1: at most 50 in any second.
        let second = Duration::from_secs(1);
        let mut sorted = starts.clone();
        sorted.sort();
        for (i, t) in sorted.iter().enumerate() {
            let in_window = sorted[i..].iter().take_while(|s| **s < *t + second).count();
            assert!(
                in_window <= 50,
                "{in_window} starts in the second from {t:?}"
            );
        }
        // At least 99.9% of the rate: n-1 intervals over the span.
        let span = sorted[TASKS - 1] - sorted[0];
        let used = (TASKS - 1) as f64 / span.as_secs_f64();
        println!(
            "{TASKS} tasks over {span:?}: {used:.4}/s of {RATE}/s, at most {} at once",
            self.most.load(Ordering::SeqCst)
        );
        assert!(
            used >= 0.999 * RATE,
            "{used:.3}/s of {RATE}/s over {span:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_tasks_keep_both_limits_in_input_order() {
    let registry = registry("50/s");
    let api = registry.source("api").unwrap();
    let probe = Probe::default();
    let origin = Instant::now();
    let tasks = stream::iter((0..TASKS).map(|i| probe.task(i, origin)));
    let results: Vec<usize> = tasks
        .limited(&api, CONCURRENCY)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(results, (0..TASKS).collect::<Vec<_>>());
    probe.check();
}

#[tokio::test(start_paused = true)]
async fn a_thousand_tasks_keep_both_limits_in_completion_order() {
    let registry = registry("50/s");
    let api = registry.source("api").unwrap();
    let probe = Probe::default();
    let origin = Instant::now();
    let tasks = stream::iter((0..TASKS).map(|i| probe.task(i, origin)));
    let mut results: Vec<usize> = tasks
        .limited_unordered(api, CONCURRENCY)
        .map(|r| r.unwrap())
        .collect()
        .await;
    // Task durations differ, so completion order is not input order.
    assert_ne!(results, (0..TASKS).collect::<Vec<_>>());
    results.sort();
    assert_eq!(results, (0..TASKS).collect::<Vec<_>>());
    probe.check();
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_binds_when_tasks_are_slow() {
    let registry = registry("1000/s");
    let api = registry.source("api").unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks = stream::iter((0..40).map(|_| {
        let (running, most) = (running.clone(), most.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            running.fetch_sub(1, Ordering::SeqCst);
        }
    }));
    let done = tasks.limited_unordered(&api, 4).count().await;
    assert_eq!(done, 40);
    assert_eq!(most.load(Ordering::SeqCst), 4);
    // Ten rounds of four, 100 ms each (plus the few ms the rate spaces them).
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1_010),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_gives_the_pending_slot_back() {
    let registry = registry("1/s");
    let api = registry.source("api").unwrap();
    let mut run = stream::iter((0..3).map(|i| async move { i })).limited(&api, 1);
    // The first token, at once.
    assert!(matches!(run.next().await, Some(Ok(0))));
    // The second waits for its slot at 1 s; the stream is dropped before.
    let waited = tokio::time::timeout(Duration::from_millis(500), run.next()).await;
    assert!(waited.is_err());
    drop(run);
    tokio::time::advance(Duration::from_millis(500)).await;
    // Refunded: the slot at 1 s is free again.
    assert!(api.try_acquire(1.0).is_ok());
}

#[tokio::test(start_paused = true)]
async fn refused_slots_come_out_as_errors_in_place() {
    let registry = Registry::builder()
        .source(
            Source::new("strict")
                .limit("2/min burst 2".parse().unwrap())
                .on_limit(OnLimit::Reject),
        )
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let strict = registry.source("strict").unwrap();
    let out: Vec<_> = stream::iter((0..4).map(|i| async move { i }))
        .limited(&strict, 2)
        .collect()
        .await;
    assert!(matches!(out[..2], [Ok(0), Ok(1)]), "{out:?}");
    assert!(out[2..]
        .iter()
        .all(|r| r.as_ref().unwrap_err().as_rate_limited().is_some()));
    // A cap of zero is a typed error, not a hang.
    let zero: Vec<_> = stream::iter([async { 1 }])
        .limited(&strict, 0)
        .collect()
        .await;
    assert_eq!(zero.len(), 1);
    assert!(zero[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("at least 1"));
}

#[tokio::test(start_paused = true)]
async fn items_are_paced_by_a_bucket() {
    let bucket = TokenBucket::with_clock(Policy::per_second(10.0).unwrap(), TokioClock::new());
    let start = Instant::now();
    let times: Vec<Duration> = stream::iter(0..5)
        .rate_limited(&bucket)
        .map(|r| {
            r.unwrap();
            start.elapsed()
        })
        .collect()
        .await;
    let ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
    assert_eq!(ms, [0, 100, 200, 300, 400]);
    // Two tokens an item: 200 ms apart.
    let shared = Arc::new(TokenBucket::with_clock(
        Policy::new(2.0, 10.0).unwrap(),
        TokioClock::new(),
    ));
    let start = Instant::now();
    let n = stream::iter(0..3)
        .rate_limited(shared.clone())
        .tokens(2.0)
        .count()
        .await;
    assert_eq!((n, start.elapsed()), (3, Duration::from_millis(400)));
}
