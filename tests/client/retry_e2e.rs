//! Retries end to end over 127.0.0.1, real time: a hyper-util tower stack
//! and reqwest clients against an axum server that counts what reaches it.
//! The server counts a request, then keeps it longer than the client waits:
//! the client's timeout fires after the server has the request. A POST is
//! then never sent again; a GET is. Counts are exact; time only bounds loops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request as ServerRequest;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate::backoff::Backoff;
use tollgate::retry::RetryRules;
use tollgate::tower::{RateLimitLayer, RetryPolicy};
use tollgate::{Registry, UnknownHost};
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

/// How long a client waits for an answer; the server holds `/slow` 3 s.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);

/// Requests that reached the server, by method and path.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<(Method, String), usize>>>);

impl Hits {
    fn get(&self, method: Method, path: &str) -> usize {
        let map = self.0.lock().unwrap();
        map.get(&(method, path.to_string())).copied().unwrap_or(0)
    }

    /// The count once it has stopped changing (a request the client sent
    /// may reach the server a moment later on a busy machine).
    async fn settled(&self, method: Method, path: &str) -> usize {
        let mut last = self.get(method.clone(), path);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.get(method.clone(), path);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }
}

/// `/slow`: counted, then held 3 s. `/unavailable`: 503. `/busy`: 503 with
/// `Retry-After: 1` the first time, then 200.
async fn server() -> (SocketAddr, Hits) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Hits::default();
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: ServerRequest| {
        let hits = h.clone();
        async move {
            let key = (req.method().clone(), req.uri().path().to_string());
            let n = {
                let mut map = hits.0.lock().unwrap();
                let n = map.entry(key.clone()).or_default();
                *n += 1;
                *n
            };
            let resp = Response::builder();
            match key.1.as_str() {
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    resp.status(200)
                }
                "/unavailable" => resp.status(503),
                "/busy" if n == 1 => resp.status(503).header("retry-after", "1"),
                _ => resp.status(200),
            }
            .body(Body::empty())
            .unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

fn registry() -> Registry {
    Registry::builder()
        .unknown_hosts(UnknownHost::PassThrough)
        .build()
        .unwrap()
}

/// The default rules with a short schedule (50, 100, 200 ms, full jitter).
fn quick() -> RetryRules {
    RetryRules::new(Backoff::default().base(Duration::from_millis(50)))
}

/// retry → rate limit → timeout → hyper-util, for `Full<Bytes>` bodies:
/// no conversion of the requests.
fn hyper_stack(
    rules: RetryRules,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<hyper::body::Incoming>,
    Error = tower::BoxError,
    Future: Send,
> + Clone {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::with_rules(rules)))
        .layer(RateLimitLayer::new(registry()))
        .layer(TimeoutLayer::new(CLIENT_TIMEOUT))
        .service(client)
}

fn body() -> Full<Bytes> {
    Full::new(Bytes::from_static(b"{\"title\":\"x\"}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_a_timed_out_post_reaches_the_server_once_and_a_get_is_retried() {
    let (addr, hits) = server().await;
    let uri = format!("http://{addr}/slow");

    let post = Request::post(&uri).body(body()).unwrap();
    let err = hyper_stack(RetryRules::default())
        .oneshot(post)
        .await
        .unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err:?}");
    assert_eq!(hits.settled(Method::POST, "/slow").await, 1);

    let get = Request::get(&uri).body(body()).unwrap();
    let err = hyper_stack(quick()).oneshot(get).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err:?}");
    assert_eq!(
        hits.settled(Method::GET, "/slow").await,
        4,
        "one try and three retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_a_post_that_could_not_connect_is_retried() {
    // hyper-util's own connect error, read along its source chain.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let attempts = Arc::new(Mutex::new(0));
    let a = attempts.clone();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::with_rules(quick())))
        .map_err(tower::BoxError::from)
        .map_request(move |r: Request<Full<Bytes>>| {
            *a.lock().unwrap() += 1;
            r
        })
        .service(client);
    let post = Request::post(format!("http://{addr}/items"))
        .body(body())
        .unwrap();
    assert!(svc.oneshot(post).await.is_err());
    assert_eq!(*attempts.lock().unwrap(), 4, "one try and three retries");
}

