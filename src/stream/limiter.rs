//! [`Limiter`]: what the adapters take slots from.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::Clock;
use crate::registry::{Acquire, SourceHandle};
use crate::{Error, Permit, TokenBucket};

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
