//! # `cargo run --example fleet --features redis -- --redis URL`: one quota, four processes
//!
//! Starts a loopback upstream (axum on 127.0.0.1) that allows 10 requests
//! in any second, counted across all its clients, and answers 429 beyond
//! (a violation). Then starts four client processes (this program again,
//! with `--client`), each with two workers sending through tollgate's tower
//! layer (over a hyper-util client) as fast as its registry lets them. Each
//! registry keeps its source in Redis (`RegistryBuilder::redis`), so
//! together the processes keep the upstream's limit: the report ends with
//! `violations: 0`.
//!
//! With `--local` each registry keeps its source in process, with the same policy,
//! as four instances of a service would without a shared store: together
//! they send four times the limit, and the upstream refuses the excess.
//!
//! ```text
//! cargo run --example fleet --features redis -- --redis redis://127.0.0.1:6379/
//! cargo run --example fleet --features redis -- --redis redis://127.0.0.1:6379/ --local
//! cargo run --example fleet --features redis -- --redis redis://127.0.0.1:6379/ --seconds 10
//! cargo run --example fleet --features redis -- --processes 16 \
//!     --cluster redis://127.0.0.1:7000/,redis://127.0.0.1:7001/,redis://127.0.0.1:7002/
//! ```
//!
//! With `--cluster` the processes share a Redis Cluster instead of one
//! server: the source's set lives in one slot, on one master, and every
//! process's script call goes there.
//!
//! The upstream's window is 50 ms shorter than a second (as in the demo's
//! upstream): that slack absorbs the jitter between a client's slot and the
//! upstream's read of the request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate::redis::RedisStore;
use tollgate::tower::RateLimitLayer;
use tollgate::{Policy, Registry, Source, UnknownHost};
use tower::{ServiceBuilder, ServiceExt};

const HELP: &str = "\
tollgate fleet: four processes share one upstream limit through Redis.

usage: cargo run --example fleet --features redis -- --redis URL [options]

options:
  --redis URL      the Redis server the processes share (redis://HOST:PORT/)
  --cluster URLS   a Redis Cluster instead: some of its nodes' URLs, comma-separated
  --local          each process on its own bucket instead (shows violations)
  --seconds N      how long the clients send (default 5)
  --processes N    client processes (default 4)
  -h, --help       this text

The last line printed is `violations: N`, the 429 answers the upstream gave.";

/// The upstream's limit, and the policy every client is given.
const LIMIT: usize = 10;
const WINDOW: Duration = Duration::from_secs(1);
const TOLERANCE: Duration = Duration::from_millis(50);
const WORKERS: usize = 2;

fn policy() -> Policy {
    Policy::window(LIMIT as u32, WINDOW).expect("a valid policy")
}

#[derive(Clone, Debug)]
struct Args {
    redis: Option<String>,
    /// Node URLs of a Redis Cluster, comma-separated.
    cluster: Option<String>,
    local: bool,
    seconds: f64,
    processes: usize,
    /// Set in a client process: the upstream's address and the key prefix.
    client: Option<(SocketAddr, String)>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        redis: None,
        cluster: None,
        local: false,
        seconds: 5.0,
        processes: 4,
        client: None,
    };
    let mut it = std::env::args().skip(1);
    let mut upstream = None;
    let mut prefix = None;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--redis" => args.redis = Some(value("--redis")?),
            "--cluster" => args.cluster = Some(value("--cluster")?),
            "--local" => args.local = true,
            "--seconds" => {
                args.seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds needs a number".to_string())?
            }
            "--processes" => {
                args.processes = value("--processes")?
                    .parse()
                    .map_err(|_| "--processes needs a whole number".to_string())?
            }
            "--client" => {
                let addr = value("--client")?;
                upstream = Some(addr.parse().map_err(|_| format!("bad address {addr}"))?);
            }
            "--prefix" => prefix = Some(value("--prefix")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if let (Some(addr), Some(prefix)) = (upstream, prefix) {
        args.client = Some((addr, prefix));
    }
    if args.redis.is_some() && args.cluster.is_some() {
        return Err("give --redis URL or --cluster URLS, not both".into());
    }
    if args.redis.is_none() && args.cluster.is_none() && !args.local {
        return Err("give --redis URL or --cluster URLS (or --local to run without Redis)".into());
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) || args.processes == 0 {
        return Err("--seconds and --processes must be above zero".into());
    }
    Ok(args)
}

/// What the upstream counted: admissions in its window, answers given.
#[derive(Default)]
struct Upstream {
    log: Mutex<VecDeque<Instant>>,
    /// The first and the latest admission: the span the clients sent over
    /// (they start one after another, so it is longer than `--seconds`).
    span: Mutex<Option<(Instant, Instant)>>,
    ok: AtomicU64,
    violations: AtomicU64,
}

impl Upstream {
    /// Admits when fewer than `LIMIT` admissions lie in the last
    /// `WINDOW − TOLERANCE`.
    fn admit(&self) -> StatusCode {
        let now = Instant::now();
        let mut log = self.log.lock().unwrap();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW - TOLERANCE)
        {
            log.pop_front();
        }
        if log.len() >= LIMIT {
            self.violations.fetch_add(1, Ordering::Relaxed);
            return StatusCode::TOO_MANY_REQUESTS;
        }
        log.push_back(now);
        let mut span = self.span.lock().unwrap();
        *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
        self.ok.fetch_add(1, Ordering::Relaxed);
        StatusCode::OK
    }
}

