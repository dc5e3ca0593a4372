//! Running work under a rate (feature `stream`): a [`Stream`] extension,
//! [`RateLimitExt`], that paces a stream's items, or runs a stream of
//! futures at a source's rate with at most `n` of them at once, their
//! results in input order or in completion order.
//!
//! This module owns the scheduling of many pieces of work: when the next
//! one is pulled, when its slot is taken, how many run at once. Admission
//! is the [`Limiter`]'s: a registry source
//! ([`SourceHandle`](crate::SourceHandle)) or a
//! [`TokenBucket`](crate::TokenBucket).
//!
//! | file | owns |
//! |---|---|
//! | `limiter.rs` | [`Limiter`]: what slots are taken from |
//! | `paced.rs` | [`Paced`]: a stream's items, each at its slot |
//! | `limited.rs` | [`Limited`], [`LimitedUnordered`]: futures run at their slots, `n` at once |
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
//! assert!(matches!(results[99], Ok(198)));
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
//! waits for a place. A future keeps its [`Permit`](crate::Permit) until
//! it completes, so a source's `max_in_flight` counts it too.
//!
//! An item whose slot is refused (a source in reject mode, a `max_wait`
//! that ran out, a bad token count) comes out as `Err`, its future never
//! run. Dropping the stream drops the work in flight and the wait for the
//! next slot, which gives its tokens back (see
//! [`Acquire`](crate::Acquire)).
//!
//! The ordered form ([`RateLimitExt::limited`]) counts a finished result
//! that waits for an earlier one among the `concurrency` places, as
//! `futures`' `buffered` does, so memory stays bounded.

mod limited;
mod limiter;
mod paced;

pub use limited::{Limited, LimitedUnordered};
pub use limiter::{BucketAcquire, Limiter};
pub use paced::Paced;

use std::future::Future;

use futures_core::Stream;

/// A stream from an iterator (re-exported from `futures-util`), for running
/// an iterator of futures: `stream::iter(urls.map(fetch)).limited(&api, 4)`.
pub use futures_util::stream::iter;

/// Rate-limited forms of any [`Stream`]; see the [module docs](self).
///
/// ```
/// use futures_util::StreamExt;
/// use tollgate::stream::{self, RateLimitExt};
/// use tollgate::{Registry, Source};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tollgate::Error> {
/// let registry = Registry::builder().source(Source::new("api").limit("10/s".parse()?)).build()?;
/// let api = registry.source("api")?;
/// let start = tokio::time::Instant::now();
/// let pages: Vec<u32> = stream::iter((1..=20).map(|page| async move { page }))
///     .limited(&api, 2)                               // 10/s, 2 at once, in order
///     .map(|page| page.expect("the source's limit admits one token"))
///     .collect()
///     .await;
/// assert_eq!(pages, (1..=20).collect::<Vec<_>>());
/// assert!(start.elapsed() >= std::time::Duration::from_millis(1900));
/// # Ok(()) }
/// ```
pub trait RateLimitExt: Stream + Sized {
    /// Yields each item once its slot has come (one token an item; see
    /// [`Paced::tokens`]), in order.
    fn rate_limited<L: Limiter>(self, limiter: L) -> Paced<Self, L> {
        Paced::new(self, limiter)
    }

    /// Runs a stream of futures, each at its slot, at most `concurrency` at
    /// once, yielding their results in input order. A `concurrency` of 0 is
    /// an error, yielded once.
    fn limited<L: Limiter>(self, limiter: L, concurrency: usize) -> Limited<Self, L>
    where
        Self::Item: Future,
    {
        Limited::new(self, limiter, concurrency)
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
        LimitedUnordered::new(self, limiter, concurrency)
    }
}

impl<St: Stream> RateLimitExt for St {}
