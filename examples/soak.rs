//! # `cargo run --example soak`: the demo's job, long, with faults
//!
//! Runs the demo's connectors (see `examples/demo/`) against its upstream,
//! which enforces the MusicBrainz, Discogs and AcoustID limits and counts
//! violations, for `--seconds N`, while a seeded generator injects, at
//! random:
//!
//! * policy changes: a source set slower (`Registry::set_policy`) and back
//!   a few seconds later;
//! * deferrals: an API's next answer is 429 with `Retry-After`, and its
//!   server counts any request before that time as a violation; on the
//!   per-host source, a `Permit`-level 429 signal;
//! * host churn: a per-host source (`crawl`, at most 64 host sets) takes
//!   permits for a stream of new hosts, so its eviction sweeps run all the
//!   time, while a few regular hosts of it are checked against their window
//!   bound and deferrals on the registry's own clock (no traffic leaves the
//!   process for them).
//!
//! It prints the resident memory (VmRSS) at the start, every 10 s and at the
//! end, then per source the requests sent and admitted, and the lines
//! `violations: N` and `stalls: N` (a stall: a source that made no progress
//! for more than 5 s). It exits non-zero on any violation or stall.
//!
//! ```text
//! cargo run --example soak -- --seconds 600
//! cargo run --example soak -- --seconds 20 --seed 7
//! ```

#[allow(dead_code)] // the demo's connectors, of which the soak uses a part
#[path = "demo/connectors.rs"]
mod connectors;
#[allow(dead_code)]
#[path = "demo/upstream.rs"]
mod upstream;

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use tollgate::{presets, Clock, Policy, Registry, Source, Target, UnknownHost};

use connectors::{http_stack, AcoustId, ClientStats, Discogs, MusicBrainz};
use upstream::{Api, Upstream};

const HELP: &str = "\
tollgate soak: the demo's connectors against its limit-enforcing upstream, with
policy changes, server deferrals and host churn injected at random.

usage: cargo run --example soak -- [options]

options:
  --seconds N   run for N seconds (default 60, at most 86400)
  --seed N      the fault generator's seed (default 1)
  --workers N   concurrent workers per API (default 3, at most 64)
  -h, --help    this text

Exits non-zero on a violation or a stall (a source without progress > 5 s).";

/// A source without progress for longer than this is stalled. Every pace
/// the soak sets stays well under it: Discogs slowed to 0.6 sends one
/// request every 4 s, and an injected deferral lasts at most 3 s.
const STALL: Duration = Duration::from_secs(5);
/// How many host sets the per-host source keeps.
const MAX_HOSTS: usize = 64;
/// The regular hosts of the per-host source.
const REGULARS: usize = 4;
/// The window the regular hosts' admissions are counted in: a second, less
/// a millisecond of slack for when a permit's time is read.
const CHECK_WINDOW: Duration = Duration::from_millis(999);

