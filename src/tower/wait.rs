//! The waiting half of the adapters' response futures, shared by the
//! client layer ([`ResponseFuture`](super::ResponseFuture)) and the server
//! guard ([`GuardFuture`](crate::server::GuardFuture)): a request that
//! could not go at `call` waits for its slot, then for the inner service,
//! and is sent only outside any deferral.
//!
//! ```text
//!   ┌──────── deferred meanwhile: acquire again ───────┐
//!   ▼                                                  │
//! Acquiring ──slot──▶ Readying ──inner ready───────────┴──▶ (the call, with its permit)
//! ```
//!
//! * **Acquiring** holds the [`Acquire`] future, an unready clone of the
//!   inner service (so the wait holds none of its capacity), and the
//!   request.
//! * **Readying** holds the [`Permit`] and polls the clone's `poll_ready`;
//!   an inner service that is not always ready (a pool, a
//!   `ConcurrencyLimit`, a `Buffer`) makes the request wait here with its
//!   permit kept. Once ready, a deferral a server set meanwhile sends the
//!   request back to acquiring, with a fresh unready clone.
//!
//! Each future keeps its own calling state (what it does with the
//! response differs); this is the part that was the same.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tower_service::Service;

use crate::{Acquire, Error, Permit};

/// Gives back the readiness `ready` was polled to: it is replaced by a
/// fresh clone, which is unready, and the old one is dropped.
pub(crate) fn release<S: Clone>(ready: &mut S) {
    let fresh = ready.clone();
    drop(mem::replace(ready, fresh));
}

/// [`release`]s `ready` and returns an unready clone for a request to
/// wait with.
pub(crate) fn give_back<S: Clone>(ready: &mut S) -> S {
    release(ready);
    ready.clone()
}

/// A request waiting for its slot and then for the inner service.
pub(crate) struct Waiting<S, R> {
    phase: Phase,
    inner: S,
    request: Option<R>,
}

enum Phase {
    Acquiring(Acquire),
    /// The permit, and the finished `Acquire`, kept to queue again.
    Readying(Option<Permit>, Acquire),
}

/// What a finished wait gives: the inner call under way with its permit,
/// or why the request was not sent.
pub(crate) type Called<S, R> =
    Result<(<S as Service<R>>::Future, Permit), Failed<<S as Service<R>>::Error>>;

/// Why a waiting request was not sent.
pub(crate) enum Failed<E> {
    /// The limiter refused it (a wait past `max_wait`, a full in-flight cap
    /// in reject mode, ...).
    Refused(Error),
    /// The inner service's `poll_ready` failed.
    Inner(E),
}

impl<S, R> Waiting<S, R> {
    /// Waits on `acquire` with `unready`, a clone not polled ready.
    pub(crate) fn new(acquire: Acquire, unready: S, request: R) -> Self {
        Waiting {
            phase: Phase::Acquiring(acquire),
            inner: unready,
            request: Some(request),
        }
    }
}

impl<S, R> Waiting<S, R>
where
    S: Service<R> + Clone,
{
    /// Drives the wait: once the slot has come, the inner service is ready
    /// and no deferral holds the request, calls it and returns the call's
    /// future with the permit. Call it no more after it returns `Ready`.
    pub(crate) fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<Called<S, R>> {
        loop {
            match &mut self.phase {
                Phase::Acquiring(acquire) => match ready!(Pin::new(&mut *acquire).poll(cx)) {
                    Ok(permit) => {
                        let acquire = mem::replace(acquire, Acquire::finished());
                        self.phase = Phase::Readying(Some(permit), acquire);
                    }
                    Err(e) => return Poll::Ready(Err(Failed::Refused(e))),
                },
                Phase::Readying(permit, acquire) => {
                    if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                        return Poll::Ready(Err(Failed::Inner(e)));
                    }
                    if permit.as_ref().is_some_and(Permit::is_deferred) {
                        // A server deferred the set while the inner service
                        // was busy: give its readiness back and queue again.
                        release(&mut self.inner);
                        let mut acquire = mem::replace(acquire, Acquire::finished());
                        if let Some(p) = permit.take() {
                            acquire.again(p);
                        }
                        self.phase = Phase::Acquiring(acquire);
                        continue;
                    }
                    let (Some(permit), Some(request)) = (permit.take(), self.request.take()) else {
                        unreachable!("a request is called once");
                    };
                    return Poll::Ready(Ok((self.inner.call(request), permit)));
                }
            }
        }
    }
}
