//! reqwest-middleware end to end: a real reqwest client against servers on
//! 127.0.0.1 that enforce their own limits (a referee GCRA written here, apart
//! from the crate's, with the small burst real servers keep for network
//! jitter) and answer 429 when broken.
//! Real time; assertions are on counts, with margins only where the network
//! can shift a time.
#![cfg(feature = "reqwest")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Response, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::RetryTransientMiddleware;
use tollgate::reqwest::{Backoff, RateLimitMiddleware, RateLimitStrategy};
use tollgate::{OnLimit, Policy, Registry, Source, UnknownHost};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Duration, u16)>>>);

impl Log {
    fn all(&self) -> Vec<(Duration, u16)> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, status: u16) -> usize {
        self.all().iter().filter(|(_, s)| *s == status).count()
    }
}

/// The servers' own limiter: `rate` a second with room for `burst` at once,
/// as a theoretical arrival time behind a mutex (independent of tollgate's
/// bucket, so the two cannot share a mistake).
struct Referee {
    tat: Mutex<Option<Instant>>,
    interval: Duration,
    tolerance: Duration,
}

impl Referee {
    fn new(rate: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / rate;
        Referee {
            tat: Mutex::new(None),
            interval,
            tolerance: interval * burst.saturating_sub(1),
        }
    }

    /// Whether a request arriving now is inside the limit (and, if so, counted).
    fn admit(&self) -> bool {
        let now = Instant::now();
        let mut tat = self.tat.lock().unwrap();
        let due = tat.map_or(now, |t| t.max(now));
        if due.duration_since(now) > self.tolerance {
            return false;
        }
        *tat = Some(due + self.interval);
        true
    }
}

/// A server that enforces `per_second` with `burst` (if given) and answers
/// its first request with `429 Retry-After: first_429` (if given).
async fn server(limit: Option<(u32, u32)>, first_429: Option<u64>) -> (SocketAddr, Log, Instant) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let start = Instant::now();
    let limiter = limit.map(|(rate, burst)| Arc::new(Referee::new(rate, burst)));
    let l = log.clone();
    let app = axum::Router::new().fallback(move || {
        let (log, limiter) = (l.clone(), limiter.clone());
        async move {
            let mut entries = log.0.lock().unwrap();
            let first = entries.is_empty();
            let (status, retry_after) = match (first, first_429) {
                (true, Some(secs)) => (429, Some(secs)),
                _ if limiter.as_ref().is_some_and(|l| !l.admit()) => (429, None),
                _ => (200, None),
            };
            entries.push((start.elapsed(), status));
            let mut resp = Response::builder().status(StatusCode::from_u16(status).unwrap());
            if let Some(s) = retry_after {
                resp = resp.header("retry-after", s.to_string());
            }
            resp.body(Body::from("ok")).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log, start)
}

fn client(registry: Registry) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy_and_strategy(
            Backoff::default(),
            RateLimitStrategy::default(),
        ))
        .with(RateLimitMiddleware::new(registry))
        .build()
}

fn registry(sources: Vec<Source>) -> Registry {
    Registry::builder()
        .sources(sources)
        .unknown_hosts(UnknownHost::Reject)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_callers_never_trip_a_strict_server() {
    let (addr, log, _) = server(Some((20, 2)), None).await;
    let r = registry(vec![Source::new("api")
        .limit(Policy::per_second(20.0).unwrap())
        .host(addr.to_string())]);
    let client = client(r);
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..15 {
                    let resp = client
                        .get(format!("http://{addr}/{t}/{i}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.count(429), 0, "{:?}", log.all());
    assert_eq!(log.count(200), 60);
    // 60 requests at 20/s, burst 1: the last goes no earlier than 59 × 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(2950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_holds_the_host_and_one_retry_recovers() {
    let (addr, log, _) = server(None, Some(1)).await;
    let r = registry(vec![Source::new("api")
        .limit(Policy::per_second(10.0).unwrap())
        .host(addr.to_string())]);
    let client = client(r);
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .get(format!("http://{addr}/{i}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "every caller succeeds");
    }
    let all = log.all();
    assert_eq!(all.len(), 6, "five callers and exactly one retry: {all:?}");
    assert_eq!(log.count(429), 1);
    let refused_at = all[0].0;
    assert!(
        all[1..]
            .iter()
            .all(|(t, _)| *t >= refused_at + Duration::from_secs(1)),
        "a request reached the server inside the Retry-After second: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_through_one_client_keep_their_own_limits() {
    let (fast, fast_log, _) = server(Some((10, 2)), None).await;
    let (slow, slow_log, _) = server(Some((4, 2)), None).await;
    let r = registry(vec![
        Source::new("fast")
            .limit(Policy::per_second(10.0).unwrap())
            .host(fast.to_string()),
        Source::new("slow")
            .limit(Policy::per_second(4.0).unwrap())
            .host(slow.to_string()),
    ]);
    let client = client(r);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..12 {
        for addr in [fast, slow] {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .get(format!("http://{addr}/{i}"))
                    .send()
                    .await
                    .unwrap();
                (addr, started.elapsed())
            }));
        }
    }
    let mut done_fast = Duration::ZERO;
    let mut done_slow = Duration::ZERO;
    for t in tasks {
        let (addr, at) = t.await.unwrap();
        if addr == fast {
            done_fast = done_fast.max(at);
        } else {
            done_slow = done_slow.max(at);
        }
    }
    assert_eq!(fast_log.count(429) + slow_log.count(429), 0);
    assert_eq!(fast_log.count(200) + slow_log.count(200), 24);
    // 12 at 10/s take 1.1 s; 12 at 4/s take 2.75 s. The fast host is not
    // held to the slow one's pace (1 s of margin for a busy machine).
    assert!(
        done_fast >= Duration::from_millis(1100) && done_fast < Duration::from_millis(2100),
        "{done_fast:?}"
    );
    assert!(done_slow >= Duration::from_millis(2750), "{done_slow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejecting_source_answers_with_the_typed_error_and_sends_nothing() {
    let (addr, log, _) = server(None, None).await;
    let r = registry(vec![Source::new("strict")
        .limit(Policy::per_minute(1.0).unwrap())
        .host(addr.to_string())
        .on_limit(OnLimit::Reject)]);
    let _spent = r.source("strict").unwrap().try_acquire(1.0).unwrap();
    // Behind the retry middleware: found through its wrapper, and not retried.
    let err = client(r.clone())
        .get(format!("http://{addr}/x"))
        .send()
        .await
        .unwrap_err();
    let limited = tollgate::reqwest::tollgate_error(&err)
        .and_then(tollgate::Error::as_rate_limited)
        .unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(limited.source(), Some("strict"));
    assert!(limited.retry_after() > Duration::from_secs(59));
    // The middleware alone: a plain downcast to the one error type.
    let bare = ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(r))
        .build();
    let err = bare
        .get(format!("http://{addr}/y"))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(e) = &err else {
        panic!("{err:?}")
    };
    let refusal = e
        .downcast_ref::<tollgate::Error>()
        .expect("a tollgate::Error");
    assert!(refusal.retry_after().unwrap() > Duration::from_secs(59));
    assert_eq!(refusal.source_name(), Some("strict"));
    assert!(log.all().is_empty(), "nothing reached the server");
}
