//! Priority lanes on paused time: interactive requests go before batch
//! requests that wait, batch keeps its guaranteed share of a saturated
//! source, and the window bound is unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tollgate::{Lane, Lanes, Policy, Registry, Source, Target, Timestamp, TokioClock};

use crate::common;
use common::max_in_window;

const RUN: Duration = Duration::from_secs(30);
const SLOT: Duration = Duration::from_millis(100);

fn registry() -> Registry {
    Registry::builder()
        .source(
            Source::new("api")
                .limit(Policy::per_second(10.0).unwrap())
                .lanes(Lanes::new().batch_share(0.1))
                .host("api.test"),
        )
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

type Log = Arc<Mutex<Vec<(Lane, Timestamp, Duration)>>>;

/// `n` tasks that send back to back in `lane` until the run ends.
fn loopers(
    r: &Registry,
    lane: Lane,
    n: usize,
    log: &Log,
    end: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (r, log) = (r.clone(), log.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let t = Target::new("api.test", None, "/").with_lane(lane);
                    let p = r.acquire(&t, 1.0).await.unwrap();
                    log.lock()
                        .unwrap()
                        .push((lane, p.admitted_at(), p.waited()));
                }
            })
        })
        .collect()
}

fn p99(mut waits: Vec<Duration>) -> Duration {
    waits.sort();
    waits[waits.len() * 99 / 100]
}

fn check_bound(log: &[(Lane, Timestamp, Duration)]) {
    let mut admitted: Vec<(u64, f64)> = log.iter().map(|(_, t, _)| (t.as_nanos(), 1.0)).collect();
    admitted.sort_by_key(|a| a.0);
    assert!(max_in_window(&admitted, 1_000_000_000) <= 10.0);
}

#[tokio::test(start_paused = true)]
async fn interactive_requests_wait_less_than_a_slot_behind_saturating_batch_work() {
    let r = registry();
    let log: Log = Arc::default();
    let end = Instant::now() + RUN;
    let batch = loopers(&r, Lane::Batch, 20, &log, end);
    // An interactive request every 250 ms, while batch work saturates.
    let mut waits = Vec::new();
    while Instant::now() + Duration::from_millis(250) < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let t = Target::new("api.test", None, "/").with_lane(Lane::Interactive);
        let p = r.acquire(&t, 1.0).await.unwrap();
        log.lock()
            .unwrap()
            .push((Lane::Interactive, p.admitted_at(), p.waited()));
        waits.push(p.waited());
    }
    for b in batch {
        b.await.unwrap();
    }
    let log = log.lock().unwrap();
    let batch_count = log.iter().filter(|(l, _, _)| *l == Lane::Batch).count();
    assert!(
        waits.len() >= 90,
        "{} requests, waits {:?}",
        waits.len(),
        &waits[..waits.len().min(20)]
    );
    assert!(
        p99(waits.clone()) < SLOT,
        "interactive p99 wait {:?}",
        p99(waits)
    );
    // Batch takes the rest of the slots: far above its 10 % share.
    assert!(
        batch_count * 10 >= log.len() * 5,
        "{batch_count} of {}",
        log.len()
    );
    check_bound(&log);
}