#[cfg(feature = "reqwest")]
mod reqwest_clients {
    use super::*;

    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
    use reqwest_retry::RetryTransientMiddleware;
    use tollgate::reqwest::{
        Backoff as RetryBackoff, RateLimitMiddleware, RateLimitStrategy, RetryMiddleware,
    };

    fn inner() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .unwrap()
    }

    fn tollgate_client(rules: RetryRules) -> ClientWithMiddleware {
        ClientBuilder::new(inner())
            .with(RetryMiddleware::new(rules))
            .with(RateLimitMiddleware::new(registry()))
            .build()
    }

    fn reqwest_retry_client() -> ClientWithMiddleware {
        let schedule = Backoff::default().base(Duration::from_millis(50));
        ClientBuilder::new(inner())
            .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                RetryBackoff(schedule),
                RateLimitStrategy::default(),
            ))
            .with(RateLimitMiddleware::new(registry()))
            .build()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_post_reaches_the_server_once_and_a_get_is_retried() {
        let (addr, hits) = server().await;
        let url = format!("http://{addr}/slow");

        let err = tollgate_client(RetryRules::default())
            .post(&url)
            .body("{}")
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(hits.settled(Method::POST, "/slow").await, 1);

        let err = tollgate_client(quick()).get(&url).send().await.unwrap_err();
        assert!(err.is_timeout(), "the last error, unwrapped: {err:?}");
        assert_eq!(hits.settled(Method::GET, "/slow").await, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn through_reqwest_retry_a_timeout_is_never_repeated() {
        let (addr, hits) = server().await;
        let url = format!("http://{addr}/slow");
        let client = reqwest_retry_client();
        assert!(client.post(&url).body("{}").send().await.is_err());
        assert!(client.get(&url).send().await.is_err());
        assert_eq!(hits.settled(Method::POST, "/slow").await, 1);
        // The strategy cannot see an error's method: it takes no chance.
        assert_eq!(hits.settled(Method::GET, "/slow").await, 1);
    }

    /// Counts the attempts that leave the retry middleware.
    struct Count(Arc<Mutex<usize>>);

    #[async_trait::async_trait]
    impl Middleware for Count {
        async fn handle(
            &self,
            req: reqwest::Request,
            ext: &mut http::Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            *self.0.lock().unwrap() += 1;
            next.run(req, ext).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_post_that_could_not_connect_is_retried() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        for tollgate_retry in [true, false] {
            let attempts = Arc::new(Mutex::new(0));
            let b = ClientBuilder::new(inner());
            let b = if tollgate_retry {
                b.with(RetryMiddleware::new(quick()))
            } else {
                b.with(RetryTransientMiddleware::new_with_policy_and_strategy(
                    RetryBackoff(Backoff::default().base(Duration::from_millis(50))),
                    RateLimitStrategy::default(),
                ))
            };
            let client = b.with(Count(attempts.clone())).build();
            let err = client
                .post(format!("http://{addr}/items"))
                .body("{}")
                .send()
                .await
                .unwrap_err();
            assert_eq!(*attempts.lock().unwrap(), 4, "{err:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_503_repeats_a_post_only_with_retry_after() {
        let (addr, hits) = server().await;
        for client in [tollgate_client(quick()), reqwest_retry_client()] {
            let resp = client
                .post(format!("http://{addr}/unavailable"))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 503);
        }
        assert_eq!(
            hits.settled(Method::POST, "/unavailable").await,
            2,
            "once per client"
        );

        let resp = tollgate_client(quick())
            .get(format!("http://{addr}/unavailable"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(hits.settled(Method::GET, "/unavailable").await, 4);

        let started = Instant::now();
        let resp = tollgate_client(quick())
            .post(format!("http://{addr}/busy"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "retried after the server's second");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(hits.get(Method::POST, "/busy"), 2);
    }
}
