//! Method × failure → retried or not, and after how long, for both retry
//! adapters: the tower `RetryPolicy`, the reqwest `RetryMiddleware`, and
//! reqwest-retry with `RateLimitStrategy`. Paused time; the reqwest rows for
//! connect errors and timeouts use a real client on 127.0.0.1 (a closed
//! port, and a listener that never answers).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tollgate::backoff::{Backoff, Jitter};
use tollgate::tower::RetryPolicy;
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};

#[derive(Clone, Copy, Debug)]
enum Fail {
    Connect,
    Timeout,
    Status(u16, Option<u64>),
}

const FAILURES: [(&str, Fail); 9] = [
    ("connect error", Fail::Connect),
    ("timeout", Fail::Timeout),
    ("408", Fail::Status(408, None)),
    ("429", Fail::Status(429, None)),
    ("429 Retry-After: 2", Fail::Status(429, Some(2))),
    ("502", Fail::Status(502, None)),
    ("503", Fail::Status(503, None)),
    ("503 Retry-After: 2", Fail::Status(503, Some(2))),
    ("504", Fail::Status(504, None)),
];

const METHODS: [&str; 6] = ["GET", "PUT", "DELETE", "POST", "PATCH", "POST+key"];

/// Retried after the backoff's ceiling for attempt 0 (1 s, no jitter).
const B: Option<u64> = Some(1000);
/// Retried after the server's `Retry-After: 2`.
const R: Option<u64> = Some(2000);
/// Not retried.
const N: Option<u64> = None;

/// The rules: rows are `FAILURES`, columns `METHODS`; milliseconds before
/// the retry.
const EXPECTED: [[Option<u64>; 6]; 9] = [
    [B, B, B, B, B, B], // connect error: nothing was sent
    [B, B, B, N, N, B], // timeout: it may have been processed
    [B, B, B, N, N, B], // 408
    [B, B, B, B, B, B], // 429: refused, not processed
    [R, R, R, R, R, R], // 429 Retry-After: 2
    [B, B, B, N, N, B], // 502
    [B, B, B, N, N, B], // 503 without Retry-After
    [R, R, R, R, R, R], // 503 Retry-After: 2
    [B, B, B, N, N, B], // 504
];

/// The attempt timeout of every stack here.
const TIMEOUT: Duration = Duration::from_secs(1);

fn schedule() -> Backoff {
    Backoff::default().jitter(Jitter::None)
}

fn request<B>(method: &str, uri: &str, body: B) -> Request<B> {
    let b = Request::builder().uri(uri);
    let b = match method {
        "POST+key" => b.method("POST").header("Idempotency-Key", "a1b2c3"),
        m => b.method(m),
    };
    b.body(body).unwrap()
}

fn answer(code: u16, retry_after: Option<u64>) -> Response<String> {
    let mut b = Response::builder().status(code);
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(String::new()).unwrap()
}

/// What a run shows: `None` when there was one attempt, else the time
/// between the end of the failed attempt and the retry, in milliseconds.
fn observed(starts: &[Instant], fail: Fail) -> Option<u64> {
    assert!(
        starts.len() <= 2,
        "at most one retry: the second answers 200"
    );
    let gap = *starts.get(1)? - starts[0];
    let gap = match fail {
        Fail::Timeout => gap - TIMEOUT,
        _ => gap,
    };
    Some(gap.as_millis() as u64)
}

