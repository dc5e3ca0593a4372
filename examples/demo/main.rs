//! # `cargo run --example demo`: tollgate keeping three real-world limits and learning a fourth
//!
//! The demo starts an embedded upstream (four axum servers on 127.0.0.1,
//! see [`upstream`]) that plays MusicBrainz (1 request a second, 503 when
//! exceeded), Discogs (25 requests in any minute, 60 authenticated, 429 with
//! `X-Discogs-Ratelimit*` headers), AcoustID (3 in any second, 429 with a
//! JSON error) and a fictional lyrics API that admits 8 requests in any
//! second, says so nowhere, and answers a bare 429 beyond. Each server
//! enforces its limit itself.
//!
//! Against it run four connectors, each a tower stack of tollgate's retry
//! policy, tollgate's rate-limit layer over one shared [`Registry`], a
//! timeout, and a hyper client (see [`connectors`]), plus a fifth source,
//! local tag reads, that has no limit and passes straight through. The
//! three documented limits are configured; the lyrics source has none and
//! learns one (`Learn::adaptive`): its controller starts at the first 429,
//! cuts on each refusal and grows between them. Several workers per source
//! pull items from a queue as fast as they can, so the limiter alone paces
//! them.
//!
//! The report shows, per configured source, what was sent, what the server
//! admitted and refused, the rate achieved against the policy, and how long
//! requests waited in the limiter; then, on lines of their own starting
//! `learning:`, the lyrics source's refusals (overall and after its first
//! 10 s) and the rate it learned against the true limit; then
//! `violations: N`, which counts the configured sources only. With the
//! limiter on, N is 0. `--no-limits` runs the same job with every source
//! unlimited, the lyrics one not learning, and no retries, and shows the
//! violations that causes. `--plot FILE.svg` draws the timeline, with the
//! learned rate against the true limit (see [`svg`]).
//!
//! ```text
//! cargo run --example demo                       # 15 s, limits on
//! cargo run --example demo -- --seconds 3 --no-limits
//! cargo run --example demo -- --plot examples/demo.svg
//! ```

mod connectors;
mod report;
mod svg;
mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tollgate::learn::{Learn, Origin};
use tollgate::{presets, Policy, Registry, Source, UnknownHost};

use connectors::{
    http_stack, AcoustId, CallError, ClientStats, Discogs, LocalTags, Lyrics, MusicBrainz, Phase,
    Probe,
};
use upstream::{Api, ApiStats, Outcome, Upstream, LYRICS_LIMIT};

/// What `--help` prints.
const HELP: &str = "\
tollgate demo: three APIs with documented limits and one that only refuses
(bare 429s above an unannounced 8/s), played by local servers and called
through tollgate's tower layer by several workers each; the first three are
configured, the fourth is learned. A report at the end.

usage: cargo run --example demo -- [options]

options:
  --seconds N             run for N seconds (default 15; decimals allowed)
  --workers N             concurrent workers per API (default 4)
  --no-limits             every source unlimited, none learning, and no retry
                          layer: shows the violations an unpaced client causes
                          (the rate-limit layer still honours the servers'
                          503/429 deferrals)
  --discogs-token[=TOKEN] call Discogs authenticated (60/min instead of 25/min)
  --plot FILE.svg         write an SVG timeline of the run, with the learned
                          rate against the lyrics API's true limit
  -h, --help              this text

The lines starting `learning:` give the lyrics source's refusals (overall and
after its first 10 s) and the rate it learned. The last line printed is
`violations: N`, the 429/503 answers the servers of the configured sources
gave (the learning source's refusals are not counted there).";

/// The command line.
#[derive(Clone, Debug)]
struct Args {
    /// How long workers start new calls.
    seconds: f64,
    /// Workers per API.
    workers: usize,
    /// Every source unlimited and no retry layer.
    no_limits: bool,
    /// Call Discogs authenticated with this token.
    discogs_token: Option<String>,
    /// Where to write the SVG timeline.
    plot: Option<PathBuf>,
}

/// Parses `std::env::args`; `Ok(None)` when help was asked for.
fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        seconds: 15.0,
        workers: 4,
        no_limits: false,
        discogs_token: None,
        plot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => {
                let v = value("--seconds")?;
                args.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| format!("--seconds: `{v}` is not a number from 0 to 3600"))?;
            }
            "--workers" => {
                let v = value("--workers")?;
                args.workers = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("--workers: `{v}` is not a number from 1 to 64"))?;
            }
            "--no-limits" => args.no_limits = true,
            "--discogs-token" => {
                let token = inline.clone().unwrap_or_else(|| "demo-token".to_string());
                if token.is_empty() {
                    return Err("--discogs-token=: the token is empty".to_string());
                }
                args.discogs_token = Some(token);
            }
            "--plot" => args.plot = Some(PathBuf::from(value("--plot")?)),
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(Some(args))
}

