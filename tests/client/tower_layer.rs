//! The tower layer on paused tokio time: per-host pacing through one layer,
//! rejections, server signals, in-flight caps, and the keyed form.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tollgate::tower::{KeyedRateLimitLayer, RateLimitLayer};
use tollgate::{OnLimit, Policy, Registry, Source, TokioClock, UnknownHost};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

type Log = Arc<Mutex<Vec<(String, Duration)>>>;

fn registry(sources: Vec<Source>) -> Registry {
    Registry::builder()
        .sources(sources)
        .clock(TokioClock::new())
        .unknown_hosts(UnknownHost::Reject)
        .build()
        .unwrap()
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// A server that logs (host, time) and answers with `respond(host, n)`,
/// n counting that host's requests from 0.
fn server(
    start: Instant,
    respond: impl Fn(&str, usize) -> Response<&'static str> + Clone + Send + Sync + 'static,
) -> (
    impl Service<Request<()>, Response = Response<&'static str>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
    Log,
) {
    let log: Log = Arc::default();
    let l = log.clone();
    let svc = service_fn(move |req: Request<()>| {
        let host = req.uri().host().unwrap_or("").to_string();
        let mut log = l.lock().unwrap();
        let n = log.iter().filter(|(h, _)| *h == host).count();
        log.push((host.clone(), start.elapsed()));
        let resp = respond(&host, n);
        async move { Ok::<_, Infallible>(resp) }
    });
    (svc, log)
}

fn ok(_: &str, _: usize) -> Response<&'static str> {
    Response::new("ok")
}

