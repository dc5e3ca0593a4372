//! `tollgate::tower::RetryPolicy` under `tower::retry` on paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tollgate::backoff::{Backoff, Jitter};
use tollgate::tower::{RetryPolicy, TryCloneBody};
use tower::retry::RetryLayer;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};

type Times = Arc<Mutex<Vec<Duration>>>;

/// A GET through a service that answers every call with `answer(n)` and
/// logs when it was called. (`tests/client/retry_matrix.rs` covers the methods.)
async fn run<B: TryCloneBody + Send + 'static>(
    policy: RetryPolicy,
    body: B,
    answer: impl Fn(usize) -> Result<Response<&'static str>, BoxError> + Clone + Send + 'static,
) -> (Result<Response<&'static str>, BoxError>, Vec<Duration>) {
    let start = Instant::now();
    let times: Times = Arc::default();
    let t = times.clone();
    let svc = service_fn(move |_req: Request<B>| {
        let mut log = t.lock().unwrap();
        let n = log.len();
        log.push(start.elapsed());
        let result = answer(n);
        async move { result }
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(svc);
    let result = svc
        .oneshot(Request::get("https://x.test/").body(body).unwrap())
        .await;
    let times = times.lock().unwrap().clone();
    (result, times)
}

fn status(code: u16) -> Result<Response<&'static str>, BoxError> {
    Ok(Response::builder().status(code).body("").unwrap())
}

/// The refusal of a registry that rejects hosts it has no rule for.
fn unknown_host(host: &str) -> tollgate::Error {
    let registry = tollgate::Registry::builder()
        .unknown_hosts(tollgate::UnknownHost::Reject)
        .build()
        .unwrap();
    let target = tollgate::Target::new(host, None, "/");
    let e = registry.try_acquire(&target, 1.0).unwrap_err();
    assert!(e.is_unknown_host(), "{e:?}");
    e
}

fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn the_schedule_doubles_and_gives_up_after_max_retries() {
    let policy = RetryPolicy::new(Backoff::default().jitter(Jitter::None));
    let (result, times) = run(policy, String::from("body"), |_| status(503)).await;
    assert_eq!(result.unwrap().status(), 503, "the last answer is returned");
    assert_eq!(times.len(), 4, "one try and three retries");
    assert_eq!(gaps(&times), [1, 2, 4].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn full_jitter_stays_within_each_ceiling() {
    let mut seen_below_half = [false; 3];
    for _ in 0..50 {
        let (_, times) = run(RetryPolicy::default(), (), |_| status(502)).await;
        for (i, gap) in gaps(&times).into_iter().enumerate() {
            let ceiling = Duration::from_secs(1 << i);
            // tokio's timer wakes on whole milliseconds.
            assert!(
                gap <= ceiling + Duration::from_millis(1),
                "retry {i}: {gap:?}"
            );
            seen_below_half[i] |= gap < ceiling / 2;
        }
    }
    assert_eq!(
        seen_below_half, [true; 3],
        "the delays are spread, not fixed"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_over_the_schedule() {
    let answer = |n| match n {
        0 => Ok(Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body("")
            .unwrap()),
        _ => status(200),
    };
    let (result, times) = run(RetryPolicy::default(), (), answer).await;
    assert_eq!(result.unwrap().status(), 200);
    assert_eq!(gaps(&times), [Duration::from_secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn every_transient_status_is_retried_and_others_are_not() {
    for code in [408, 429, 502, 503, 504] {
        let (_, times) = run(RetryPolicy::default(), (), move |n| {
            status(if n == 0 { code } else { 200 })
        })
        .await;
        assert_eq!(times.len(), 2, "{code}");
    }
    for code in [200, 201, 400, 401, 403, 404, 500, 501] {
        let (_, times) = run(RetryPolicy::default(), (), move |_| status(code)).await;
        assert_eq!(times.len(), 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried_and_configuration_errors_are_not() {
    let refused = |n: usize| -> Result<Response<&'static str>, BoxError> {
        if n < 2 {
            Err(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))
        } else {
            status(200)
        }
    };
    let (result, times) = run(RetryPolicy::default(), (), refused).await;
    assert_eq!(result.unwrap().status(), 200);
    assert_eq!(times.len(), 3);

    let unknown =
        |_| -> Result<Response<&'static str>, BoxError> { Err(Box::new(unknown_host("x.test"))) };
    let (result, times) = run(RetryPolicy::default(), (), unknown).await;
    assert!(result.is_err());
    assert_eq!(times.len(), 1);

    let rejected = |n: usize| -> Result<Response<&'static str>, BoxError> {
        if n == 0 {
            Err(Box::new(tollgate::Error::from(tollgate::RateLimited::new(
                Duration::from_millis(1500),
            ))))
        } else {
            status(200)
        }
    };
    let (result, times) = run(RetryPolicy::default(), (), rejected).await;
    assert!(
        result.is_err(),
        "the limiter's own refusal goes straight back"
    );
    assert_eq!(times.len(), 1);
    let policy = RetryPolicy::default().retry_local_refusals(true);
    let (_, times) = run(policy, (), rejected).await;
    assert_eq!(
        gaps(&times),
        [Duration::from_millis(1500)],
        "opted in, a rejection waits its retry_after"
    );
}

/// A body that streams and cannot be replayed.
struct Stream;

impl TryCloneBody for Stream {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_cloned_is_not_retried() {
    let (result, times) = run(RetryPolicy::default(), Stream, |_| status(503)).await;
    assert_eq!(result.unwrap().status(), 503);
    assert_eq!(times.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_403_is_retried_and_a_plain_one_is_not() {
    let forbidden = |header: Option<(&'static str, &'static str)>| {
        move |n: usize| match n {
            0 => {
                let mut r = Response::builder().status(403);
                if let Some((k, v)) = header {
                    r = r.header(k, v);
                }
                Ok(r.body("").unwrap())
            }
            _ => status(200),
        }
    };
    let policy = || RetryPolicy::new(Backoff::default().jitter(Jitter::None));
    // GitHub's secondary limit: the server's wait wins.
    let (result, times) = run(policy(), (), forbidden(Some(("retry-after", "7")))).await;
    assert_eq!(result.unwrap().status(), 200);
    assert_eq!(gaps(&times), [Duration::from_secs(7)]);
    // A spent primary quota: retried on the schedule.
    let spent = Some(("x-ratelimit-remaining", "0"));
    let (result, times) = run(policy(), (), forbidden(spent)).await;
    assert_eq!(result.unwrap().status(), 200);
    assert_eq!(gaps(&times), [Duration::from_secs(1)]);
    // Quota left, or no rate-limit header at all: a real refusal.
    for header in [Some(("x-ratelimit-remaining", "12")), None] {
        let (result, times) = run(policy(), (), forbidden(header)).await;
        assert_eq!(result.unwrap().status(), 403);
        assert_eq!(times.len(), 1, "{header:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn hyper_bodies_are_replayed_without_conversion() {
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    let policy = || RetryPolicy::new(Backoff::default().jitter(Jitter::None));
    let (_, times) = run(policy(), Full::new(Bytes::from_static(b"{}")), |_| {
        status(503)
    })
    .await;
    assert_eq!(times.len(), 4, "Full<Bytes>");
    let (_, times) = run(policy(), Empty::<Bytes>::new(), |_| status(503)).await;
    assert_eq!(times.len(), 4, "Empty<Bytes>");
    let (_, times) = run(policy(), Bytes::from_static(b"{}"), |_| status(503)).await;
    assert_eq!(times.len(), 4, "Bytes");
}

/// How many calls a POST to `host` makes against a service that answers 502
/// once, then 200.
async fn post_calls(policy: RetryPolicy, host: &str, marked: bool) -> usize {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let svc = service_fn(move |_req: Request<String>| {
        let n = {
            let mut c = c.lock().unwrap();
            *c += 1;
            *c
        };
        async move { status(if n == 1 { 502 } else { 200 }) }
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(svc);
    let mut req = Request::post(format!("https://{host}/items"))
        .body(String::from("{}"))
        .unwrap();
    if marked {
        req.extensions_mut().insert(tollgate::retry::SafeToRetry);
    }
    svc.oneshot(req).await.unwrap();
    let n = *calls.lock().unwrap();
    n
}

#[tokio::test(start_paused = true)]
async fn a_post_is_repeated_after_a_502_only_when_opted_in() {
    use tollgate::retry::RetryRules;

    assert_eq!(post_calls(RetryPolicy::default(), "x.test", false).await, 1);
    assert_eq!(
        post_calls(RetryPolicy::default(), "x.test", true).await,
        2,
        "SafeToRetry on the request"
    );
    let all = RetryPolicy::with_rules(RetryRules::default().retry_non_idempotent(true));
    assert_eq!(post_calls(all, "x.test", false).await, 2);
    let some = RetryPolicy::with_rules(
        RetryRules::default().retry_non_idempotent_when(|_, t| t.host() == "uploads.test"),
    );
    assert_eq!(post_calls(some.clone(), "uploads.test", false).await, 2);
    assert_eq!(post_calls(some, "x.test", false).await, 1);
}
