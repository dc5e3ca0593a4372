//! [`Paced`]: a stream whose items each wait for their slot.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::Limiter;
use crate::Error;

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
    pub(super) fn new(stream: St, limiter: L) -> Self {
        Paced {
            stream,
            limiter,
            tokens: 1.0,
            next: None,
            acquire: None,
        }
    }

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
