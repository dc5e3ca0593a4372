//! The adaptive controller (`Learn::adaptive`) against a simulated server
//! that refuses with bare 429s above a limit it never announces: steady at
//! 7/s, halving halfway through, and doubling halfway through. Beside it,
//! the other shape that was measured, the SRE book's client-side
//! throttling, as a model here (it drops requests rather than pacing them,
//! so it is not a limit the registry could hold). Paused time.
//!
//! `cargo test --test adaptive -- --nocapture` prints the figures that
//! BENCHMARKS.md quotes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tollgate::learn::{Learn, Origin};
use tollgate::{Registry, Source, Target, UnknownHost};

/// At most `limit(t)` requests in any one-second window; 429 beyond, with
/// no header at all.
struct Server {
    start: Instant,
    limit: fn(Duration) -> usize,
    admitted: VecDeque<Instant>,
}

impl Server {
    fn new(limit: fn(Duration) -> usize) -> Self {
        Server {
            start: Instant::now(),
            limit,
            admitted: VecDeque::new(),
        }
    }

    fn answer(&mut self) -> bool {
        let now = Instant::now();
        while self
            .admitted
            .front()
            .is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() < (self.limit)(now.duration_since(self.start)) {
            self.admitted.push_back(now);
            true
        } else {
            false
        }
    }
}

/// What happened to one request: when it reached the server, and whether
/// the server refused it.
#[derive(Clone, Copy, Debug)]
struct Event {
    at: Duration,
    refused: bool,
}

const CALLERS: usize = 8;
const LATENCY: Duration = Duration::from_millis(20);

/// The registry's adaptive controller: `CALLERS` tasks send as fast as
/// the limiter lets them for `secs` seconds.
async fn cubic(limit: fn(Duration) -> usize, secs: u64) -> (Vec<Event>, Registry) {
    let registry = Registry::builder()
        .source(
            Source::new("elsewhere")
                .learn_with(Learn::default().adaptive(true))
                .per_host(),
        )
        .unknown_hosts(UnknownHost::Default("elsewhere".into()))
        .build()
        .unwrap();
    let server = Arc::new(Mutex::new(Server::new(limit)));
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (registry, server, log) = (registry.clone(), server.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let uri: http::Uri = "https://quiet.example.org/items".parse().unwrap();
            loop {
                let permit = registry
                    .acquire(&Target::from_uri(&uri), 1.0)
                    .await
                    .unwrap();
                if Instant::now() >= end {
                    break;
                }
                tokio::time::sleep(LATENCY / 2).await;
                let ok = server.lock().unwrap().answer();
                log.lock().unwrap().push(Event {
                    at: start.elapsed(),
                    refused: !ok,
                });
                tokio::time::sleep(LATENCY / 2).await;
                let status = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                };
                permit.observe(status, &HeaderMap::new());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    (log, registry)
}

/// Client-side throttling (Google SRE book, ch. 21 "Handling Overload"):
/// each request is dropped locally with probability
/// `max(0, (requests − K·accepts) / (requests + 1))` over the last two
/// minutes, `K = 2`. Deterministic: a request goes when the running sum of
/// that probability has not reached the next whole drop.
async fn sre(limit: fn(Duration) -> usize, secs: u64) -> Vec<Event> {
    const K: f64 = 2.0;
    let mut server = Server::new(limit);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut history: VecDeque<(Instant, bool)> = VecDeque::new();
    let mut owed = 0.0f64;
    let mut log = Vec::new();
    // One caller per slot of the same offered load as the CUBIC run: a
    // request every LATENCY / CALLERS.
    while Instant::now() < end {
        let now = Instant::now();
        while history
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(120))
        {
            history.pop_front();
        }
        let requests = history.len() as f64;
        let accepts = history.iter().filter(|(_, ok)| *ok).count() as f64;
        let p = ((requests - K * accepts) / (requests + 1.0)).max(0.0);
        owed += p;
        if owed >= 1.0 {
            owed -= 1.0; // dropped locally; counted as a request by the rule
            history.push_back((now, false));
        } else {
            let ok = server.answer();
            history.push_back((now, ok));
            log.push(Event {
                at: start.elapsed(),
                refused: !ok,
            });
        }
        tokio::time::sleep(LATENCY / CALLERS as u32).await;
    }
    log
}