/// The limits the demo gives each API, from tollgate's presets.
fn api_policies(api: Api, discogs_authenticated: bool) -> Result<Vec<Policy>, tollgate::Error> {
    Ok(match api {
        Api::MusicBrainz => presets::musicbrainz().limits().to_vec(),
        Api::Discogs if discogs_authenticated => presets::discogs_authenticated().limits().to_vec(),
        Api::Discogs => presets::discogs_unauthenticated().limits().to_vec(),
        // The preset is "3/s burst 3", which can admit 5 requests in one
        // second (3 at once, then one every 1/3 s). AcoustID says "do not make
        // more than 3 requests per second", and this upstream enforces that
        // as "at most 3 in any second", so the demo uses a window policy,
        // which never sends more than 3 in any 1 s window.
        Api::AcoustId => vec![Policy::window(3, Duration::from_secs(1))?],
        // Documented nowhere: nothing to configure; the source learns it.
        Api::Lyrics => Vec::new(),
    })
}

/// The lyrics API's true limit, which only the upstream and the report
/// know.
fn lyrics_limit() -> Result<Policy, tollgate::Error> {
    Policy::window(LYRICS_LIMIT, Duration::from_secs(1))
}

/// One shared registry: a source per API routed by `127.0.0.1:PORT`, and
/// `local-files` with no limits. The lyrics source has no limit either and
/// learns one from the server's refusals (unless `no_limits`). Unknown
/// hosts are refused, so a routing mistake shows up as an error rather than
/// as an unpaced request.
fn build_registry(
    upstream: &Upstream,
    policies: &[Vec<Policy>],
    no_limits: bool,
) -> Result<Registry, tollgate::Error> {
    let mut builder = Registry::builder().unknown_hosts(UnknownHost::Reject);
    for api in Api::ALL {
        let mut source = Source::new(api.name()).host(upstream.addr(api).to_string());
        if no_limits {
            source = source.limit(Policy::unlimited());
        } else if api == Api::Lyrics {
            source = source.learn_with(Learn::default().adaptive(true));
        } else {
            for p in &policies[api.index()] {
                source = source.limit(*p);
            }
        }
        builder = builder.source(source);
    }
    builder
        .source(Source::new("local-files").limit(Policy::unlimited()))
        .build()
}

/// A worker's connector, whichever API it calls.
#[derive(Clone, Debug)]
enum Connector {
    /// Recording lookups.
    MusicBrainz(MusicBrainz),
    /// Release lookups.
    Discogs(Discogs),
    /// Fingerprint lookups.
    AcoustId(AcoustId),
    /// Lyrics by track.
    Lyrics(Lyrics),
}

impl Connector {
    /// A copy with its own probe, for one worker.
    fn for_worker(&self) -> Connector {
        match self {
            Connector::MusicBrainz(c) => Connector::MusicBrainz(c.for_worker()),
            Connector::Discogs(c) => Connector::Discogs(c.for_worker()),
            Connector::AcoustId(c) => Connector::AcoustId(c.for_worker()),
            Connector::Lyrics(c) => Connector::Lyrics(c.for_worker()),
        }
    }

    /// Where this copy's current call is.
    fn probe(&self) -> &Probe {
        match self {
            Connector::MusicBrainz(c) => c.probe(),
            Connector::Discogs(c) => c.probe(),
            Connector::AcoustId(c) => c.probe(),
            Connector::Lyrics(c) => c.probe(),
        }
    }

    /// The call for queue item `i`.
    async fn call(&self, i: usize) -> Result<serde_json::Value, CallError> {
        let i = i as u64;
        match self {
            Connector::MusicBrainz(c) => {
                let mbid = format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    (0x5b11_f4ce_u64 ^ i) & 0xffff_ffff,
                    i % 0xffff,
                    i % 0xfff,
                    (i * 7) % 0xfff,
                    i.wrapping_mul(2_654_435_761) & 0xffff_ffff_ffff
                );
                c.lookup_recording(&mbid).await
            }
            Connector::Discogs(c) => c.release(249_504 + i).await,
            Connector::AcoustId(c) => {
                let fingerprint = format!("AQADtMmybfGO8NCNEESLnzHyXNOHeHnG{i:06}");
                c.lookup_fingerprint(&fingerprint, 180 + (i % 120) as u32)
                    .await
            }
            Connector::Lyrics(c) => c.lyrics(i).await,
        }
    }
}

