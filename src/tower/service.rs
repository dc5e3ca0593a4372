//! The services: admission before the call, signals after it.

use std::task::{Context, Poll};

use tower_service::Service;

use super::future::{Observe, ResponseFuture};
use super::wait::{give_back, release};
use super::BoxError;
use crate::{Admission, Permit, Registry, Target};

/// Admits each `http::Request` through a [`Registry`], then calls the inner
/// service; the response's status and headers feed back into the registry.
///
/// `poll_ready` is the inner service's. A request admitted at `call` takes
/// the service that was polled ready and leaves a clone in its place
/// (tower's clone-and-replace pattern). A request that must wait for its
/// slot holds no readiness while it waits: it takes an unready clone, polls
/// it ready once its slot has come, and the readiness `poll_ready` reserved
/// is given back at once, so a waiting request never holds up others (a
/// `ConcurrencyLimit` slot, a pooled connection).
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    registry: Registry,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, registry: Registry) -> Self {
        RateLimit { inner, registry }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn observe_http<B>(permit: &Permit, response: &http::Response<B>) {
    permit.observe(response.status(), response.headers());
}

fn observe_nothing<T>(_: &Permit, _: &T) {}

impl<S, B, ResB> Service<http::Request<B>> for RateLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, http::Request<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let lane = self.registry.take_request_lane(&mut request);
        let target = Target::from_request_in(&request, lane);
        let admission = self.registry.admit_kept(&target, 1.0);
        respond(&mut self.inner, admission, request, observe_http::<ResB>)
    }
}

/// Admits any request through a [`Registry`], routed by a key taken from
/// the request (matched against the host rules, so `Source::host("search")`
/// routes the key `"search"`). Responses are not read.
#[derive(Clone, Debug)]
pub struct KeyedRateLimit<S, F> {
    inner: S,
    registry: Registry,
    key: F,
}

impl<S, F> KeyedRateLimit<S, F> {
    /// Wraps `inner`, routing by `key`.
    pub fn new(inner: S, registry: Registry, key: F) -> Self {
        KeyedRateLimit {
            inner,
            registry,
            key,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl<S, F, R, K> Service<R> for KeyedRateLimit<S, F>
where
    S: Service<R> + Clone,
    S::Error: Into<BoxError>,
    F: Fn(&R) -> K,
    K: AsRef<str>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let key = (self.key)(&request);
        let admission = self
            .registry
            .admit_kept(&Target::new(key.as_ref(), None, ""), 1.0);
        respond(
            &mut self.inner,
            admission,
            request,
            observe_nothing::<S::Response>,
        )
    }
}

/// The future for an admission. `ready` is the service `poll_ready` made
/// ready: it calls now if the request may go; otherwise it is replaced by a
/// fresh clone (giving back what its readiness reserved) and the future
/// waits with a clone of its own.
#[inline]
fn respond<S, R>(
    ready: &mut S,
    admission: Result<Admission, crate::Error>,
    request: R,
    observe: Observe<S::Response>,
) -> ResponseFuture<S, R>
where
    S: Service<R> + Clone,
{
    match admission {
        // Admitted now: the service polled ready calls at once, in place
        // (no clone: it is not carried into the future).
        Ok(Admission::Ready(permit)) => ResponseFuture::calling(permit, ready, request, observe),
        Ok(Admission::Wait(acquire)) => {
            // The readiness this call was given is not used now: give it
            // back (a fresh clone is unready), and wait with another.
            let unready = give_back(ready);
            ResponseFuture::waiting(acquire, unready, request, observe)
        }
        Err(e) => {
            release(ready);
            ResponseFuture::refused(e, observe)
        }
    }
}