struct Args {
    seconds: u64,
    seed: u64,
    workers: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        seconds: 60,
        seed: 1,
        workers: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut number = |name: &str, max: u64| -> Result<u64, String> {
            let v = inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{name}: `{v}` is not a whole number from 1 to {max}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => args.seconds = number("--seconds", 86_400)?,
            "--seed" => args.seed = number("--seed", u64::MAX)?,
            "--workers" => args.workers = number("--workers", 64)? as usize,
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(Some(args))
}

/// xorshift64*: small, seeded, and enough to pick faults.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The process's resident memory in KiB, from `/proc/self/status`.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

fn rss_text() -> String {
    rss_kib().map_or("unknown".to_string(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    })
}

/// The configured limit of each API: the demo's.
fn api_policy(api: Api) -> Result<Policy, tollgate::Error> {
    match api {
        Api::MusicBrainz => Ok(presets::musicbrainz().limits()[0]),
        Api::Discogs => Ok(presets::discogs_unauthenticated().limits()[0]),
        Api::AcoustId => Policy::window(3, Duration::from_secs(1)),
        // Not among `Api::CONFIGURED`: its limit is documented nowhere, and
        // the soak keeps to the limits it can check.
        Api::Lyrics => unreachable!("the soak calls only the configured APIs"),
    }
}

/// What the per-host source's checks counted.
#[derive(Default)]
struct CrawlStats {
    /// Permits for regular hosts.
    regular: AtomicU64,
    /// Permits for new hosts.
    churned: AtomicU64,
    /// Admissions beyond the window bound or before a deferral.
    violations: AtomicU64,
    /// `Permit`-level deferrals applied.
    deferrals: AtomicU64,
    /// The most host sets seen at once.
    peak_hosts: AtomicU64,
    /// The first violation, as text.
    first: Mutex<Option<String>>,
}

impl CrawlStats {
    fn violation(&self, what: String) {
        self.violations.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(what);
    }
}

/// One regular host of `crawl`: acquires in a loop and checks every
/// admission against the window bound of the largest policy and against
/// the deferrals it asked for.
///
/// The window checked is [`CHECK_WINDOW`]: a permit granted at once says it
/// was admitted at the time read just after its tokens were taken, a few
/// microseconds after the arrival the bucket computed with, so a window of
/// exactly the bound's length could catch one request too many that the
/// bucket never admitted together.
async fn regular_host(
    registry: Registry,
    host: String,
    bound: f64,
    seed: u64,
    stats: Arc<CrawlStats>,
    deadline: tokio::time::Instant,
) -> Result<(), tollgate::Error> {
    let mut rng = Rng::new(seed);
    let mut window: VecDeque<u64> = VecDeque::new();
    let mut floor = 0u64;
    let window_ns = CHECK_WINDOW.as_nanos() as u64;
    while tokio::time::Instant::now() < deadline {
        let target = Target::new(&host, Some(443), "/");
        let acquire = registry.acquire(&target, 1.0);
        let permit = tokio::select! {
            p = acquire => p?,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let at = permit.admitted_at().as_nanos();
        stats.regular.fetch_add(1, Ordering::Relaxed);
        if at < floor {
            stats.violation(format!(
                "{host}: admitted at {at} ns, deferred until {floor} ns"
            ));
        }
        while window.front().is_some_and(|&t| t + window_ns <= at) {
            window.pop_front();
        }
        window.push_back(at);
        if window.len() as f64 > bound {
            let spread = (at - window[0]) as f64 / 1e6;
            stats.violation(format!(
                "{host}: {} admitted within {spread:.3} ms",
                window.len()
            ));
        }
        if rng.chance(0.005) {
            // The server said 429, wait 1 s: nothing before now + 1 s.
            let mut headers = HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            floor = registry.clock().now().as_nanos() + 1_000_000_000;
            permit.observe(StatusCode::TOO_MANY_REQUESTS, &headers);
            stats.deferrals.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// New hosts of `crawl`, a few every few milliseconds, for as long as the
/// soak runs: the table stays full and sweeps evict all the time.
async fn churn(
    registry: Registry,
    seed: u64,
    stats: Arc<CrawlStats>,
    deadline: tokio::time::Instant,
) -> Result<(), tollgate::Error> {
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    let mut host = String::new();
    while tokio::time::Instant::now() < deadline {
        for _ in 0..1 + rng.below(8) {
            n += 1;
            host.clear();
            use std::fmt::Write;
            let _ = write!(host, "n{n}.churn.test");
            let acquire = registry.acquire(&Target::new(&host, Some(443), "/"), 1.0);
            tokio::select! {
                p = acquire => drop(p?),
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
            }
            stats.churned.fetch_add(1, Ordering::Relaxed);
        }
        let hosts = registry.host_count("crawl")? as u64;
        stats.peak_hosts.fetch_max(hosts, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1 + rng.below(10))).await;
    }
    Ok(())
}

/// A worker of one API: calls it in a loop until the deadline (a call
/// still pending then is dropped, which gives its slot back).
async fn api_worker(call: Caller, deadline: tokio::time::Instant, mut i: u64) {
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = call.call(i) => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
        i += 1;
    }
}

/// One API's connector, whichever it is.
#[derive(Clone)]
enum Caller {
    MusicBrainz(MusicBrainz),
    Discogs(Discogs),
    AcoustId(AcoustId),
}

impl Caller {
    /// Item `i`'s call; the servers count the answers.
    async fn call(&self, i: u64) {
        let _ = match self {
            Caller::MusicBrainz(c) => {
                let mbid = format!("{:08x}-0000-4000-8000-{:012x}", i & 0xffff_ffff, i);
                c.lookup_recording(&mbid).await
            }
            Caller::Discogs(c) => c.release(249_504 + i).await,
            Caller::AcoustId(c) => {
                let fp = format!("AQADtMmybfGO8NCNEESLnzHyXNOHeHnG{i:06}");
                c.lookup_fingerprint(&fp, 180 + (i % 120) as u32).await
            }
        };
    }
}

/// For each violation `api`'s server counted: when, the answers of the
/// second before it, and the faults injected in the 10 s before it.
fn explain_violations(api: Api, upstream: &Upstream, start: Instant, faults: &[(f64, String)]) {
    let events = upstream.stats(api).events();
    let secs = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
    for (i, &(t, outcome)) in events.iter().enumerate() {
        if outcome != upstream::Outcome::Violation {
            continue;
        }
        let at = secs(t);
        let before: Vec<String> = events[..i]
            .iter()
            .filter(|(e, _)| t.saturating_duration_since(*e) < Duration::from_secs(1))
            .map(|&(e, o)| format!("{:.3} {o:?}", secs(e)))
            .collect();
        let recent: Vec<&str> = faults
            .iter()
            .filter(|(f, _)| *f <= at && at - *f < 10.0)
            .map(|(_, what)| what.as_str())
            .collect();
        println!(
            "{} violation at {at:.3} s; the second before: [{}]; faults in the 10 s before: {recent:?}",
            api.name(),
            before.join(", ")
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(false)` when it saw a violation or a stall.
async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let rss_start = rss_kib();
    let upstream = Upstream::start().await?;
    let crawl_policy = Policy::per_second(20.0)?.burst(2.0)?;
    let mut builder = Registry::builder()
        .unknown_hosts(UnknownHost::Reject)
        .max_hosts(MAX_HOSTS);
    let mut configured = Vec::new();
    for api in Api::CONFIGURED {
        let policy = api_policy(api)?;
        configured.push((api.name(), policy));
        builder = builder.source(
            Source::new(api.name())
                .host(upstream.addr(api).to_string())
                .limit(policy),
        );
    }
    configured.push(("crawl", crawl_policy));
    let registry = builder
        .source(
            Source::new("crawl")
                .host("*.churn.test")
                .per_host()
                .limit(crawl_policy),
        )
        .build()?;
    println!(
        "tollgate soak: {} s, seed {}, {} workers per API, RSS {}",
        args.seconds,
        args.seed,
        args.workers,
        rss_text()
    );

    // The demo's stacks and connectors, one per API, over the one registry.
    let stats: Vec<Arc<ClientStats>> = Api::CONFIGURED.iter().map(|_| Arc::default()).collect();
    let base = |api: Api| format!("http://{}", upstream.addr(api));
    let callers = [
        Caller::MusicBrainz(MusicBrainz::new(
            http_stack(&registry, true),
            base(Api::MusicBrainz),
            stats[0].clone(),
        )),
        Caller::Discogs(Discogs::new(
            http_stack(&registry, true),
            base(Api::Discogs),
            stats[1].clone(),
            None,
        )),
        Caller::AcoustId(AcoustId::new(
            http_stack(&registry, true),
            base(Api::AcoustId),
            stats[2].clone(),
        )),
    ];

    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let crawl = Arc::new(CrawlStats::default());
    let bound = crawl_policy.max_in_window(CHECK_WINDOW);
    let mut tasks = tokio::task::JoinSet::new();
    for (k, caller) in callers.iter().enumerate() {
        for w in 0..args.workers {
            let (caller, i) = (caller.clone(), (k * 1_000_000 + w * 100_000) as u64);
            tasks.spawn(async move {
                api_worker(caller, deadline, i).await;
                Ok::<(), tollgate::Error>(())
            });
        }
    }
    for k in 0..REGULARS {
        let (registry, crawl) = (registry.clone(), crawl.clone());
        let seed = args.seed ^ ((k as u64 + 1) << 32);
        tasks.spawn(regular_host(
            registry,
            format!("r{k}.churn.test"),
            bound,
            seed,
            crawl,
            deadline,
        ));
    }
    tasks.spawn(churn(
        registry.clone(),
        args.seed ^ 0xC0FFEE,
        crawl.clone(),
        deadline,
    ));

    // Progress per source: what the limiter let through.
    let progress = |i: usize| -> u64 {
        match i {
            0..=2 => stats[i].sent(),
            _ => crawl.regular.load(Ordering::Relaxed) + crawl.churned.load(Ordering::Relaxed),
        }
    };
    let names = ["musicbrainz", "discogs", "acoustid", "crawl"];
    let mut last = [(0u64, Instant::now()); 4];
    let mut stalled = [false; 4];
    let mut stalls = 0u64;
    let mut rng = Rng::new(args.seed);
    let mut restore: Vec<(Instant, usize)> = Vec::new();
    let (mut policy_changes, mut next_rss) = (0u64, Instant::now() + Duration::from_secs(10));
    // What was injected when (seconds from the start), for the report.
    let mut faults: Vec<(f64, String)> = Vec::new();
    let mut max_lag = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let due = tick.tick().await;
        // How late the runtime woke this task: the machine's load, shown
        // beside any violation.
        max_lag = max_lag.max(due.elapsed());
        let now = Instant::now();
        let at = start.elapsed().as_secs_f64();
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        // Faults, a few a minute each.
        if rng.chance(0.03) {
            let i = rng.below(4) as usize;
            if !restore.iter().any(|&(_, j)| j == i) {
                let factor = 0.6 + 0.3 * (rng.below(1000) as f64 / 1000.0);
                registry.set_policy(names[i], configured[i].1.scaled(factor)?)?;
                faults.push((at, format!("{} slowed to {factor:.2}", names[i])));
                restore.push((now + Duration::from_secs(2 + rng.below(7)), i));
                policy_changes += 1;
            }
        }
        for &(_, i) in restore.iter().filter(|(t, _)| *t <= now) {
            registry.set_policy(names[i], configured[i].1)?;
            faults.push((at, format!("{} restored", names[i])));
            policy_changes += 1;
        }
        restore.retain(|(t, _)| *t > now);
        if rng.chance(0.02) {
            let api = Api::CONFIGURED[rng.below(3) as usize];
            let secs = 1 + rng.below(3);
            upstream.inject_retry_after(api, secs);
            faults.push((
                at,
                format!("{}: next answer 429, Retry-After {secs}", api.name()),
            ));
        }
        // Stalls: a source whose count has not moved for too long.
        for (i, name) in names.iter().enumerate() {
            let n = progress(i);
            if n != last[i].0 {
                last[i] = (n, now);
                stalled[i] = false;
            } else if !stalled[i] && now.duration_since(last[i].1) > STALL {
                stalled[i] = true;
                stalls += 1;
                println!(
                    "stall: {name} made no progress for {:.1} s at {:.0} s",
                    now.duration_since(last[i].1).as_secs_f64(),
                    at
                );
            }
        }
        if now >= next_rss {
            next_rss += Duration::from_secs(10);
            println!(
                "{:>5.0} s  RSS {}  sent mb/dc/ac {}/{}/{}  crawl {}+{}  host sets {}",
                start.elapsed().as_secs_f64(),
                rss_text(),
                stats[0].sent(),
                stats[1].sent(),
                stats[2].sent(),
                crawl.regular.load(Ordering::Relaxed),
                crawl.churned.load(Ordering::Relaxed),
                registry.host_count("crawl")?
            );
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let rss_end = rss_kib();

    println!();
    println!("source        sent     ok  violations (in a deferral)  injected 429s");
    let mut violations = 0;
    for api in Api::CONFIGURED {
        let server = upstream.stats(api);
        violations += server.violations();
        println!(
            "{:<12} {:>5}  {:>5}  {:>10} {:>15}  {:>13}",
            api.name(),
            stats[api.index()].sent(),
            server.ok(),
            server.violations(),
            format!("({})", upstream.early(api)),
            upstream.injected(api)
        );
    }
    for api in Api::CONFIGURED {
        explain_violations(api, &upstream, start.into_std(), &faults);
    }
    let crawl_violations = crawl.violations.load(Ordering::Relaxed);
    violations += crawl_violations;
    println!(
        "crawl: {} permits for {REGULARS} regular hosts ({} permit-level deferrals), {} for new hosts; \
         at most {} host sets (cap {MAX_HOSTS}); {crawl_violations} violations",
        crawl.regular.load(Ordering::Relaxed),
        crawl.deferrals.load(Ordering::Relaxed),
        crawl.churned.load(Ordering::Relaxed),
        crawl.peak_hosts.load(Ordering::Relaxed),
    );
    if let Some(first) = crawl
        .first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        println!("crawl: first violation: {first}");
    }
    println!("policy changes: {policy_changes}");
    println!(
        "deferrals injected: {} by the servers, {} at the permit",
        Api::CONFIGURED
            .iter()
            .map(|a| upstream.injected(*a))
            .sum::<u64>(),
        crawl.deferrals.load(Ordering::Relaxed)
    );
    println!(
        "largest scheduling lag of the fault task: {:.1} ms",
        max_lag.as_secs_f64() * 1e3
    );
    let mib = |k: Option<u64>| {
        k.map_or("unknown".to_string(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    println!("RSS: start {}, end {}", mib(rss_start), mib(rss_end));
    println!("stalls: {stalls}");
    println!("violations: {violations}");
    Ok(violations == 0 && stalls == 0)
}
