//! What the Redis tests share: the server or cluster to use, a key prefix
//! of their own, and a private `redis-server` (or three-master cluster) a
//! test can stop and start.
//!
//! The server is `REDIS_URL` when it is set. Otherwise, when `redis-server`
//! is on the PATH, the first test that asks starts one for the whole test
//! binary on a free port of 127.0.0.1 (no persistence), and a small shell
//! watchdog stops it once the test process has ended. Without either, a
//! Redis test prints that it skips, naming the package to install, and
//! passes; under CI (`CI` set), where `.ci/run` starts a server, a missing
//! `REDIS_URL` is a failure.
//!
//! The cluster is `REDIS_CLUSTER_URLS` (the nodes' URLs, separated by
//! commas) in the same way: unset, the first test that asks starts three
//! masters and joins them with `redis-cli --cluster create`, which needs
//! `redis-cli` too (Debian's `redis-tools`, a dependency of `redis-server`).
//! That part is `redis_cluster.rs`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "redis_cluster.rs"]
mod cluster;
// Not every test binary uses the cluster.
#[allow(unused_imports)]
pub use cluster::{connect_cluster, redis_cli, redis_cluster_urls, PrivateCluster};

/// The server to test against, or `None` (after saying so) to skip.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: REDIS_URL is not set under CI; .ci/run starts redis-server and exports it"
        ),
        _ => match shared_server() {
            Some(url) => Some(url.clone()),
            None => {
                eprintln!(
                    "skipping {test}: REDIS_URL is not set and redis-server is not on the PATH; \
                     install it (apt-get install redis-server) or set REDIS_URL \
                     (see README, \"Testing with Redis\")"
                );
                None
            }
        },
    }
}

/// The test binary's own `redis-server`, started on first use; `None` when
/// the binary is not installed.
fn shared_server() -> Option<&'static String> {
    static SERVER: OnceLock<Option<String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let installed = Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            installed.then(start_shared_server)
        })
        .as_ref()
}

/// Starts `redis-server` under a shell that waits for this process to end
/// and then stops it: a child process outlives its parent, and a test
/// binary has no hook that runs at exit. Tries a few ports, in case one
/// was taken between choosing and binding it.
fn start_shared_server() -> String {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let watchdog = format!(
            "redis-server --bind 127.0.0.1 --port {port} --save '' --appendonly no & \
             pid=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; \
             kill $pid 2>/dev/null; wait $pid",
            parent = std::process::id()
        );
        let spawned = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            panic!("cannot start redis-server through sh: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if answers(port) {
                return format!("redis://127.0.0.1:{port}/");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        last = format!("redis-server on port {port} did not answer within 5 s");
    }
    panic!("{last}; set REDIS_URL to a running server instead");
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING` now.
fn answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A store for tests that check behaviour, not timeouts: a call may take
/// up to 2 s on a busy machine before it counts as a store failure.
pub async fn connect(url: &str, prefix: &str) -> tollgate::redis::RedisStore {
    tollgate::redis::RedisStore::builder(url)
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("the Redis server to test against answers")
}

/// A key prefix no other test or run shares.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tollgate-test:{test}:{}:{nanos}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own on 127.0.0.1, without persistence;
/// killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on `port` and waits until it answers (at most 5 s).
    pub fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let server = PrivateRedis {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Whether it answers `PING` now.
    pub fn answers(&self) -> bool {
        answers(self.port)
    }

    /// Kills it and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A raw connection to a test's server, for what the store does not say.
pub type Raw = ::redis::aio::MultiplexedConnection;

/// A server of the test's own (so that its command counters are the
/// test's), a store on it with the prefix `t:`, and a raw connection to
/// read them; `None` where the Redis tests skip.
pub async fn private_with_counts(
    test: &str,
) -> Option<(PrivateRedis, tollgate::redis::RedisStore, Raw)> {
    redis_url(test)?;
    let server = PrivateRedis::start(free_port());
    let store = connect(&server.url(), "t:").await;
    let raw = ::redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Some((server, store, raw))
}

/// The script calls the server has run (`EVALSHA`, and `EVAL` should the
/// store ever send the script's text).
pub async fn script_calls(raw: &mut Raw) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    ["evalsha", "eval"]
        .iter()
        .map(|command| {
            let prefix = format!("cmdstat_{command}:calls=");
            info.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse::<u64>().unwrap())
        })
        .sum()
}
