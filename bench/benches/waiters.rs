//! 100,000 requests waiting on one limiter at once, driven by one task
//! (no task per waiter), in real time at 100,000 a second; tollgate beside
//! governor's `until_ready` and leaky-bucket's `acquire_one`, in one run.
//! Reports, per limiter: bytes per waiting request (the future plus what it
//! keeps on the heap while it waits), polls per admission, the time to
//! admit the last one against the ideal, utilisation, and whether the
//! order of admission kept the order of arrival.
//!
//! `cargo bench -p tollgate-bench --bench waiters` (set `WAITERS` to change the count). A
//! paused-time run of tollgate is in `tests/registry/many_waiters.rs`.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tollgate::{Policy, TokenBucket};
use tollgate_bench::{live, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

const RATE: u32 = 100_000;

struct Counted<F> {
    inner: Pin<Box<F>>,
    index: usize,
    polls: usize,
    first: Arc<FirstPolls>,
}

/// Counts first polls; when the last waiter has been polled once, every
/// one holds what it waits with, and the heap is measured.
struct FirstPolls {
    n: usize,
    seen: AtomicIsize,
    live_before: isize,
    per_waiter: Mutex<Option<f64>>,
}

impl<F: Future> Future for Counted<F> {
    type Output = (usize, usize);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        if self.polls == 1
            && self.first.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.first.n as isize
        {
            let live = live() - self.first.live_before;
            *self.first.per_waiter.lock().unwrap() = Some(live as f64 / self.first.n as f64);
        }
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready((self.index, self.polls)),
            Poll::Pending => Poll::Pending,
        }
    }
}

struct Report {
    name: &'static str,
    bytes_per_waiter: f64,
    polls_per_admission: f64,
    most_polls: usize,
    last: Duration,
    fifo: bool,
}

async fn run<F: Future>(name: &'static str, n: usize, make: impl Fn() -> F) -> Report {
    let first = Arc::new(FirstPolls {
        n,
        seen: AtomicIsize::new(0),
        live_before: live(),
        per_waiter: Mutex::new(None),
    });
    let start = Instant::now();
    let mut waiting: FuturesUnordered<Counted<F>> = FuturesUnordered::new();
    for index in 0..n {
        waiting.push(Counted {
            inner: Box::pin(make()),
            index,
            polls: 0,
            first: first.clone(),
        });
    }
    let mut done = vec![Duration::ZERO; n];
    let (mut polls, mut most) = (0, 0);
    while let Some((index, p)) = waiting.next().await {
        done[index] = start.elapsed();
        polls += p;
        most = most.max(p);
    }
    let last = start.elapsed();
    // FIFO within the timer's resolution: no request is admitted more than
    // one millisecond tick after one that arrived later.
    let mut later_min = Duration::MAX;
    let mut fifo = true;
    for t in done.iter().rev() {
        fifo &= *t <= later_min.saturating_add(Duration::from_millis(1));
        later_min = later_min.min(*t);
    }
    let bytes_per_waiter = first.per_waiter.lock().unwrap().unwrap_or(0.0);
    Report {
        name,
        bytes_per_waiter,
        polls_per_admission: polls as f64 / n as f64,
        most_polls: most,
        last,
        fifo,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let n: usize = std::env::var("WAITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ideal = Duration::from_secs_f64((n - 1) as f64 / RATE as f64);
    // One task drives every waiter, so tokio's cooperative budget (meant
    // for one request a task) is lifted: under it, a timer polled past the
    // task's budget reports pending and wakes itself, for every limiter.
    let reports = rt.block_on(tokio::task::unconstrained(async {
        let bucket = Arc::new(TokenBucket::new(Policy::per_second(RATE as f64).unwrap()));
        let tollgate = run("tollgate `acquire`", n, || {
            let b = bucket.clone();
            async move { b.acquire(1.0).await }
        })
        .await;
        let quota = governor::Quota::per_second(NonZeroU32::new(RATE).unwrap())
            .allow_burst(NonZeroU32::new(1).unwrap());
        let gov = Arc::new(governor::RateLimiter::direct(quota));
        let governor = run("governor `until_ready`", n, || {
            let g = gov.clone();
            async move { g.until_ready().await }
        })
        .await;
        // leaky-bucket refills on tokio's 1 ms timer: 100 a millisecond.
        let lb = Arc::new(
            leaky_bucket::RateLimiter::builder()
                .max(100)
                .initial(1)
                .refill(100)
                .interval(Duration::from_millis(1))
                .fair(true)
                .build(),
        );
        let leaky = run("leaky-bucket `acquire_one`", n, || {
            let l = lb.clone();
            async move { l.acquire_one().await }
        })
        .await;
        vec![tollgate, governor, leaky]
    }));
    println!(
        "{n} waiters at {RATE}/s, one task, real time; ideal time to admit the last: {:.3} s",
        ideal.as_secs_f64()
    );
    println!("| limiter | bytes per waiting request | polls per admission (most) | last admitted | utilisation | FIFO |");
    println!("|---|---|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {:.0} | {:.2} ({}) | {:.3} s | {:.4} | {} |",
            r.name,
            r.bytes_per_waiter,
            r.polls_per_admission,
            r.most_polls,
            r.last.as_secs_f64(),
            ideal.as_secs_f64() / r.last.as_secs_f64(),
            if r.fifo { "yes" } else { "no" }
        );
    }
}
