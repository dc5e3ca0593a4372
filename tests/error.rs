//! One error type through every adapter, with its causes (issue #21,
//! item 2): each adapter's refusal downcasts to `tollgate::Error` and reads
//! `retry_after()`, and a store error's `source()` is the Redis error.
//!
//! The server guard answers a refusal with a 429 response, never an error
//! (its error type is the inner service's), so its test reads the 429 and
//! takes the guard's one error path, `GuardBuilder::build`.

use std::time::Duration;

use tollgate::{Error, ErrorKind, OnLimit, Policy, Registry, Source};

/// A source at one request a minute that refuses rather than waits, its
/// one token already spent: the next request to `host` is refused for
/// about a minute.
fn spent(host: &str) -> Registry {
    let registry = Registry::builder()
        .source(
            Source::new("strict")
                .limit(Policy::per_minute(1.0).unwrap())
                .host(host)
                .on_limit(OnLimit::Reject),
        )
        .build()
        .unwrap();
    let _spent = registry.source("strict").unwrap().try_acquire(1.0).unwrap();
    registry
}

/// Walks `error`'s chain as `{:#}` would print it.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

#[test]
fn a_refusal_reads_the_same_through_error_and_rate_limited() {
    let registry = spent("r.test");
    let e = registry
        .try_acquire(&tollgate::Target::new("r.test", None, "/"), 1.0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.is_rate_limited() && !e.is_in_flight_full() && !e.is_config());
    let r = e.as_rate_limited().expect("the refusal");
    assert_eq!(e.retry_after(), Some(r.retry_after()));
    assert!(r.retry_after() > Duration::from_secs(59));
    assert_eq!(
        (e.source_name(), r.source()),
        (Some("strict"), Some("strict"))
    );
    // Its message is the refusal's own, and it has no cause to repeat.
    assert_eq!(e.to_string(), r.to_string());
    assert!(std::error::Error::source(&e).is_none());
    assert_eq!(chain(&e), e.to_string());
    // From the refusal back to the error.
    let again = Error::from(r.clone());
    assert_eq!(again.retry_after(), e.retry_after());
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn the_tower_layer_refuses_with_a_tollgate_error() {
    use http::{Request, Response};
    use tollgate::tower::RateLimitLayer;
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(spent("r.test")))
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }));
    let request = Request::get("https://r.test/").body(()).unwrap();
    let err: tower::BoxError = svc.oneshot(request).await.unwrap_err();
    let e = err.downcast_ref::<Error>().expect("a tollgate::Error");
    assert!(e.is_rate_limited(), "{e:?}");
    assert!(e.retry_after().unwrap() > Duration::from_secs(59), "{e:?}");
    assert_eq!(e.source_name(), Some("strict"));
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_refuses_with_a_tollgate_error() {
    use reqwest_middleware::ClientBuilder;
    use reqwest_retry::RetryTransientMiddleware;
    use tollgate::reqwest::{Backoff, RateLimitMiddleware, RateLimitStrategy};

    // Refused before anything is sent: the host need not exist.
    let registry = spent("r.invalid");
    let bare = ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(registry.clone()))
        .build();
    let err = bare.get("http://r.invalid/").send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(inner) = &err else {
        panic!("{err:?}")
    };
    let e = inner.downcast_ref::<Error>().expect("a tollgate::Error");
    assert!(e.retry_after().unwrap() > Duration::from_secs(59), "{e:?}");
    assert_eq!(
        tollgate::reqwest::tollgate_error(&err).map(Error::kind),
        Some(ErrorKind::RateLimited)
    );

    // Behind reqwest-retry, one wrapper more: the helper looks through it.
    let retried = ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy_and_strategy(
            Backoff::default(),
            RateLimitStrategy::default(),
        ))
        .with(RateLimitMiddleware::new(registry))
        .build();
    let err = retried.get("http://r.invalid/").send().await.unwrap_err();
    let e = tollgate::reqwest::tollgate_error(&err).unwrap_or_else(|| panic!("{err:?}"));
    assert!(e.retry_after().unwrap() > Duration::from_secs(59), "{e:?}");
    assert_eq!(e.source_name(), Some("strict"));
}

