//! The retry budget: a host that always answers 503 gets at most the
//! budgeted share of extra attempts, through either adapter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tollgate::backoff::{Backoff, Jitter};
use tollgate::retry::{RetryBudget, RetryRules};
use tollgate::tower::RetryPolicy;
use tower::retry::RetryLayer;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

/// One retry per ten requests, no free retries, over a window longer than
/// the test.
fn ten_percent() -> RetryBudget {
    RetryBudget::new(0.1, 0.0, Duration::from_secs(600)).unwrap()
}

/// Up to 3 retries 10 ms apart.
fn rules() -> RetryRules {
    RetryRules::new(
        Backoff::default()
            .base(Duration::from_millis(10))
            .jitter(Jitter::None),
    )
}

fn always_503(
    hits: Arc<AtomicUsize>,
) -> impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    service_fn(move |_req: Request<String>| {
        hits.fetch_add(1, Ordering::SeqCst);
        async { Ok(Response::builder().status(503).body(String::new()).unwrap()) }
    })
}

async fn tower_hits(rules: RetryRules, requests: usize) -> usize {
    let hits = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::with_rules(rules)))
        .service(always_503(hits.clone()));
    for i in 0..requests {
        let req = Request::get(format!("https://down.test/{i}"))
            .body(String::new())
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 503, "the last answer goes back");
    }
    hits.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn tower_a_failing_host_gets_ten_percent_more_attempts() {
    assert_eq!(tower_hits(rules().budget(ten_percent()), 100).await, 110);
    // Without the budget every request takes its three retries.
    assert_eq!(tower_hits(rules().without_budget(), 100).await, 400);
}

#[tokio::test(start_paused = true)]
async fn tower_concurrent_callers_share_the_budget() {
    let hits = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::with_rules(
            rules().budget(ten_percent()),
        )))
        .service(always_503(hits.clone()));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let req = Request::get(format!("https://down.test/{i}"))
                    .body(String::new())
                    .unwrap();
                svc.oneshot(req).await.unwrap().status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 503);
    }
    let hits = hits.load(Ordering::SeqCst);
    // Retries may be asked for before every request has paid in, so fewer
    // can be granted, never more.
    assert!((100..=110).contains(&hits), "{hits}");
}

#[tokio::test(start_paused = true)]
async fn other_hosts_keep_their_own_budget() {
    let budget = ten_percent();
    let hits = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::with_rules(
            rules().budget(budget.clone()),
        )))
        .service(always_503(hits.clone()));
    for i in 0..100 {
        let req = Request::get(format!("https://down.test/{i}"))
            .body(String::new())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    // down.test spent its budget; a request to another host pays its own.
    for host in ["down.test", "other.test"] {
        let before = hits.load(Ordering::SeqCst);
        for _ in 0..10 {
            let req = Request::get(format!("https://{host}/"))
                .body(String::new())
                .unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
        let extra = hits.load(Ordering::SeqCst) - before - 10;
        assert_eq!(extra, 1, "{host}: one retry for ten more requests");
    }
    assert_eq!(budget.key_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_down_host_beyond_max_keys_spends_only_its_own_deposits() {
    // One key is kept: every other host is in the overflow.
    let budget = ten_percent().max_keys(1);
    let down_hits = Arc::new(AtomicUsize::new(0));
    let d = down_hits.clone();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::with_rules(
            rules().budget(budget.clone()),
        )))
        .service(service_fn(move |req: Request<String>| {
            let down = req.uri().host() == Some("down.test");
            if down {
                d.fetch_add(1, Ordering::SeqCst);
            }
            let status = if down { 503 } else { 200 };
            async move {
                Ok::<_, BoxError>(
                    Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        }));
    let send = |host: &str| {
        let req = Request::get(format!("https://{host}/"))
            .body(String::new())
            .unwrap();
        svc.clone().oneshot(req)
    };
    send("first.test").await.unwrap();
    // A healthy host in the overflow pays in a hundred requests...
    for _ in 0..100 {
        send("healthy.test").await.unwrap();
    }
    assert_eq!(budget.key_count(), 1);
    // ...which a failing one there cannot spend: ten requests, one retry at most.
    for _ in 0..10 {
        assert_eq!(send("down.test").await.unwrap().status(), 503);
    }
    let hits = down_hits.load(Ordering::SeqCst);
    assert!((10..=11).contains(&hits), "{hits} attempts for 10 requests");
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_a_failing_host_gets_ten_percent_more_attempts() {
    use reqwest_middleware::ClientBuilder;
    use tollgate::reqwest::RetryMiddleware;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        h.fetch_add(1, Ordering::SeqCst);
        async { http::StatusCode::SERVICE_UNAVAILABLE }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new(rules().budget(ten_percent())))
        .build();
    for i in 0..100 {
        let resp = client
            .get(format!("http://{addr}/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "the last response goes back");
    }
    // Sequential requests: every attempt was answered before the next began.
    assert_eq!(hits.load(Ordering::SeqCst), 110);
}
