//! The services: admission before the call, signals after it.

use std::mem;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::{Admission, ResponseFuture};
use super::BoxError;
use crate::{Permit, Registry, Target};

/// Admits each `http::Request` through a [`Registry`], then calls the inner
/// service; the response's status and headers feed back into the registry.
///
/// `poll_ready` is the inner service's. `call` moves the service that was
/// polled ready into the response future and leaves a clone in its place
/// (tower's clone-and-replace pattern), so a request waiting for its slot
/// never holds up others.
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let admission = Admission::new(&self.registry, &Target::from_request(&request));
        ResponseFuture::new(admission, inner, request, observe_http::<ResB>)
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
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let key = (self.key)(&request);
        let admission = Admission::new(&self.registry, &Target::new(key.as_ref(), None, ""));
        ResponseFuture::new(admission, inner, request, observe_nothing::<S::Response>)
    }
}