#[cfg(feature = "server")]
#[tokio::test]
async fn the_server_guard_answers_429_and_its_builder_errs_with_a_tollgate_error() {
    use http::{Request, Response, StatusCode};
    use tollgate::server::{tier, GuardLayer, HeaderKey};
    use tower::{Layer, ServiceExt};

    let registry = Registry::builder()
        .source(tier("free").limit("1/min".parse().unwrap()))
        .source(tier("paid").limit("10/s".parse().unwrap()))
        .build()
        .unwrap();
    let key = || HeaderKey::new("x-api-key").unwrap();

    // The guard's error path: a configuration it cannot build.
    let err: Box<dyn std::error::Error + Send + Sync> =
        GuardLayer::builder(registry.clone(), key())
            .build()
            .unwrap_err()
            .into();
    let e = err.downcast_ref::<Error>().expect("a tollgate::Error");
    assert!(e.is_config(), "{e:?}");
    assert_eq!(e.location(), Some("GuardLayer"));
    assert!(e.reason().unwrap().contains("default_tier"), "{e}");
    assert_eq!(e.retry_after(), None);

    // A refusal is an answer, not an error: a 429 whose Retry-After is the
    // refusal's `retry_after`, in whole seconds.
    let guard = GuardLayer::builder(registry, key())
        .default_tier("free")
        .build()
        .unwrap();
    let app = guard.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    }));
    let request = || Request::get("/").header("x-api-key", "k").body(()).unwrap();
    let ok = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let refused = app.oneshot(request()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "60");
}

#[cfg(feature = "redis")]
#[path = "common/redis.rs"]
mod redis_env;

#[cfg(feature = "redis")]
mod store {
    use super::*;
    use tollgate::redis::{OnStoreError, RedisStore};

    fn redis_error(e: &Error) -> &::redis::RedisError {
        std::error::Error::source(e)
            .unwrap_or_else(|| panic!("no source: {e:?}"))
            .downcast_ref::<::redis::RedisError>()
            .unwrap_or_else(|| panic!("not a RedisError: {e:?}"))
    }

    #[tokio::test]
    async fn a_store_error_keeps_the_redis_error_as_its_source() {
        // Nothing listens there.
        let port = super::redis_env::free_port();
        let url = format!("redis://:hunter2@127.0.0.1:{port}/");
        let err = RedisStore::builder(&url)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap_err();
        assert!(err.is_store(), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Store);
        assert!(redis_error(&err).is_connection_refusal(), "{err:?}");
        // The message names the URL without its password, and so does the
        // chain, which prints the cause once.
        let text = chain(&err);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains(&format!("Redis at redis://…@127.0.0.1:{port}/")),
            "{text}"
        );
        assert_eq!(text.matches("rate-limit store failed").count(), 1, "{text}");
        // A clone keeps the cause.
        assert!(redis_error(&err.clone()).is_connection_refusal());
    }

    #[tokio::test]
    async fn a_bucket_that_fails_closed_keeps_the_redis_error_as_its_source() {
        let url = format!("redis://127.0.0.1:{}/", super::redis_env::free_port());
        let store = RedisStore::builder(&url)
            .timeout(Duration::from_secs(2))
            .connect_lazy()
            .unwrap();
        let bucket = store
            .bucket_with(
                "b",
                &[Policy::per_second(1.0).unwrap()],
                OnStoreError::FailClosed,
            )
            .unwrap();
        // The first call asks Redis; the next answers from the fallback
        // while Redis is down, quoting the first error and keeping it.
        for _ in 0..2 {
            let err = bucket.try_acquire(1.0).await.unwrap_err();
            assert!(err.is_store() && !err.is_rate_limited(), "{err:?}");
            assert!(err.to_string().contains("fails closed"), "{err}");
            assert!(redis_error(&err).is_connection_refusal(), "{err:?}");
        }
    }
}
