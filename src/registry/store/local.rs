//! The store seam without the feature `redis`: every bucket set is kept in
//! this process, so each operation is what a local set does (nothing to
//! tell, nothing to wait for), and the compiler removes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::super::buckets::{Buckets, Cost};
use super::super::Source;
use crate::clock::Timestamp;
use crate::sync::Arc;
use crate::{Error, Policy};

/// What a [`Source`] chose: nothing to choose without a shared store.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Choice;

/// The registry's store: none.
#[derive(Clone, Default)]
pub(crate) struct RegistryStore;

/// Where a source's sets keep their state: this process.
#[derive(Default)]
pub(crate) struct SourceStore;

impl SourceStore {
    /// This process, for every source.
    pub(crate) fn of(_: &RegistryStore, _: &Source, _: bool) -> Result<Self, Error> {
        Ok(SourceStore)
    }
}

/// One bucket set's store: this process.
#[derive(Debug)]
pub(crate) struct SetStore;

/// An admission a shared store decides: never, here.
pub(crate) enum Wait {}

impl Future for Wait {
    type Output = Result<(Timestamp, f64), Error>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match *self.get_mut() {}
    }
}

impl SetStore {
    pub(crate) fn new(_: &SourceStore, _: &str, _: Option<&str>, _: &[Policy]) -> Self {
        SetStore
    }

    #[inline(always)]
    pub(crate) fn is_shared(&self) -> bool {
        false
    }

    pub(crate) fn defer(&self, _: Duration) {}

    pub(crate) fn set_limits(&self, _: &[Policy]) {}

    pub(crate) fn is_idle_at(&self, _: tokio::time::Instant) -> bool {
        true
    }

    pub(crate) fn admission(
        &self,
        _: &Arc<Buckets>,
        _: Cost,
        _: Timestamp,
        _: Duration,
    ) -> Option<Wait> {
        None
    }
}
