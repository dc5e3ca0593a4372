//! The layers: what `ServiceBuilder::layer` takes.

use tower_layer::Layer;

use super::service::{KeyedRateLimit, RateLimit};
use crate::Registry;

/// Wraps an HTTP client service in [`RateLimit`].
///
/// Put it inside a retry layer, so that every attempt waits for its slot.
/// Here over a stand-in for an HTTP client:
///
/// ```
/// use std::convert::Infallible;
///
/// use http::{Request, Response};
/// use tollgate::tower::RateLimitLayer;
/// use tollgate::{Registry, Source};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let registry = Registry::builder()
///     .source(Source::new("api").limit("2/s".parse()?).host("api.example.com"))
///     .build()?;
/// let client = service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("ok")))
/// });
/// let svc = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(registry))
///     .service(client);
/// let start = tokio::time::Instant::now();
/// for _ in 0..3 {
///     let request = Request::get("https://api.example.com/items").body(String::new())?;
///     svc.clone().oneshot(request).await?; // the third waits for its slot
/// }
/// assert!(start.elapsed() >= std::time::Duration::from_millis(500));
/// # Ok(()) }
/// ```
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