fn times(log: &Log, host: &str) -> Vec<Duration> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(h, _)| h == host)
        .map(|(_, t)| *t)
        .collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn two_hosts_each_keep_their_own_pace_through_one_layer() {
    let r = registry(vec![
        Source::new("a")
            .limit(Policy::per_second(2.0).unwrap())
            .host("a.test"),
        Source::new("b")
            .limit(Policy::per_second(5.0).unwrap())
            .host("b.test"),
    ]);
    let start = Instant::now();
    let (server, log) = server(start, ok);
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(r))
        .service(server);
    let mut tasks = Vec::new();
    for i in 0..10 {
        for host in ["a.test", "b.test"] {
            let svc = svc.clone();
            let uri = format!("https://{host}/item/{i}");
            tasks.push(tokio::spawn(async move {
                svc.oneshot(get(&uri)).await.unwrap()
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status(), StatusCode::OK);
    }
    let a: Vec<_> = (0..10).map(|i| ms(500 * i)).collect();
    let b: Vec<_> = (0..10).map(|i| ms(200 * i)).collect();
    assert_eq!(times(&log, "a.test"), a);
    assert_eq!(times(&log, "b.test"), b, "b is not held up by a");
}

#[tokio::test(start_paused = true)]
async fn reject_mode_returns_rate_limited_with_the_exact_retry_after() {
    let r = registry(vec![Source::new("r")
        .limit(Policy::per_second(4.0).unwrap())
        .host("r.test")
        .on_limit(OnLimit::Reject)]);
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<()>, Response<&'static str>, _>(RateLimitLayer::new(r));
    // poll_ready is the inner service's.
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(2);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let first = svc.call(get("https://r.test/1"));
    let (req, reply) = handle.next_request().await.unwrap();
    assert_eq!(req.uri(), "https://r.test/1");
    reply.send_response(Response::new("ok"));
    assert_eq!(first.await.unwrap().into_body(), "ok");

    tokio::time::advance(ms(100)).await;
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let err = svc.call(get("https://r.test/2")).await.unwrap_err();
    let limited = err
        .downcast_ref::<tollgate::Error>()
        .expect("a tollgate::Error");
    assert_eq!(limited.retry_after(), Some(ms(150)));
    assert_eq!(limited.source_name(), Some("r"));
    // The refused request never reached the inner service.
    assert!(tokio_test::task::spawn(handle.next_request())
        .poll()
        .is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_holds_every_request_to_that_host() {
    let r = registry(vec![
        Source::new("a")
            .limit(Policy::per_second(10.0).unwrap())
            .host("a.test"),
        Source::new("b")
            .limit(Policy::per_second(2.0).unwrap())
            .host("b.test"),
    ]);
    let start = Instant::now();
    let (server, log) = server(start, |host, n| {
        if host == "a.test" && n == 0 {
            Response::builder()
                .status(429)
                .header("retry-after", "3")
                .body("slow down")
                .unwrap()
        } else {
            Response::new("ok")
        }
    });
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(r.clone()))
        .service(server);
    let first = svc.clone().oneshot(get("https://a.test/0")).await.unwrap();
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.snapshot()[0].buckets[0].deferred_for.is_some());
    let mut tasks = Vec::new();
    for i in 1..=4 {
        for host in ["a.test", "b.test"] {
            let svc = svc.clone();
            let uri = format!("https://{host}/{i}");
            tasks.push(tokio::spawn(async move {
                svc.oneshot(get(&uri)).await.unwrap()
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let a = times(&log, "a.test");
    assert_eq!(a[0], ms(0));
    assert_eq!(
        &a[1..],
        [ms(3000), ms(3100), ms(3200), ms(3300)],
        "a waits out the Retry-After, then paces"
    );
    assert_eq!(
        times(&log, "b.test"),
        [ms(0), ms(500), ms(1000), ms(1500)],
        "b runs on"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slower_server_quota_lowers_the_rate_and_never_raises_it() {
    let r = registry(vec![Source::new("q")
        .limit(Policy::per_second(10.0).unwrap())
        .host("q.test")]);
    let start = Instant::now();
    let (server, log) = server(start, |_, n| {
        let quota = if n == 0 {
            "\"burst\";q=60;w=60"
        } else {
            "\"burst\";q=100000;w=1"
        };
        Response::builder()
            .header("ratelimit-policy", quota)
            .body("ok")
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(r.clone()))
        .service(server);
    svc.clone().oneshot(get("https://q.test/0")).await.unwrap();
    // 60 per minute at the 0.9 safety factor: 0.9/s.
    let limits = &r.snapshot()[0].buckets[0].limits;
    assert!(
        (limits[0].tokens_per_second() - 0.9).abs() < 1e-9,
        "{limits:?}"
    );
    svc.clone().oneshot(get("https://q.test/1")).await.unwrap();
    // The slot is 1/0.9 s; tokio's timer wakes on the next whole millisecond.
    let second = times(&log, "q.test")[1];
    assert!(
        second >= Duration::from_nanos(1_111_111_112) && second <= ms(1112),
        "{second:?}"
    );
    // The next answer announces far more than configured: back to 10/s, not above.
    let limits = &r.snapshot()[0].buckets[0].limits;
    assert_eq!(limits[0].tokens_per_second(), 10.0);
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_is_held_until_the_response_arrives() {
    let r = registry(vec![Source::new("s")
        .limit(Policy::unlimited())
        .host("s.test")
        .max_in_flight(1)]);
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<()>, Response<&'static str>, _>(RateLimitLayer::new(r));
    handle.allow(10);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut first = tokio_test::task::spawn(svc.call(get("https://s.test/1")));
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut second = tokio_test::task::spawn(svc.call(get("https://s.test/2")));
    assert!(first.poll().is_pending());
    assert!(second.poll().is_pending());
    let (_, reply) = handle.next_request().await.unwrap();
    // The second waits for the first's response.
    assert!(second.poll().is_pending());
    assert!(tokio_test::task::spawn(handle.next_request())
        .poll()
        .is_pending());
    reply.send_response(Response::new("one"));
    assert!(first.poll().is_ready());
    assert!(second.poll().is_pending());
    let (req, reply) = handle.next_request().await.unwrap();
    assert_eq!(req.uri(), "https://s.test/2");
    reply.send_response(Response::new("two"));
    assert!(second.poll().is_ready());
}

#[tokio::test(start_paused = true)]
async fn host_header_routing_and_requests_without_a_host() {
    let r = registry(vec![Source::new("h")
        .limit(Policy::per_second(1.0).unwrap())
        .host("h.test")]);
    let start = Instant::now();
    let (server, _log) = server(start, ok);
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(r))
        .service(server);
    let by_header = Request::get("/x")
        .header("host", "H.test")
        .body(())
        .unwrap();
    svc.clone().oneshot(by_header).await.unwrap();
    let by_header = Request::get("/y")
        .header("host", "h.test")
        .body(())
        .unwrap();
    svc.clone().oneshot(by_header).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(1000),
        "both routed to h: the second waited"
    );
    let err = svc
        .clone()
        .oneshot(Request::get("/z").body(()).unwrap())
        .await
        .unwrap_err();
    let e = err.downcast_ref::<tollgate::Error>().unwrap();
    assert!(e.is_unknown_host(), "{e:?}");
    assert_eq!(e.host(), Some(""));
}

#[tokio::test(start_paused = true)]
async fn the_keyed_form_routes_any_request_by_its_key() {
    let r = registry(vec![
        Source::new("search")
            .limit(Policy::per_second(1.0).unwrap())
            .host("search"),
        Source::new("lookup")
            .limit(Policy::per_second(4.0).unwrap())
            .host("lookup"),
    ]);
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let inner = service_fn(move |req: (&'static str, u32)| {
        s.lock().unwrap().push((req.0, start.elapsed()));
        async move { Ok::<_, Infallible>(req.1) }
    });
    let svc = ServiceBuilder::new()
        .layer(KeyedRateLimitLayer::new(r, |req: &(&'static str, u32)| {
            req.0
        }))
        .service(inner);
    for i in 0..3 {
        assert_eq!(svc.clone().oneshot(("search", i)).await.unwrap(), i);
        svc.clone().oneshot(("lookup", i)).await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let search: Vec<_> = seen
        .iter()
        .filter(|(k, _)| *k == "search")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(search, [ms(0), ms(1000), ms(2000)]);
}

#[tokio::test(start_paused = true)]
async fn requests_already_waiting_also_wait_out_a_retry_after() {
    let r = registry(vec![Source::new("a")
        .limit(Policy::per_second(4.0).unwrap())
        .host("a.test")]);
    let start = Instant::now();
    let (server, log) = server(start, |_, n| {
        if n == 0 {
            Response::builder()
                .status(429)
                .header("retry-after", "3")
                .body("slow down")
                .unwrap()
        } else {
            Response::new("ok")
        }
    });
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(r))
        .service(server);
    // Six requests queue at once (slots 0, 250, 500, ... ms); the first is refused.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.oneshot(get(&format!("https://a.test/{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let a = times(&log, "a.test");
    assert_eq!(a[0], ms(0));
    assert!(
        a[1..].iter().all(|t| *t >= ms(3000)),
        "nothing inside the server's 3 s: {a:?}"
    );
    for pair in a[1..].windows(2) {
        assert!(pair[1] - pair[0] >= ms(250), "paced after it: {a:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_quota_equal_to_the_policy_leaves_it_exact() {
    let discogs = Policy::window(25, Duration::from_secs(60)).unwrap();
    let r = registry(vec![Source::new("discogs")
        .limit(discogs)
        .host("api.discogs.test")]);
    let start = Instant::now();
    let (server, _log) = server(start, |_, n| {
        Response::builder()
            .header("x-discogs-ratelimit", "25")
            .header("x-discogs-ratelimit-used", (n + 1).to_string())
            .header("x-discogs-ratelimit-remaining", (24 - n).to_string())
            .body("ok")
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(r.clone()))
        .service(server);
    svc.clone()
        .oneshot(get("https://api.discogs.test/releases/1"))
        .await
        .unwrap();
    let snap = &r.snapshot()[0].buckets[0];
    assert_eq!(snap.limits, [discogs], "unchanged, still a window policy");
    assert_eq!(snap.server_rate, Some(25.0 / 60.0));
}