/// Runs `call` to the end, unless the deadline passes while it has not yet
/// reached the HTTP client (still waiting in the limiter, or in a retry's
/// backoff): then it is dropped, which gives its reserved slot back.
/// Requests already on the wire are waited for.
async fn until_deadline<F: Future>(
    call: F,
    deadline: tokio::time::Instant,
    probe: &Probe,
) -> Option<F::Output> {
    let mut call = pin!(call);
    tokio::select! {
        biased;
        r = &mut call => return Some(r),
        _ = tokio::time::sleep_until(deadline) => {}
    }
    loop {
        if probe.phase() != Phase::AtClient {
            return None;
        }
        tokio::select! {
            biased;
            r = &mut call => return Some(r),
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
}

/// One worker: pulls items from its source's queue, reads their local
/// tags (unlimited), and calls the API, until the deadline.
async fn worker(
    connector: Connector,
    tags: LocalTags,
    queue: Arc<AtomicUsize>,
    deadline: tokio::time::Instant,
) -> Result<(), tollgate::Error> {
    while tokio::time::Instant::now() < deadline {
        let i = queue.fetch_add(1, Ordering::Relaxed);
        let (_artist, _title) = tags
            .read_tags(&format!("/music/library/{i:05}.flac"))
            .await?;
        let probe = connector.probe().clone();
        match until_deadline(connector.call(i), deadline, &probe).await {
            // Successes and refusals are counted by the server; a call
            // that got no answer at all is counted here.
            Some(Err(CallError::Transport(e))) => probe.stats().record_failure(&e),
            Some(_) => {}
            None => {
                probe.stats().record_cancel();
                break;
            }
        }
    }
    Ok(())
}

/// The rate the lyrics source's adaptive controller is at, if it has
/// started (it starts at the first refusal).
fn learned_rate(registry: &Registry) -> Option<f64> {
    registry
        .snapshot()
        .into_iter()
        .find(|s| s.name == Api::Lyrics.name())?
        .buckets
        .iter()
        .flat_map(|b| &b.learned)
        .find(|l| l.origin == Origin::Adaptive)
        .map(|l| l.policy.tokens_per_second())
}

/// The learned rate over the run, sampled from the registry's snapshot:
/// seconds since the start, and the rate (`None` while the controller is
/// off).
#[derive(Clone, Default)]
struct RateLog(Arc<Mutex<Vec<Sample>>>);

/// Seconds since the start, and the learned rate then.
type Sample = (f64, Option<f64>);

impl RateLog {
    /// How often the snapshot is read: fine enough to show each cut.
    const EVERY: Duration = Duration::from_millis(250);

    fn sample(&self, registry: &Registry, start: Instant) {
        let point = (start.elapsed().as_secs_f64(), learned_rate(registry));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(point);
    }

    /// The latest sample's rate.
    fn last(&self) -> Option<f64> {
        let samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        samples.last().and_then(|(_, rate)| *rate)
    }

    fn samples(&self) -> Vec<Sample> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The live view: a bar per API, filled by the requests its server
/// admitted against what the limit allows in the run (for the lyrics API,
/// its true limit), and a spinner for the tag reads. Hidden when stdout is
/// not a terminal.
#[derive(Clone)]
struct Progress {
    /// One bar per API, in [`Api::ALL`] order.
    bars: Vec<ProgressBar>,
    /// The spinner of the tag reads.
    tag_bar: ProgressBar,
    /// What each server counted.
    servers: Vec<Arc<ApiStats>>,
    /// What each connector measured.
    clients: Vec<Arc<ClientStats>>,
    /// The tag reader, for its count.
    tags: LocalTags,
    /// The lyrics source's learned rate.
    learned: RateLog,
}

impl Progress {
    /// The bars, drawn on stdout if it is a terminal, hidden otherwise.
    fn new(
        upstream: &Upstream,
        clients: &[Arc<ClientStats>],
        tags: &LocalTags,
        policies: &[Vec<Policy>],
        lyrics_limit: Policy,
        learned: &RateLog,
        seconds: f64,
    ) -> Self {
        let multi = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30.green/white}] {pos:>4}/{len:<4} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bars = Api::ALL
            .iter()
            .map(|api| {
                let budget = match api {
                    Api::Lyrics => report::allowed_by(&[lyrics_limit], seconds),
                    _ => report::allowed_by(&policies[api.index()], seconds),
                };
                let bar = multi.add(ProgressBar::new(budget as u64));
                bar.set_style(style.clone());
                bar.set_prefix(api.name());
                bar
            })
            .collect();
        let tag_bar = multi.add(ProgressBar::new_spinner());
        tag_bar.set_prefix("local-files");
        tag_bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Progress {
            bars,
            tag_bar,
            servers: Api::ALL.iter().map(|a| upstream.stats_handle(*a)).collect(),
            clients: clients.to_vec(),
            tags: tags.clone(),
            learned: learned.clone(),
        }
    }

    /// Redraws from the counters.
    fn update(&self) {
        for (((api, bar), server), client) in Api::ALL
            .iter()
            .zip(&self.bars)
            .zip(&self.servers)
            .zip(&self.clients)
        {
            bar.set_position(server.ok());
            // The lyrics API's refusals are what learning costs, not
            // violations of a configured limit.
            let (what, learned) = match api {
                Api::Lyrics => (
                    "refused   ",
                    self.learned
                        .last()
                        .map_or(String::new(), |r| format!("  learned {r:.1}/s")),
                ),
                _ => ("violations", String::new()),
            };
            bar.set_message(format!(
                "sent {:>5}  {what} {:>5}  wait {:>9}{learned}",
                client.sent(),
                server.violations(),
                report::human(client.mean_wait())
            ));
        }
        self.tag_bar
            .set_message(format!("{} tag reads, unlimited", self.tags.reads()));
        self.tag_bar.tick();
    }

    /// A last redraw, then the bars stay as they are.
    fn finish(&self) {
        self.update();
        for bar in &self.bars {
            bar.finish();
        }
        self.tag_bar.finish();
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
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the upstream, runs the job, prints the report, writes the plot.
async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let upstream = Upstream::start().await?;
    let policies = Api::ALL
        .iter()
        .map(|api| api_policies(*api, args.discogs_token.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
    let registry = build_registry(&upstream, &policies, args.no_limits)?;
    let limits_on = !args.no_limits;
    let lyrics_limit = lyrics_limit()?;

    println!(
        "tollgate demo: {} s, {} workers per API, limits {}{}",
        args.seconds,
        args.workers,
        if limits_on { "on" } else { "OFF (--no-limits)" },
        if args.discogs_token.is_some() {
            ", Discogs authenticated"
        } else {
            ""
        }
    );
    for api in Api::ALL {
        let text = match api {
            Api::Lyrics => report::learning_text(lyrics_limit, limits_on),
            _ => report::allowed_text(&policies[api.index()], limits_on),
        };
        println!("  {:<12} http://{}  {text}", api.name(), upstream.addr(api));
    }

    // One stack per connector, all over the same registry.
    let stats: Vec<Arc<ClientStats>> = Api::ALL.iter().map(|_| Arc::default()).collect();
    let base = |api: Api| format!("http://{}", upstream.addr(api));
    let stack = || http_stack(&registry, limits_on);
    let connectors = [
        Connector::MusicBrainz(MusicBrainz::new(
            stack(),
            base(Api::MusicBrainz),
            stats[0].clone(),
        )),
        Connector::Discogs(Discogs::new(
            stack(),
            base(Api::Discogs),
            stats[1].clone(),
            args.discogs_token.clone(),
        )),
        Connector::AcoustId(AcoustId::new(
            stack(),
            base(Api::AcoustId),
            stats[2].clone(),
        )),
        Connector::Lyrics(Lyrics::new(stack(), base(Api::Lyrics), stats[3].clone())),
    ];
    let tags = LocalTags::new(registry.clone());

    let learned = RateLog::default();
    let progress = Progress::new(
        &upstream,
        &stats,
        &tags,
        &policies,
        lyrics_limit,
        &learned,
        args.seconds,
    );

    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (api, connector) in Api::ALL.iter().zip(&connectors) {
        let queue = Arc::new(AtomicUsize::new(api.index() * 100_000));
        for _ in 0..args.workers {
            tasks.spawn(worker(
                connector.for_worker(),
                tags.clone(),
                queue.clone(),
                deadline,
            ));
        }
    }
    let ticker = {
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                progress.update();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let sampler = {
        let (learned, registry) = (learned.clone(), registry.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RateLog::EVERY);
            loop {
                every.tick().await;
                learned.sample(&registry, start);
            }
        })
    };
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = start.elapsed();
    sampler.abort();
    learned.sample(&registry, start);
    ticker.abort();
    progress.finish();

    // The report: the server's counts, the client's stamps. The learning
    // source is not in the table: its refusals are the price of finding a
    // limit nobody configured, not violations of one, so they get their
    // own lines and stay out of `violations: N`.
    let mut rows = Vec::new();
    let mut violations = 0;
    for api in Api::CONFIGURED {
        let server = upstream.stats(api);
        let client = &stats[api.index()];
        violations += server.violations();
        rows.push(report::Row {
            name: api.name().to_string(),
            policies: policies[api.index()].clone(),
            sent: client.sent(),
            ok: server.ok(),
            violations: server.violations(),
            retries: client.retries(),
            mean_wait: client.mean_wait(),
            max_wait: client.max_wait(),
        });
    }
    rows.push(report::Row {
        name: "local-files".to_string(),
        policies: Vec::new(),
        sent: tags.reads(),
        ok: tags.reads(),
        violations: 0,
        retries: 0,
        mean_wait: tags.mean_wait(),
        max_wait: tags.max_wait(),
    });
    println!();
    print!("{}", report::table(&rows, elapsed, limits_on));
    println!();
    println!("{}", report::legend(limits_on));
    println!();
    println!(
        "elapsed {:.2} s (the run, then the requests on the wire at the deadline)",
        elapsed.as_secs_f64()
    );
    for api in Api::ALL {
        let server = upstream.stats(api);
        let client = &stats[api.index()];
        if client.cancelled() > 0 {
            if limits_on {
                println!(
                    "{}: {} calls were still waiting in the limiter at the deadline and were dropped (their slots given back)",
                    api.name(),
                    client.cancelled()
                );
            } else {
                println!(
                    "{}: {} calls were still held back after the server's refusals (its Retry-After, or 1 s after a bare 429) at the deadline and were dropped",
                    api.name(),
                    client.cancelled()
                );
            }
        }
        if client.failed() > 0 {
            println!(
                "{}: {} calls got no answer (last: {})",
                api.name(),
                client.failed(),
                client.last_failure().unwrap_or_default()
            );
        }
        if server.other() > 0 {
            println!(
                "{}: {} requests refused for another reason",
                api.name(),
                server.other()
            );
        }
    }
    for snap in registry.snapshot() {
        // The learning source's limits in force include what it learned,
        // which its own lines report.
        if snap.name == Api::Lyrics.name() {
            continue;
        }
        // A source configured with no limits reports `[]` here but
        // `[unlimited]` for its buckets: the same thing.
        let configured = if snap.limits.is_empty() {
            vec![Policy::unlimited()]
        } else {
            snap.limits.clone()
        };
        let in_force = snap.buckets.first().map(|b| &b.limits);
        if let Some(limits) = in_force.filter(|l| **l != configured) {
            let text: Vec<String> = limits.iter().map(ToString::to_string).collect();
            println!(
                "{}: the server's rate-limit headers lowered the limit in force to {}",
                snap.name,
                text.join(" + ")
            );
        }
    }

    let lyrics_events: Vec<(f64, Outcome)> = upstream
        .stats(Api::Lyrics)
        .events()
        .into_iter()
        .map(|(t, o)| (t.saturating_duration_since(start).as_secs_f64(), o))
        .collect();
    let lyrics = upstream.stats(Api::Lyrics);
    let settled = report::settled_from(&lyrics_events, report::SETTLING);
    print!(
        "{}",
        report::learning(&report::Learning {
            name: Api::Lyrics.name().to_string(),
            learning: limits_on,
            true_limit: lyrics_limit,
            requests: lyrics.ok() + lyrics.violations() + lyrics.other(),
            ok: lyrics.ok(),
            refused: lyrics.violations(),
            after: settled.and_then(|from| report::after(
                &lyrics_events,
                from,
                elapsed.as_secs_f64()
            )),
            learned: learned_rate(&registry),
            learned_mean: settled.and_then(|from| report::mean_after(&learned.samples(), from)),
            elapsed,
            mean_wait: stats[Api::Lyrics.index()].mean_wait(),
        })
    );

    if let Some(path) = &args.plot {
        let lanes: Vec<svg::Lane> = Api::ALL
            .iter()
            .map(|api| svg::Lane {
                name: api.name().to_string(),
                policies: policies[api.index()].clone(),
                events: upstream
                    .stats(*api)
                    .events()
                    .into_iter()
                    .map(|(t, o)| (t.saturating_duration_since(start).as_secs_f64(), o))
                    .collect(),
                learned: (*api == Api::Lyrics).then(|| svg::Learned {
                    learning: limits_on,
                    true_limit: lyrics_limit,
                    samples: learned.samples(),
                }),
            })
            .collect();
        let title = format!(
            "tollgate demo: {:.0} s, {} workers per API, limits {}",
            args.seconds,
            args.workers,
            if limits_on { "on" } else { "off" }
        );
        std::fs::write(path, svg::render(&title, &lanes, elapsed.as_secs_f64()))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("plot written to {}", path.display());
    }

    println!("violations: {violations}");
    Ok(())
}