async fn serve(upstream: Arc<Upstream>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(move || {
        let upstream = upstream.clone();
        async move { upstream.admit() }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// One client process: a registry with one source for the upstream (in
/// Redis, or in this process with `--local`), the tower layer over a
/// hyper-util client, and workers that send until the time is up.
async fn client(args: &Args, upstream: SocketAddr, prefix: &str) -> Result<(), String> {
    let source = Source::new("upstream").limit(policy()).host("127.0.0.1");
    let mut registry = Registry::builder()
        .source(source)
        .unknown_hosts(UnknownHost::Reject);
    if !args.local {
        let builder = match (&args.redis, &args.cluster) {
            (Some(url), _) => Some(RedisStore::builder(url.as_str())),
            (None, Some(nodes)) => Some(RedisStore::cluster_builder(nodes.split(','))),
            (None, None) => None,
        };
        if let Some(builder) = builder {
            let store = builder
                .prefix(prefix)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            registry = registry.redis(store);
        }
    }
    let registry = registry.build().map_err(|e| e.to_string())?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(registry))
        .service(http);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let (sent, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let svc = svc.clone();
            let (sent, ok) = (sent.clone(), ok.clone());
            tokio::spawn(async move {
                let uri = format!("http://{upstream}/item");
                while Instant::now() < deadline {
                    let request = http::Request::get(&uri)
                        .body(Empty::<Bytes>::new())
                        .map_err(|e| e.to_string())?;
                    let status = svc
                        .clone()
                        .oneshot(request)
                        .await
                        .map_err(|e| e.to_string())?
                        .status();
                    sent.fetch_add(1, Ordering::Relaxed);
                    if status.is_success() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    let (sent, ok) = (sent.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
    println!("sent {sent} ok {ok} refused {}", sent - ok);
    Ok(())
}

/// The parent: the upstream, the client processes, the report.
async fn fleet(args: &Args) -> Result<u64, String> {
    let upstream = Arc::new(Upstream::default());
    let addr = serve(upstream.clone()).await.map_err(|e| e.to_string())?;
    let prefix = format!("tollgate-fleet:{}:", std::process::id());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mode = if args.local {
        "each process on its own bucket"
    } else if args.cluster.is_some() {
        "one bucket in a Redis Cluster"
    } else {
        "one bucket in Redis"
    };
    println!(
        "upstream on {addr}: at most {LIMIT} requests in any {WINDOW:?}; {} processes \
         × {WORKERS} workers for {} s, {mode}",
        args.processes, args.seconds
    );
    let children: Vec<_> = (0..args.processes)
        .map(|_| {
            let mut cmd = Command::new(&exe);
            cmd.args(["--client", &addr.to_string(), "--prefix", &prefix])
                .args(["--seconds", &args.seconds.to_string()]);
            if let Some(url) = &args.redis {
                cmd.args(["--redis", url]);
            }
            if let Some(nodes) = &args.cluster {
                cmd.args(["--cluster", nodes]);
            }
            if args.local {
                cmd.arg("--local");
            }
            cmd.stdout(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output())
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| e.to_string())?;
    for (i, out) in outputs.into_iter().enumerate() {
        let out = out.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("client {i} failed: {}", text.trim()));
        }
        println!("client {i}: {}", text.trim());
    }
    let ok = upstream.ok.load(Ordering::Relaxed);
    let violations = upstream.violations.load(Ordering::Relaxed);
    let span = upstream
        .span
        .lock()
        .unwrap()
        .map_or(0.0, |(first, last)| (last - first).as_secs_f64());
    println!(
        "upstream admitted {ok} in {span:.1} s from the first to the last (at most {LIMIT} in \
         any {WINDOW:?}), refused {violations}"
    );
    Ok(violations)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let result = match &args.client {
        Some((upstream, prefix)) => client(&args, *upstream, prefix).await.map(|()| None),
        None => fleet(&args).await.map(Some),
    };
    match result {
        Ok(Some(violations)) => {
            println!("violations: {violations}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
