//! 100,000 requests waiting on one source at once, driven by one task (no
//! task per waiter), on the default clock under paused tokio time: each is
//! polled at most twice (once to take its slot, once when woken at it),
//! they are admitted in the order they took their slots, and the source
//! runs at its rate: the last is admitted within 0.1 % of the ideal time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tollgate::{Clock, Policy, Registry, Source, Timestamp};

const WAITERS: usize = 100_000;
const RATE: f64 = 10_000.0;

/// Counts its polls and remembers the order of its first one.
struct Counted<F> {
    inner: F,
    index: usize,
    polls: usize,
    first_polls: Arc<AtomicUsize>,
    order: Option<usize>,
}

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = (usize, usize, usize, F::Output);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        if self.order.is_none() {
            self.order = Some(self.first_polls.fetch_add(1, Ordering::Relaxed));
        }
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(out) => Poll::Ready((self.index, self.order.unwrap(), self.polls, out)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_waiters_two_polls_each_in_order_at_the_rate() {
    let registry = Registry::builder()
        .source(Source::new("api").limit(Policy::per_second(RATE).unwrap()))
        .build()
        .unwrap();
    let handle = registry.source("api").unwrap();
    let first_polls = Arc::new(AtomicUsize::new(0));
    let mut waiting: FuturesUnordered<_> = (0..WAITERS)
        .map(|index| Counted {
            inner: handle.acquire(1.0),
            index,
            polls: 0,
            first_polls: first_polls.clone(),
            order: None,
        })
        .collect();
    let start = registry.clock().now();
    let mut admitted: Vec<(usize, Timestamp)> = vec![(0, Timestamp::ZERO); WAITERS];
    let mut most_polls = 0;
    let mut count = 0;
    while let Some((_, order, polls, permit)) = waiting.next().await {
        let permit = permit.unwrap();
        most_polls = most_polls.max(polls);
        admitted[order] = (order, permit.admitted_at());
        count += 1;
    }
    assert_eq!(count, WAITERS);
    assert!(most_polls <= 2, "a waiter was polled {most_polls} times");
    // FIFO: in the order they took their slots, admissions never go back.
    assert!(
        admitted.windows(2).all(|w| w[0].1 <= w[1].1),
        "admitted out of order"
    );
    // Utilisation: the last one goes within 0.1 % of the ideal time.
    let last = admitted.iter().map(|a| a.1).max().unwrap();
    let took = last.saturating_duration_since(start).as_secs_f64();
    let ideal = (WAITERS - 1) as f64 / RATE;
    assert!(
        took <= ideal / 0.999,
        "took {took} s for an ideal of {ideal} s"
    );
    assert!(
        took >= ideal * (1.0 - 1e-9),
        "faster than the rate: {took} < {ideal}"
    );
    println!(
        "{WAITERS} waiters: last admitted after {took:.6} s (ideal {ideal:.6} s, utilisation {:.5}), at most {most_polls} polls each",
        ideal / took
    );
}
