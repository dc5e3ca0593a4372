//! [`RateLimitMiddleware`]: admission before sending, signals after.

use http::Extensions;
use reqwest_middleware::{Middleware, Next, Result};

use super::retry::SafeRequest;
use crate::retry::{is_safe_to_repeat, SafeToRetry};
use crate::{Error, Lane, Registry};

/// Admits each request through a [`Registry`] (waiting or refusing as its
/// source says), then observes the response. See the [module docs](super)
/// for where it goes in a chain.
///
/// It also tags each response with whether its request was safe to repeat
/// (an idempotent method, an `Idempotency-Key`, or
/// [`SafeToRetry`]), which is how
/// [`RateLimitStrategy`](super::RateLimitStrategy) learns what
/// reqwest-retry does not tell it.
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use tollgate::reqwest::RateLimitMiddleware;
/// use tollgate::{Registry, Source, UnknownHost};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tollgate::Error> {
/// let registry = Registry::builder()
///     .source(Source::new("api").limit("5/s".parse()?).host("api.example.com"))
///     .unknown_hosts(UnknownHost::Reject)
///     .build()?;
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(RateLimitMiddleware::new(registry))
///     .build();
/// // A host no rule matches is refused before anything is sent.
/// let err = client.get("http://elsewhere.invalid/").send().await.unwrap_err();
/// let refusal = tollgate::reqwest::tollgate_error(&err).expect("refused by the limiter");
/// assert_eq!(refusal.host(), Some("elsewhere.invalid"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitMiddleware {
    registry: Registry,
}

impl RateLimitMiddleware {
    /// A middleware that admits every request through `registry`.
    pub fn new(registry: Registry) -> Self {
        RateLimitMiddleware { registry }
    }
}

/// When the last attempt of this request was refused: a retry layer that
/// repeats the refusal (reqwest-retry with
/// [`RateLimitStrategy::retry_local_refusals`](super::RateLimitStrategy::retry_local_refusals))
/// waits its own backoff, which knows nothing of the refusal's
/// `retry_after`, so the next attempt waits out the rest here. The
/// extensions are the one request's, shared by its attempts.
#[derive(Clone, Copy, Debug)]
struct RefusedUntil(tokio::time::Instant);

fn refusal(e: Error, extensions: &mut Extensions) -> reqwest_middleware::Error {
    if let Some(at) = e
        .retry_after()
        .and_then(|after| tokio::time::Instant::now().checked_add(after))
    {
        extensions.insert(RefusedUntil(at));
    }
    reqwest_middleware::Error::middleware(e)
}

#[async_trait::async_trait]
impl Middleware for RateLimitMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let chosen = extensions.get::<Lane>().copied();
        let lane = self.registry.take_lane(req.headers_mut(), chosen);
        if let Some(RefusedUntil(at)) = extensions.remove::<RefusedUntil>() {
            tokio::time::sleep_until(at).await;
        }
        let target = super::target(req.url(), req.method()).with_lane(lane);
        // `acquire` admits at once without allocating when it can; the
        // tower layer splits the two steps only to avoid boxing its future.
        let permit = self
            .registry
            .acquire(&target, 1.0)
            .await
            .map_err(|e| refusal(e, extensions))?;
        let safe = extensions.get::<SafeToRetry>().is_some()
            || is_safe_to_repeat(req.method(), req.headers());
        let mut result = next.run(req, extensions).await;
        if let Ok(response) = &mut result {
            permit.observe(response.status(), response.headers());
            response.extensions_mut().insert(SafeRequest(safe));
        }
        drop(permit); // the in-flight slot ends with the response
        result
    }
}
