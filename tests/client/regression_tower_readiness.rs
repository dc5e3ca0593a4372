//! The tower response future is an explicit state machine: a request that
//! waited for its slot may find the inner service not ready, and then waits
//! for readiness with its permit kept; and a waiting request holds none of
//! the inner service's readiness (a `ConcurrencyLimit` slot, a pool), so
//! requests to other hosts go meanwhile.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tollgate::tower::RateLimitLayer;
use tollgate::{Policy, Registry, Source, TokioClock, UnknownHost};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

fn registry() -> Registry {
    Registry::builder()
        .source(
            Source::new("slow")
                .limit(Policy::per_second(1.0).unwrap())
                .host("slow.test"),
        )
        .clock(TokioClock::new())
        .unknown_hosts(UnknownHost::PassThrough)
        .build()
        .unwrap()
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// Ready on every second poll only, like a pool that lost its connection
/// between two polls; each clone keeps its own count.
#[derive(Clone, Default)]
struct Flaky {
    polls: usize,
    ready: bool,
}

impl Service<Request<()>> for Flaky {
    type Response = Response<&'static str>;
    type Error = Infallible;
    type Future = Ready<Result<Response<&'static str>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polls += 1;
        if self.polls % 2 == 1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        assert!(self.ready, "called before poll_ready returned Ready");
        self.ready = false;
        ready(Ok(Response::new("ok")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_survives_an_inner_service_that_is_not_ready() {
    let mut svc = RateLimitLayer::new(registry()).layer(Flaky::default());
    let start = Instant::now();
    for i in 0..3 {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(get(&format!("https://slow.test/{i}")))
            .await
            .unwrap();
        assert_eq!(response.into_body(), "ok");
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_holds_no_inner_concurrency_slot() {
    let inner = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new("ok"))
        }));
    let mut svc = RateLimitLayer::new(registry()).layer(inner);
    svc.ready()
        .await
        .unwrap()
        .call(get("https://slow.test/1"))
        .await
        .unwrap();
    // The second request to slow.test waits a second for its slot ...
    let mut waiting =
        tokio_test::task::spawn(svc.ready().await.unwrap().call(get("https://slow.test/2")));
    assert!(waiting.poll().is_pending());
    // ... while a request to another host goes at once.
    let start = Instant::now();
    let mut other = tokio_test::task::spawn(async {
        svc.ready()
            .await
            .unwrap()
            .call(get("https://other.test/"))
            .await
    });
    assert!(
        other.poll().is_ready(),
        "the waiting request held the inner service's only slot"
    );
    drop(other);
    assert_eq!(start.elapsed(), Duration::ZERO);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(waiting.poll().is_ready());
}

/// Issue #19, item 5: a request whose slot had come while its inner service
/// was busy was sent as soon as the service was ready, inside a deferral a
/// server asked for meanwhile (`Retry-After: 10` at 1.5 s, sent at 1.5 s).
/// After readiness it checks the deferral and queues again.
#[tokio::test(start_paused = true)]
async fn a_request_readied_inside_a_deferral_waits_it_out() {
    use std::sync::{Arc, Mutex};
    let sent: Arc<Mutex<Vec<(String, Duration)>>> = Arc::default();
    let start = Instant::now();
    let log = sent.clone();
    // Two requests at a time; each takes 1.5 s, and `/a` is answered 429
    // with `Retry-After: 10`.
    let inner = ServiceBuilder::new()
        .concurrency_limit(2)
        .service(service_fn(move |r: Request<()>| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((r.uri().to_string(), start.elapsed()));
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let mut response = Response::new("x");
                if r.uri().path() == "/a" {
                    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
                    response
                        .headers_mut()
                        .insert("retry-after", http::HeaderValue::from_static("10"));
                }
                Ok::<_, Infallible>(response)
            }
        }));
    let svc = RateLimitLayer::new(registry()).layer(inner);
    // `a` goes at once; `b` must wait for its slot at 1 s; `other`, passed
    // through at 0.5 s, fills the second place, so at 1 s `b` finds the
    // inner service busy until `a` is answered at 1.5 s.
    let a = tokio::spawn(svc.clone().oneshot(get("https://slow.test/a")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let b = tokio::spawn(svc.clone().oneshot(get("https://slow.test/b")));
    tokio::time::sleep(Duration::from_millis(490)).await;
    let other = tokio::spawn(svc.clone().oneshot(get("https://other.test/")));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    other.await.unwrap().unwrap();
    assert_eq!(a.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b.status(), http::StatusCode::OK);
    let sent = sent.lock().unwrap().clone();
    let b_at = sent.iter().find(|(u, _)| u.ends_with("/b")).unwrap().1;
    assert!(
        b_at >= Duration::from_millis(11_500),
        "`b` was sent at {b_at:?}, inside the deferral to 11.5 s: {sent:?}"
    );
}