fn check(
    adapter: &str,
    expected: &[[Option<u64>; 6]; 9],
    cell: impl Fn(usize, usize) -> Option<u64>,
) {
    let mut wrong = Vec::new();
    for (row, (name, _)) in FAILURES.iter().enumerate() {
        for (col, method) in METHODS.iter().enumerate() {
            let got = cell(row, col);
            // tokio's timer ticks in whole milliseconds.
            let close = match (got, expected[row][col]) {
                (Some(g), Some(e)) => g.abs_diff(e) <= 1,
                (g, e) => g == e,
            };
            if !close {
                wrong.push(format!(
                    "{method} × {name}: expected {:?}, got {got:?}",
                    expected[row][col]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{adapter}:\n{}", wrong.join("\n"));
}

async fn tower_cell(method: &str, fail: Fail) -> Option<u64> {
    let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = starts.clone();
    let svc = service_fn(move |_req: Request<Full<Bytes>>| {
        let first = {
            let mut log = log.lock().unwrap();
            log.push(Instant::now());
            log.len() == 1
        };
        async move {
            if !first {
                return Ok::<_, BoxError>(answer(200, None));
            }
            match fail {
                Fail::Connect => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
                }
                Fail::Timeout => {
                    tokio::time::sleep(TIMEOUT * 10).await;
                    Ok(answer(200, None))
                }
                Fail::Status(code, ra) => Ok(answer(code, ra)),
            }
        }
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(schedule())))
        .layer(TimeoutLayer::new(TIMEOUT))
        .service(svc);
    let body = Full::new(Bytes::from_static(b"{\"n\":1}"));
    let _ = svc
        .oneshot(request(method, "http://api.test/items", body))
        .await;
    let starts = starts.lock().unwrap().clone();
    observed(&starts, fail)
}

#[tokio::test(start_paused = true)]
async fn tower_retry_policy() {
    let mut results = [[None; 6]; 9];
    for (row, (_, fail)) in FAILURES.iter().enumerate() {
        for (col, method) in METHODS.iter().enumerate() {
            results[row][col] = tower_cell(method, *fail).await;
        }
    }
    check("tower RetryPolicy", &EXPECTED, |r, c| results[r][c]);
}

#[cfg(feature = "reqwest")]
mod reqwest_adapters {
    use super::*;

    use http::Extensions;
    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
    use reqwest_retry::RetryTransientMiddleware;
    use tollgate::reqwest::{RateLimitMiddleware, RateLimitStrategy, RetryMiddleware};
    use tollgate::retry::RetryRules;
    use tollgate::{Policy, Registry, Source, TokioClock};

    /// The end of the chain: the first attempt fails as told (a real
    /// connection for connect errors and timeouts), later ones answer 200.
    struct Fake {
        fail: Fail,
        starts: Arc<Mutex<Vec<Instant>>>,
    }

    #[async_trait::async_trait]
    impl Middleware for Fake {
        async fn handle(
            &self,
            req: reqwest::Request,
            ext: &mut Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            let first = {
                let mut log = self.starts.lock().unwrap();
                log.push(Instant::now());
                log.len() == 1
            };
            match (first, self.fail) {
                (false, _) => Ok(answer(200, None).into()),
                (true, Fail::Connect | Fail::Timeout) => next.run(req, ext).await,
                (true, Fail::Status(code, ra)) => Ok(answer(code, ra).into()),
            }
        }
    }

    struct Ports {
        closed: String,
        silent: String,
        _silent: std::net::TcpListener,
    }

    impl Ports {
        fn new() -> Self {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let closed = closed.local_addr().unwrap().to_string(); // dropped: nothing listens
                                                                   // Accepts connections in its backlog and never answers.
            let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            Ports {
                closed,
                silent: silent.local_addr().unwrap().to_string(),
                _silent: silent,
            }
        }

        fn uri(&self, fail: Fail) -> String {
            match fail {
                Fail::Connect => format!("http://{}/items", self.closed),
                Fail::Timeout => format!("http://{}/items", self.silent),
                Fail::Status(..) => "http://127.0.0.1:9/items".to_string(),
            }
        }
    }

    fn inner() -> reqwest::Client {
        reqwest::Client::builder().timeout(TIMEOUT).build().unwrap()
    }

    fn registry() -> Registry {
        Registry::builder()
            .source(
                Source::new("local")
                    .limit(Policy::per_second(1000.0).unwrap())
                    .host("127.0.0.1"),
            )
            .clock(TokioClock::new())
            .build()
            .unwrap()
    }

    async fn cell(
        ports: &Ports,
        method: &str,
        fail: Fail,
        chain: impl FnOnce(Fake) -> ClientWithMiddleware,
    ) -> Option<u64> {
        let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let client = chain(Fake {
            fail,
            starts: starts.clone(),
        });
        let req = request(method, &ports.uri(fail), "{\"n\":1}");
        let _ = client
            .execute(reqwest::Request::try_from(req).unwrap())
            .await;
        let starts = starts.lock().unwrap().clone();
        observed(&starts, fail)
    }

    #[tokio::test(start_paused = true)]
    async fn tollgate_retry_middleware() {
        let ports = Ports::new();
        let mut results = [[None; 6]; 9];
        for (row, (_, fail)) in FAILURES.iter().enumerate() {
            for (col, method) in METHODS.iter().enumerate() {
                results[row][col] = cell(&ports, method, *fail, |fake| {
                    ClientBuilder::new(inner())
                        .with(RetryMiddleware::new(RetryRules::new(schedule())))
                        .with(RateLimitMiddleware::new(registry()))
                        .with(fake)
                        .build()
                })
                .await;
            }
        }
        check("reqwest RetryMiddleware", &EXPECTED, |r, c| results[r][c]);
    }

    /// reqwest-retry's strategy never sees the request: an error carries
    /// no method, so a timeout is not retried even for a GET. `Retry-After`
    /// is kept through the registry's deferral.
    const EXPECTED_REQWEST_RETRY: [[Option<u64>; 6]; 9] = [
        [B, B, B, B, B, B],
        [N, N, N, N, N, N], // timeout: the request is unknown
        [B, B, B, N, N, B],
        [B, B, B, B, B, B],
        [R, R, R, R, R, R],
        [B, B, B, N, N, B],
        [B, B, B, N, N, B],
        [R, R, R, R, R, R],
        [B, B, B, N, N, B],
    ];

    #[tokio::test(start_paused = true)]
    async fn reqwest_retry_with_rate_limit_strategy() {
        let ports = Ports::new();
        let mut results = [[None; 6]; 9];
        for (row, (_, fail)) in FAILURES.iter().enumerate() {
            for (col, method) in METHODS.iter().enumerate() {
                results[row][col] = cell(&ports, method, *fail, |fake| {
                    ClientBuilder::new(inner())
                        .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                            tollgate::reqwest::Backoff(schedule()),
                            RateLimitStrategy::default(),
                        ))
                        .with(RateLimitMiddleware::new(registry()))
                        .with(fake)
                        .build()
                })
                .await;
            }
        }
        check(
            "reqwest-retry with RateLimitStrategy",
            &EXPECTED_REQWEST_RETRY,
            |r, c| results[r][c],
        );
    }

    /// A POST answered 502 once, through both reqwest retry layers: how
    /// many attempts, with and without the `SafeToRetry` extension.
    #[tokio::test(start_paused = true)]
    async fn safe_to_retry_opts_a_post_in() {
        use tollgate::retry::SafeToRetry;

        for marked in [false, true] {
            let mut attempts = Vec::new();
            for tollgate_retry in [true, false] {
                let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
                let fake = Fake {
                    fail: Fail::Status(502, None),
                    starts: starts.clone(),
                };
                let b = ClientBuilder::new(inner());
                let b = if tollgate_retry {
                    b.with(RetryMiddleware::new(RetryRules::new(schedule())))
                } else {
                    b.with(RetryTransientMiddleware::new_with_policy_and_strategy(
                        tollgate::reqwest::Backoff(schedule()),
                        RateLimitStrategy::default(),
                    ))
                };
                let client = b
                    .with(RateLimitMiddleware::new(registry()))
                    .with(fake)
                    .build();
                let mut req = client.post("http://127.0.0.1:9/items").body("{}");
                if marked {
                    req = req.with_extension(SafeToRetry);
                }
                let _ = req.send().await;
                let n = starts.lock().unwrap().len();
                attempts.push(n);
            }
            let want = if marked { 2 } else { 1 };
            assert_eq!(attempts, [want, want], "marked: {marked}");
        }
    }
}
