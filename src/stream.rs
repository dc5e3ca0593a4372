//! Running work under a rate (feature `stream`): a [`Stream`] extension,
//! [`RateLimitExt`], that paces a stream's items, or runs a stream of
//! futures at a source's rate with at most `n` of them at once, their
//! results in input order or in completion order.
//!
//! This module owns the scheduling of many pieces of work: when the next
//! one is pulled, when its slot is taken, how many run at once. Admission
//! is the [`Limiter`]'s: a registry source ([`SourceHandle`]) or a
//! [`TokenBucket`].
//!
//! ```
//! use futures_util::StreamExt;
//! use tollgate::stream::{self, RateLimitExt};
//! use tollgate::{Registry, Source};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tollgate::Error> {
//! let registry = Registry::builder()
//!     .source(Source::new("api").limit("50/s".parse()?))
//!     .build()?;
//! let api = registry.source("api")?;
//! let fetch = |id: u32| async move { id * 2 }; // an HTTP call, say
//!
//! // 50 a second, at most 4 at once, results in input order.
//! let results: Vec<_> = stream::iter((0..100).map(fetch)).limited(&api, 4).collect().await;
//! assert_eq!(results[99], Ok(198));
//! # Ok(()) }
//! ```
//!
//! # How it runs
//!
//! Everything runs inside the stream's own `poll_next`: no task is spawned
//! per item, and nothing runs unless the stream is polled. An item is
//! pulled only when a place is free (fewer than `concurrency` running),
//! and its slot is taken only once it has been pulled, so no tokens are
//! taken for work that does not exist and no slot is held by work that
//! waits for a place. A future keeps its [`Permit`] until
//! it completes, so a source's `max_in_flight` counts it too.
//!
//! An item whose slot is refused (a source in reject mode, a `max_wait`
//! that ran out, a bad token count) comes out as `Err`, its future never
//! run. Dropping the stream drops the work in flight and the wait for the
//! next slot, which gives its tokens back (see
//! [`Acquire`]).
//!
//! The ordered form ([`RateLimitExt::limited`]) counts a finished result
//! that waits for an earlier one among the `concurrency` places, as
//! `futures`' `buffered` does, so memory stays bounded.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use pin_project_lite::pin_project;

use crate::clock::Clock;
use crate::registry::{Acquire, SourceHandle};
use crate::{Error, Permit, TokenBucket};

/// A stream from an iterator (re-exported from `futures-util`), for running
/// an iterator of futures: `stream::iter(urls.map(fetch)).limited(&api, 4)`.
pub use futures_util::stream::iter;

/// What the adapters take slots from: a registry source, or a bucket.
pub trait Limiter {
    /// Held while the work runs (a source's [`Permit`] keeps its in-flight
    /// slot).
    type Permit;
    /// The wait for a slot; dropping it before the slot gives the tokens
    /// back.
    type Acquire: Future<Output = Result<Self::Permit, Error>>;

    /// Waits for `tokens`.
    fn acquire(&self, tokens: f64) -> Self::Acquire;
}

impl Limiter for SourceHandle {
    type Permit = Permit;
    type Acquire = Acquire;

    fn acquire(&self, tokens: f64) -> Acquire {
        SourceHandle::acquire(self, tokens)
    }
}

impl<L: Limiter + ?Sized> Limiter for &L {
    type Permit = L::Permit;
    type Acquire = L::Acquire;

    fn acquire(&self, tokens: f64) -> L::Acquire {
        (**self).acquire(tokens)
    }
}

/// A bucket's wait, boxed: [`TokenBucket::acquire`] is an `async fn`.
pub type BucketAcquire<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

impl<'a, C: Clock> Limiter for &'a TokenBucket<C> {
    type Permit = ();
    type Acquire = BucketAcquire<'a>;

    fn acquire(&self, tokens: f64) -> BucketAcquire<'a> {
        Box::pin(TokenBucket::acquire(*self, tokens))
    }
}

impl<C: Clock> Limiter for Arc<TokenBucket<C>> {
    type Permit = ();
    type Acquire = BucketAcquire<'static>;

    fn acquire(&self, tokens: f64) -> BucketAcquire<'static> {
        let bucket = self.clone();
        // Named in full: `bucket.acquire` would find this very method first.
        Box::pin(async move { TokenBucket::acquire(&bucket, tokens).await })
    }
}

/// Rate-limited forms of any [`Stream`]; see the [module docs](self).
pub trait RateLimitExt: Stream + Sized {
    /// Yields each item once its slot has come (one token an item; see
    /// [`Paced::tokens`]), in order.
    fn rate_limited<L: Limiter>(self, limiter: L) -> Paced<Self, L> {
        Paced {
            stream: self,
            limiter,
            tokens: 1.0,
            next: None,
            acquire: None,
        }
    }

    /// Runs a stream of futures, each at its slot, at most `concurrency` at
    /// once, yielding their results in input order. A `concurrency` of 0 is
    /// an error, yielded once.
    fn limited<L: Limiter>(self, limiter: L, concurrency: usize) -> Limited<Self, L>
    where
        Self::Item: Future,
    {
        Limited {
            run: Run::new(self, limiter, concurrency, FuturesOrdered::new()),
        }
    }

    /// [`limited`](Self::limited), yielding results as they complete.
    fn limited_unordered<L: Limiter>(
        self,
        limiter: L,
        concurrency: usize,
    ) -> LimitedUnordered<Self, L>
    where
        Self::Item: Future,
    {
        LimitedUnordered {
            run: Run::new(self, limiter, concurrency, FuturesUnordered::new()),
        }
    }
}

impl<St: Stream> RateLimitExt for St {}

pin_project! {
    /// A stream whose items each wait for their slot; see
    /// [`RateLimitExt::rate_limited`].
    #[must_use = "streams do nothing unless polled"]
    pub struct Paced<St: Stream, L: Limiter> {
        #[pin]
        stream: St,
        limiter: L,
        tokens: f64,
        next: Option<St::Item>,
        #[pin]
        acquire: Option<L::Acquire>,
    }
}

impl<St: Stream, L: Limiter> Paced<St, L> {
    /// Takes `tokens` per item instead of one.
    pub fn tokens(mut self, tokens: f64) -> Self {
        self.tokens = tokens;
        self
    }
}

impl<St: Stream, L: Limiter> Stream for Paced<St, L> {
    type Item = Result<St::Item, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(acquire) = this.acquire.as_mut().as_pin_mut() {
                let granted = std::task::ready!(acquire.poll(cx));
                this.acquire.set(None);
                let item = this.next.take();
                return Poll::Ready(match (granted, item) {
                    (Ok(_), Some(item)) => Some(Ok(item)),
                    (Err(e), _) => Some(Err(e)),
                    (Ok(_), None) => None,
                });
            }
            match std::task::ready!(this.stream.as_mut().poll_next(cx)) {
                Some(item) => {
                    *this.next = Some(item);
                    this.acquire.set(Some(this.limiter.acquire(*this.tokens)));
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

impl<St: Stream, L: Limiter> fmt::Debug for Paced<St, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paced")
            .field("tokens", &self.tokens)
            .field("waiting", &self.acquire.is_some())
            .finish_non_exhaustive()
    }
}

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
    ($name:ident) => {
        impl<St, L> $name<St, L>
        where
            St: Stream,
            St::Item: Future,
            L: Limiter,
        {
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

limited_common!(Limited);
limited_common!(LimitedUnordered);

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
