//! The Redis store, side by side with `redis-benchmark` on the same server
//! in one run: acquires per second and p50/p99 latency of
//! `RedisBucket::try_acquire` with 1, 8 and 64 concurrent tasks (one
//! process, one multiplexed connection, as an application has), against
//! `redis-benchmark` sending the very `EVALSHA` the store sends (read off
//! `MONITOR`) with as many connections; and the same take through a
//! registry source kept in Redis (`Registry::admit`, as the adapters call
//! it). Takes that arrive while a call for their bucket is on the way go
//! together in the next call: the table says how many takes each script
//! call carried, and the server's time per take (both from `INFO
//! commandstats` before and after each measurement).
//!
//! ```text
//! cargo bench -p tollgate-bench --bench redis                  # starts its own redis-server
//! REDIS_URL=redis://127.0.0.1:6379/ cargo bench -p tollgate-bench --bench redis
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7000/,redis://127.0.0.1:7001/ \
//!     cargo bench -p tollgate-bench --bench redis              # on a cluster
//! ```
//!
//! On a cluster the store goes through redis-rs's cluster client, and
//! `redis-benchmark` sends the same `EVALSHA` straight to the master of the
//! bucket's slot.
//!
//! `BENCH_SECONDS` (default 3) sets each measurement's length,
//! `BENCH_WORKERS` (default 2) tokio's worker threads, and
//! `BENCH_CONCURRENCY` (default `1,8,64`) the rows. Prints a
//! Markdown table for BENCHMARKS.md.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::redis::{RedisBucket, RedisStore};
use tollgate::{Admission, Policy, Registry, Source, Target};

/// The rows: `BENCH_CONCURRENCY`, or 1, 8 and 64 tasks.
fn concurrency() -> Vec<usize> {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64])
}

/// Killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server to measure on: `REDIS_URL`, or one of our own.
fn server() -> Option<(String, u16, Option<Server>)> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(6379);
        return Some((url, port, None));
    }
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some((
        format!("redis://127.0.0.1:{port}/"),
        port,
        Some(Server(child)),
    ))
}

/// On `REDIS_CLUSTER_URLS`, when set: its URLs and a store through them.
fn cluster() -> Option<Vec<String>> {
    let urls = std::env::var("REDIS_CLUSTER_URLS").ok()?;
    Some(
        urls.split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect(),
    )
}

fn port_of(url: &str) -> u16 {
    url.trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6379)
}

/// The port of the master that holds `key`, as `CLUSTER NODES` of the node
/// on `port` says.
fn master_port(port: u16, key: &str) -> u16 {
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let slot: u16 = cli(&["cluster", "keyslot", key]).trim().parse().unwrap();
    for line in cli(&["cluster", "nodes"]).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let holds = fields.iter().skip(8).any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        });
        if holds {
            let address = fields[1].split('@').next().unwrap();
            return address.rsplit(':').next().unwrap().parse().unwrap();
        }
    }
    panic!("no master holds slot {slot}");
}

/// The arguments of the `EVALSHA` the store sends for one `try_acquire`,
/// as `MONITOR` shows them.
fn captured_evalsha(rt: &tokio::runtime::Runtime, port: u16, bucket: &RedisBucket) -> Vec<String> {
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "monitor"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "OK");
    rt.block_on(bucket.try_acquire(1.0)).unwrap();
    let line = lines
        .map(|l| l.unwrap())
        .find(|l| l.contains("\"EVALSHA\""))
        .unwrap();
    let _ = monitor.kill();
    let _ = monitor.wait();
    // `1700000000.123456 [0 127.0.0.1:5000] "EVALSHA" "sha" "1" "key" ...`
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The script calls the server on `port` has run, and the microseconds
/// it spent in them (`INFO commandstats`).
fn script_calls(port: u16) -> (u64, u64) {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
    else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|f| f.strip_prefix(name)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
}

/// Takes per script call, and the server's microseconds per take, while
/// `row` was measured, from its counts before and after.
fn per_call(row: &Row, length: Duration, before: (u64, u64), after: (u64, u64)) -> (f64, f64) {
    let takes = row.per_second * length.as_secs_f64();
    let calls = after.0.saturating_sub(before.0).max(1) as f64;
    let usec = after.1.saturating_sub(before.1) as f64;
    (takes / calls, usec / takes.max(1.0))
}

struct Row {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Calls `call` in a loop from each of `tasks` tasks for `length`.
fn measure<F, Fut>(rt: &tokio::runtime::Runtime, tasks: usize, length: Duration, call: F) -> Row
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rt.block_on(async {
        let start = Instant::now();
        let end = start + length;
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(1 << 16);
                    while Instant::now() < end {
                        let t = Instant::now();
                        call().await;
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        let elapsed = start.elapsed();
        all.sort();
        Row {
            per_second: all.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&all, 0.50),
            p99: percentile(&all, 0.99),
        }
    })
}