/// Refused share and the share of `rate` used, over `[from, to)` seconds.
fn figures(log: &[Event], from: u64, to: u64, rate: f64) -> (f64, f64) {
    let span: Vec<_> = log
        .iter()
        .filter(|e| e.at >= Duration::from_secs(from) && e.at < Duration::from_secs(to))
        .collect();
    let refused = span.iter().filter(|e| e.refused).count() as f64;
    let ok = span.len() as f64 - refused;
    let used = ok / (to - from) as f64 / rate;
    (refused / span.len().max(1) as f64, used)
}

fn report(name: &str, shape: &str, (refused, used): (f64, f64)) {
    eprintln!(
        "| {name} | {shape} | {:.1} % | {:.0} % |",
        refused * 100.0,
        used * 100.0
    );
}

fn steady(_: Duration) -> usize {
    7
}

fn halves(t: Duration) -> usize {
    if t < Duration::from_secs(20) {
        14
    } else {
        7
    }
}

fn doubles(t: Duration) -> usize {
    if t < Duration::from_secs(20) {
        7
    } else {
        14
    }
}

#[tokio::test(start_paused = true)]
async fn an_unannounced_7_per_second_is_found() {
    let (log, registry) = cubic(steady, 40).await;
    let f = figures(&log, 10, 40, 7.0);
    report("steady 7/s, from 10 s to 40 s", "CUBIC", f);
    report(
        "steady 7/s, the first 10 s",
        "CUBIC",
        figures(&log, 0, 10, 7.0),
    );
    report(
        "steady 7/s, from 10 s to 40 s",
        "SRE, K = 2",
        figures(&sre(steady, 40).await, 10, 40, 7.0),
    );
    assert!(f.0 < 0.05, "{:.1} % refused", f.0 * 100.0);
    assert!(f.1 >= 0.8, "{:.0} % of 7/s used", f.1 * 100.0);
    // The rate shows in the snapshot, as the controller's.
    let snap = registry.snapshot();
    let host = snap[0].buckets.iter().find(|b| b.host.is_some()).unwrap();
    let rate = host
        .learned
        .iter()
        .find(|l| l.origin == Origin::Adaptive)
        .map(|l| l.policy.tokens_per_second())
        .unwrap();
    assert!(rate > 3.5 && rate < 14.0, "{rate}");
}

#[tokio::test(start_paused = true)]
async fn a_limit_that_halves_is_followed_down() {
    let (log, _) = cubic(halves, 40).await;
    let before = figures(&log, 10, 20, 14.0);
    let after = figures(&log, 30, 40, 7.0);
    report("14/s then 7/s at 20 s: 10–20 s", "CUBIC", before);
    report("14/s then 7/s at 20 s: 30–40 s", "CUBIC", after);
    let sre_log = sre(halves, 40).await;
    report(
        "14/s then 7/s at 20 s: 30–40 s",
        "SRE, K = 2",
        figures(&sre_log, 30, 40, 7.0),
    );
    for (what, (refused, used)) in [("before", before), ("after", after)] {
        assert!(refused < 0.05, "{what}: {:.1} % refused", refused * 100.0);
        assert!(used >= 0.8, "{what}: {:.0} % used", used * 100.0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_limit_that_doubles_is_followed_up() {
    let (log, _) = cubic(doubles, 40).await;
    let before = figures(&log, 10, 20, 7.0);
    let after = figures(&log, 30, 40, 14.0);
    report("7/s then 14/s at 20 s: 10–20 s", "CUBIC", before);
    report("7/s then 14/s at 20 s: 30–40 s", "CUBIC", after);
    let sre_log = sre(doubles, 40).await;
    report(
        "7/s then 14/s at 20 s: 30–40 s",
        "SRE, K = 2",
        figures(&sre_log, 30, 40, 14.0),
    );
    for (what, (refused, used)) in [("before", before), ("after", after)] {
        assert!(refused < 0.05, "{what}: {:.1} % refused", refused * 100.0);
        assert!(used >= 0.8, "{what}: {:.0} % used", used * 100.0);
    }
}