#[tokio::test(start_paused = true)]
async fn batch_keeps_its_share_when_both_lanes_saturate() {
    let r = registry();
    let log: Log = Arc::default();
    let end = Instant::now() + RUN;
    let mut tasks = loopers(&r, Lane::Batch, 20, &log, end);
    tasks.extend(loopers(&r, Lane::Interactive, 20, &log, end));
    for t in tasks {
        t.await.unwrap();
    }
    let log = log.lock().unwrap();
    // Within the run: after it, queued batch work drains alone.
    let within: Vec<_> = log
        .iter()
        .filter(|(_, t, _)| t.as_nanos() < RUN.as_nanos() as u64)
        .collect();
    let total = within.len();
    let batch = within.iter().filter(|(l, _, _)| *l == Lane::Batch).count();
    // 10 % of a saturated source, give or take the first slots.
    assert!(total >= 290, "{total}");
    assert!(batch * 10 + 20 >= total, "batch got {batch} of {total}");
    assert!(
        batch * 10 <= total + 30,
        "batch got more than its share: {batch} of {total}"
    );
    check_bound(&log);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_gives_up_leaves_its_lane() {
    let r = registry();
    let t = || Target::new("api.test", None, "/");
    let _first = r.acquire(&t(), 1.0).await.unwrap();
    // Two wait in the batch lane; the first gives up.
    let quitter = tokio::time::timeout(SLOT / 2, r.acquire(&t().with_lane(Lane::Batch), 1.0)).await;
    assert!(quitter.is_err());
    let start = Instant::now();
    let _second = r.acquire(&t().with_lane(Lane::Batch), 1.0).await.unwrap();
    assert!(start.elapsed() <= SLOT, "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn the_tower_layer_reads_and_strips_the_lane_header() {
    use std::convert::Infallible;
    use tower::{service_fn, Layer, Service, ServiceExt};

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut svc = tollgate::tower::RateLimitLayer::new(registry()).layer(service_fn(
        move |req: http::Request<()>| {
            s.lock()
                .unwrap()
                .push(req.headers().contains_key("x-tollgate-lane"));
            async { Ok::<_, Infallible>(http::Response::new(())) }
        },
    ));
    let req = http::Request::get("https://api.test/")
        .header("x-tollgate-lane", "batch")
        .body(())
        .unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [false],
        "the header reached the server"
    );
}

/// Issue #19, item 4: a request queued behind the head kept no deadline, so
/// a batch request waited 11 s under a `max_wait` of 3 s, and forever with
/// `batch_share(0)`. Every place in the queue keeps `max_wait`.
#[tokio::test(start_paused = true)]
async fn a_request_behind_the_head_keeps_its_max_wait() {
    for share in [0.1, 0.0] {
        let r = Registry::builder()
            .source(
                Source::new("api")
                    .limit(Policy::per_second(1.0).unwrap())
                    .lanes(Lanes::new().batch_share(share))
                    .on_limit(tollgate::OnLimit::Wait {
                        max_wait: Some(Duration::from_secs(3)),
                    })
                    .host("api.test"),
            )
            .clock(TokioClock::new())
            .build()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        let log: Log = Arc::default();
        // Interactive work keeps the source busy, so batch waits behind it.
        let busy = loopers(&r, Lane::Interactive, 3, &log, end);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        let t = Target::new("api.test", None, "/").with_lane(Lane::Batch);
        let got = r.acquire(&t, 1.0).await;
        let took = t0.elapsed();
        assert!(
            took <= Duration::from_secs(3) + Duration::from_millis(20),
            "share {share}: answered after {took:?} ({got:?})"
        );
        if share == 0.0 {
            assert!(
                got.is_err(),
                "batch_share(0) behind busy interactive work: {got:?}"
            );
        }
        for b in busy {
            b.abort();
        }
    }
}

/// Issue #19, item 6: `try_acquire` and `check` took the slot a queued head
/// waited for. While requests wait in a set's lanes, a take now refuses.
#[tokio::test(start_paused = true)]
async fn takes_now_do_not_jump_the_lane_queues() {
    let r = registry();
    let t = Target::new("api.test", None, "/").with_lane(Lane::Batch);
    let _first = r.acquire(&t, 1.0).await.unwrap();
    // The bucket is empty: the next batch request queues.
    let r2 = r.clone();
    let queued = tokio::spawn(async move {
        let t = Target::new("api.test", None, "/").with_lane(Lane::Batch);
        r2.acquire(&t, 1.0).await.map(|p| p.admitted_at())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Its slot comes at 100 ms; a take now at 100 ms must not win it.
    tokio::time::advance(Duration::from_millis(50)).await;
    let now = Target::new("api.test", None, "/");
    let e = r.try_acquire(&now, 1.0).unwrap_err();
    assert_eq!(e.kind(), tollgate::ErrorKind::RateLimited, "{e}");
    assert!(r.check(&now, 1.0).is_err());
    assert!(queued.await.unwrap().is_ok());
}
