//! Reject means reject: a source in reject mode fails fast through each
//! retry adapter stacked outside the limiter (tower `RetryPolicy`, reqwest
//! `RetryMiddleware`, reqwest-retry with `RateLimitStrategy`), and with
//! `retry_local_refusals(true)` the limiter's refusals are retried after
//! their `retry_after`. Issue #20, item 3.
//!
//! The tower rows run on paused time; the reqwest rows against a server on
//! 127.0.0.1 in real time, asserting counts, with margins only on times.
#![cfg(all(feature = "tower", feature = "reqwest"))]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tollgate::backoff::{self, Jitter};
use tollgate::retry::RetryRules;
use tollgate::tower::{RateLimitLayer, RetryPolicy};
use tollgate::{OnLimit, Policy, RateLimited, Registry, Source, TokioClock, UnknownHost};
use tower::retry::RetryLayer;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

/// One source for `host`: one request per `every`, refused at once over it.
fn strict(host: &str, every: Duration) -> Registry {
    Registry::builder()
        .source(
            Source::new("strict")
                .host(host)
                .limit(Policy::new(1.0, 1.0 / every.as_secs_f64()).unwrap())
                .on_limit(OnLimit::Reject),
        )
        .clock(TokioClock::new())
        .unknown_hosts(UnknownHost::Reject)
        .build()
        .unwrap()
}

fn refusal_in(e: &BoxError) -> Option<&RateLimited> {
    e.downcast_ref::<tollgate::Error>()?.as_rate_limited()
}

/// Three GETs in a row through retry → rate limit → a server that counts:
/// what each returned (status, or `None` for a refusal), when each ended,
/// and how many reached the server.
async fn tower_three(policy: RetryPolicy) -> (Vec<Option<u16>>, Vec<Duration>, usize) {
    let registry = strict("x.test", Duration::from_secs(1));
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    let server = service_fn(move |_req: Request<()>| {
        s.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new("ok")) }
    });
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(RateLimitLayer::new(registry))
        .service(server);
    let start = tokio::time::Instant::now();
    let (mut answers, mut ends) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let req = Request::get("http://x.test/").body(()).unwrap();
        let answer = svc.ready().await.unwrap().call(req).await;
        answers.push(match answer {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => {
                let limited = refusal_in(&e).unwrap_or_else(|| panic!("{e}"));
                assert_eq!(limited.source(), Some("strict"));
                None
            }
        });
        ends.push(start.elapsed());
    }
    (answers, ends, sent.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn tower_retry_policy_hands_a_refusal_straight_back() {
    let (answers, ends, sent) = tower_three(RetryPolicy::default()).await;
    assert_eq!(answers, [Some(200), None, None]);
    assert_eq!(ends, [Duration::ZERO; 3], "refused at once, no wait");
    assert_eq!(sent, 1);
}

#[tokio::test(start_paused = true)]
async fn tower_retry_policy_waits_out_refusals_when_opted_in() {
    let policy = RetryPolicy::default().retry_local_refusals(true);
    let (answers, ends, sent) = tower_three(policy).await;
    assert_eq!(answers, [Some(200); 3]);
    assert_eq!(ends, [0, 1, 2].map(Duration::from_secs), "each at its slot");
    assert_eq!(sent, 3);
}

mod reqwest_rows {
    use std::net::SocketAddr;
    use std::time::Instant;

    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware};
    use reqwest_retry::RetryTransientMiddleware;
    use tollgate::reqwest::{Backoff, RateLimitMiddleware, RateLimitStrategy, RetryMiddleware};

    use super::*;

    /// The slot interval: long enough that a retry sent early would be
    /// refused again, short enough for a quick test.
    const EVERY: Duration = Duration::from_millis(300);

    /// A server on 127.0.0.1 that counts requests and answers 200.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let app = axum::Router::new().fallback(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, count)
    }

    fn client(retry: impl Middleware, registry: Registry) -> ClientWithMiddleware {
        ClientBuilder::new(reqwest::Client::new())
            .with(retry)
            .with(RateLimitMiddleware::new(registry))
            .build()
    }

    /// reqwest-retry's own schedule: 10 ms, far shorter than a slot.
    fn short_backoff() -> Backoff {
        Backoff(
            backoff::Backoff::default()
                .base(Duration::from_millis(10))
                .jitter(Jitter::None),
        )
    }

    /// Three GETs in a row: what each returned (`None`: the limiter's
    /// refusal), how long all three took, and how many reached the server.
    async fn three(retry: impl Middleware) -> (Vec<Option<u16>>, Duration, usize) {
        let (addr, count) = server().await;
        let client = client(retry, strict(&addr.to_string(), EVERY));
        let start = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..3 {
            let answer = client.get(format!("http://{addr}/")).send().await;
            answers.push(match answer {
                Ok(r) => Some(r.status().as_u16()),
                Err(e) => {
                    let limited = tollgate::reqwest::tollgate_error(&e)
                        .and_then(tollgate::Error::as_rate_limited)
                        .unwrap_or_else(|| panic!("{e:?}"));
                    assert_eq!(limited.source(), Some("strict"));
                    None
                }
            });
        }
        (answers, start.elapsed(), count.load(Ordering::SeqCst))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_middleware_hands_a_refusal_straight_back() {
        let (answers, took, sent) = three(RetryMiddleware::default()).await;
        assert_eq!(answers, [Some(200), None, None]);
        assert_eq!(sent, 1);
        assert!(took < EVERY, "refused at once: {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_middleware_waits_out_refusals_when_opted_in() {
        let rules = RetryRules::default().retry_local_refusals(true);
        let (answers, took, sent) = three(RetryMiddleware::new(rules)).await;
        assert_eq!(answers, [Some(200); 3]);
        assert_eq!(sent, 3);
        assert!(took >= 2 * EVERY, "{took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_strategy_hands_a_refusal_straight_back() {
        let retry = RetryTransientMiddleware::new_with_policy_and_strategy(
            short_backoff(),
            RateLimitStrategy::default(),
        );
        let (answers, took, sent) = three(retry).await;
        assert_eq!(answers, [Some(200), None, None]);
        assert_eq!(sent, 1);
        assert!(took < EVERY, "refused at once: {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_strategy_waits_out_refusals_when_opted_in() {
        // reqwest-retry waits 10 ms and allows one retry: only the wait
        // the middleware adds up to the refusal's `retry_after` lets that
        // one retry through.
        let policy = Backoff(
            backoff::Backoff::default()
                .base(Duration::from_millis(10))
                .max_retries(1)
                .jitter(Jitter::None),
        );
        let retry = RetryTransientMiddleware::new_with_policy_and_strategy(
            policy,
            RateLimitStrategy::default().retry_local_refusals(true),
        );
        let (answers, took, sent) = three(retry).await;
        assert_eq!(answers, [Some(200); 3]);
        assert_eq!(sent, 3);
        assert!(took >= 2 * EVERY, "{took:?}");
    }
}