fn ours(rt: &tokio::runtime::Runtime, bucket: &RedisBucket, tasks: usize, length: Duration) -> Row {
    let bucket = Arc::new(bucket.clone());
    measure(rt, tasks, length, move || {
        let bucket = bucket.clone();
        async move {
            let admitted = bucket.try_acquire(1.0).await.unwrap();
            assert!(admitted.by_redis());
        }
    })
}

/// The same take through a registry source kept in Redis (`Registry::admit`,
/// as every adapter calls it).
fn through_registry(
    rt: &tokio::runtime::Runtime,
    registry: &Registry,
    tasks: usize,
    length: Duration,
) -> Row {
    let registry = registry.clone();
    measure(rt, tasks, length, move || {
        let registry = registry.clone();
        async move {
            let target = Target::new("bench.test", None, "/");
            let permit = match registry.admit(&target, 1.0).unwrap() {
                Admission::Ready(p) => p,
                Admission::Wait(w) => w.await.unwrap(),
            };
            assert_eq!(permit.source(), Some("bench"));
        }
    })
}

fn theirs(port: u16, args: &[String], clients: usize, requests: usize) -> Row {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
            "--csv",
        ])
        .args(args)
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<f64> = text
        .lines()
        .last()
        .unwrap()
        .split("\",\"")
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap())
        .collect();
    // rps, avg, min, p50, p95, p99, max (milliseconds)
    Row {
        per_second: row[0],
        p50: Duration::from_secs_f64(row[3] / 1e3),
        p99: Duration::from_secs_f64(row[5] / 1e3),
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // not a test binary: nothing to list or run under `cargo test`
    }
    let nodes = cluster();
    let (url, port, _server) = match &nodes {
        Some(nodes) => (nodes[0].clone(), port_of(&nodes[0]), None),
        None => {
            let Some(server) = server() else {
                eprintln!("skipping: set REDIS_URL or install redis-server");
                return;
            };
            server
        }
    };
    let length = Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let store = match &nodes {
        Some(nodes) => rt.block_on(
            RedisStore::cluster_builder(nodes.iter().cloned())
                .prefix("tollgate-bench:")
                .connect(),
        ),
        None => rt.block_on(RedisStore::connect(&url, "tollgate-bench:")),
    }
    .expect("Redis answers");
    // A limit the run never reaches: every call is a full take.
    let bucket = store
        .bucket("bench", &[Policy::new(1e6, 1e7).unwrap()])
        .unwrap();
    let registry = Registry::builder()
        .source(
            Source::new("bench")
                .limit(Policy::new(1e6, 1e7).unwrap())
                .host("bench.test"),
        )
        .redis(store.clone())
        .build()
        .unwrap();
    // On a cluster, MONITOR and redis-benchmark go to the bucket's master.
    let port = match &nodes {
        Some(_) => master_port(port, &bucket.keys()[0]),
        None => port,
    };
    let args = captured_evalsha(&rt, port, &bucket);
    assert_eq!(args[0], "EVALSHA");
    assert_eq!(args[1], store.script_sha());

    println!(
        "| concurrency | tollgate `try_acquire`/s | p50 | p99 | takes per call | server µs per take | redis-benchmark `EVALSHA`/s | p50 | p99 | tollgate / redis-benchmark | `Registry::admit`/s | p50 | p99 | takes per call | admit / redis-benchmark |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in concurrency() {
        let before = script_calls(port);
        let a = ours(&rt, &bucket, c, length);
        let a_calls = per_call(&a, length, before, script_calls(port));
        let requests = (a.per_second * length.as_secs_f64()) as usize;
        let b = theirs(port, &args, c, requests.max(1_000));
        let before = script_calls(port);
        let r = through_registry(&rt, &registry, c, length);
        let r_calls = per_call(&r, length, before, script_calls(port));
        println!(
            "| {c} | {:.0} | {} | {} | {:.1} | {:.2} | {:.0} | {} | {} | {:.2} | {:.0} | {} | {} | {:.1} | {:.2} |",
            a.per_second,
            us(a.p50),
            us(a.p99),
            a_calls.0,
            a_calls.1,
            b.per_second,
            us(b.p50),
            us(b.p99),
            a.per_second / b.per_second,
            r.per_second,
            us(r.p50),
            us(r.p99),
            r_calls.0,
            r.per_second / b.per_second,
        );
    }
}
