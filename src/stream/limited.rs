//! [`Limited`] and [`LimitedUnordered`]: futures run at their slots, at
//! most `concurrency` at once, by one engine ([`Run`]) over an ordered or an
//! unordered set.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use pin_project_lite::pin_project;

use super::Limiter;
use crate::Error;

pin_project! {
    /// Runs futures at their slots, at most `concurrency` at once, results
    /// in input order; see [`RateLimitExt::limited`].
    #[must_use = "streams do nothing unless polled"]
    pub struct Limited<St, L>
    where
        St: Stream,
        St::Item: Future,
        L: Limiter,
    {
        #[pin]
        run: Run<St, L, FuturesOrdered<Holding<St::Item, L::Permit>>>,
    }
}

pin_project! {
    /// Runs futures at their slots, at most `concurrency` at once, results
    /// as they complete; see [`RateLimitExt::limited_unordered`].
    #[must_use = "streams do nothing unless polled"]
    pub struct LimitedUnordered<St, L>
    where
        St: Stream,
        St::Item: Future,
        L: Limiter,
    {
        #[pin]
        run: Run<St, L, FuturesUnordered<Holding<St::Item, L::Permit>>>,
    }
}

macro_rules! limited_common {
    ($name:ident, $set:ident) => {
        impl<St, L> $name<St, L>
        where
            St: Stream,
            St::Item: Future,
            L: Limiter,
        {
            pub(super) fn new(stream: St, limiter: L, concurrency: usize) -> Self {
                $name {
                    run: Run::new(stream, limiter, concurrency, $set::new()),
                }
            }

            /// Takes `tokens` per future instead of one.
            pub fn tokens(mut self, tokens: f64) -> Self {
                self.run.tokens = tokens;
                self
            }
        }

        impl<St, L> Stream for $name<St, L>
        where
            St: Stream,
            St::Item: Future,
            L: Limiter,
        {
            type Item = Result<<St::Item as Future>::Output, Error>;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                self.project().run.poll_next(cx)
            }
        }

        impl<St, L> fmt::Debug for $name<St, L>
        where
            St: Stream,
            St::Item: Future,
            L: Limiter,
        {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("concurrency", &self.run.concurrency)
                    .field("running", &self.run.running.len())
                    .field("tokens", &self.run.tokens)
                    .finish_non_exhaustive()
            }
        }
    };
}

limited_common!(Limited, FuturesOrdered);
limited_common!(LimitedUnordered, FuturesUnordered);

pin_project! {
    /// One piece of work: its future and the permit it holds until done,
    /// or the refusal of its slot.
    #[project = HoldingProj]
    pub(crate) enum Holding<F, P> {
        Running {
            #[pin]
            fut: F,
            permit: Option<P>,
        },
        Refused {
            error: Option<Error>,
        },
    }
}

impl<F: Future, P> Future for Holding<F, P> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HoldingProj::Running { fut, permit } => {
                let out = std::task::ready!(fut.poll(cx));
                permit.take(); // the in-flight slot ends with the work
                Poll::Ready(Ok(out))
            }
            HoldingProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Error::config("stream", "polled after it completed")))),
        }
    }
}

/// The running set: ordered or not.
pub(crate) trait Running<F>: Stream<Item = F::Output> + Unpin
where
    F: Future,
{
    fn push(&mut self, fut: F);
    fn count(&self) -> usize;
}

impl<F: Future> Running<F> for FuturesOrdered<F> {
    fn push(&mut self, fut: F) {
        self.push_back(fut);
    }
    fn count(&self) -> usize {
        self.len()
    }
}

impl<F: Future> Running<F> for FuturesUnordered<F> {
    fn push(&mut self, fut: F) {
        FuturesUnordered::push(self, fut);
    }
    fn count(&self) -> usize {
        self.len()
    }
}

pin_project! {
    /// The engine of [`Limited`] and [`LimitedUnordered`].
    pub(crate) struct Run<St: Stream, L: Limiter, Q> {
        #[pin]
        stream: St,
        limiter: L,
        tokens: f64,
        concurrency: usize,
        upstream_done: bool,
        next: Option<St::Item>,
        #[pin]
        acquire: Option<L::Acquire>,
        running: Q,
    }
}

impl<St: Stream, L: Limiter, Q> Run<St, L, Q> {
    fn new(stream: St, limiter: L, concurrency: usize, running: Q) -> Self {
        Run {
            stream,
            limiter,
            tokens: 1.0,
            concurrency,
            upstream_done: false,
            next: None,
            acquire: None,
            running,
        }
    }
}

impl<St, L, Q> Run<St, L, Q>
where
    St: Stream,
    St::Item: Future,
    L: Limiter,
    Q: Running<Holding<St::Item, L::Permit>>,
{
    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<<St::Item as Future>::Output, Error>>> {
        let mut this = self.project();
        if *this.concurrency == 0 {
            if *this.upstream_done {
                return Poll::Ready(None);
            }
            *this.upstream_done = true;
            return Poll::Ready(Some(Err(Error::config(
                "limited",
                "the concurrency must be at least 1; use usize::MAX for no cap",
            ))));
        }
        // Fill the free places: pull an item, then wait for its slot.
        while this.running.count() < *this.concurrency {
            if let Some(acquire) = this.acquire.as_mut().as_pin_mut() {
                let Poll::Ready(granted) = acquire.poll(cx) else {
                    break;
                };
                this.acquire.set(None);
                let Some(fut) = this.next.take() else {
                    continue;
                };
                this.running.push(match granted {
                    Ok(permit) => Holding::Running {
                        fut,
                        permit: Some(permit),
                    },
                    Err(e) => Holding::Refused { error: Some(e) },
                });
                continue;
            }
            if *this.upstream_done {
                break;
            }
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    *this.next = Some(item);
                    this.acquire.set(Some(this.limiter.acquire(*this.tokens)));
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        match Pin::new(&mut *this.running).poll_next(cx) {
            Poll::Ready(Some(out)) => Poll::Ready(Some(out)),
            Poll::Ready(None) if *this.upstream_done && this.acquire.is_none() => Poll::Ready(None),
            // Empty, but more may come: the stream or the slot will wake us.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}
