//! The layers: what `ServiceBuilder::layer` takes.

use tower_layer::Layer;

use super::service::{KeyedRateLimit, RateLimit};
use crate::Registry;

/// Wraps an HTTP client service in [`RateLimit`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    registry: Registry,
}

impl RateLimitLayer {
    /// A layer that admits every request through `registry`.
    pub fn new(registry: Registry) -> Self {
        RateLimitLayer { registry }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.registry.clone())
    }
}

/// Wraps any service in [`KeyedRateLimit`], routing each request by the key
/// `key(&request)` returns, matched against the registry's host rules.
#[derive(Clone, Debug)]
pub struct KeyedRateLimitLayer<F> {
    registry: Registry,
    key: F,
}

impl<F> KeyedRateLimitLayer<F> {
    /// A layer that routes by `key`.
    pub fn new(registry: Registry, key: F) -> Self {
        KeyedRateLimitLayer { registry, key }
    }
}

impl<S, F: Clone> Layer<S> for KeyedRateLimitLayer<F> {
    type Service = KeyedRateLimit<S, F>;

    fn layer(&self, inner: S) -> KeyedRateLimit<S, F> {
        KeyedRateLimit::new(inner, self.registry.clone(), self.key.clone())
    }
}
