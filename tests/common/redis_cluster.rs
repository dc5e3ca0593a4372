//! The Redis Cluster the tests use: `REDIS_CLUSTER_URLS`, else three
//! masters this test binary starts on first use and joins with
//! `redis-cli --cluster create` (stopped once the test process has ended,
//! as the shared server is), and [`PrivateCluster`], a cluster of a test's
//! own that it may take masters of down and bring back. A part of
//! `redis.rs`, whose module docs say when the tests skip.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::answers;

/// The cluster to test against (the URLs of its nodes), or `None` (after
/// saying so) to skip.
pub fn redis_cluster_urls(test: &str) -> Option<Vec<String>> {
    match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(urls) if !urls.trim().is_empty() => Some(
            urls.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect(),
        ),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: REDIS_CLUSTER_URLS is not set under CI; .ci/run starts a three-master \
             cluster and exports it"
        ),
        _ => match shared_cluster() {
            Some(urls) => Some(urls.clone()),
            None => {
                eprintln!(
                    "skipping {test}: REDIS_CLUSTER_URLS is not set and redis-server or \
                     redis-cli is not on the PATH; install them (apt-get install redis-server) \
                     or set REDIS_CLUSTER_URLS (see CONTRIBUTING.md, \"Testing with Redis\")"
                );
                None
            }
        },
    }
}

/// Whether `redis-server` and `redis-cli` both run, so that a test can
/// start a cluster of its own.
pub fn cluster_tools_installed() -> bool {
    ["redis-server", "redis-cli"].iter().all(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The test binary's own cluster, started on first use; `None` when the
/// binaries are not installed.
fn shared_cluster() -> Option<&'static Vec<String>> {
    static CLUSTER: OnceLock<Option<Vec<String>>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| cluster_tools_installed().then(start_shared_cluster))
        .as_ref()
}

/// Starts three masters under a shell that stops them (and removes their
/// directory) once this process has ended, as for the shared server, then
/// joins them into a cluster.
fn start_shared_cluster() -> Vec<String> {
    let mut last = String::new();
    for _ in 0..3 {
        let nodes = ClusterNodes::new();
        let mut watchdog = String::new();
        for i in 0..3 {
            watchdog.push_str(&format!("{} & p{i}=$!; ", nodes.command_line(i)));
        }
        watchdog.push_str(&format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             kill $p0 $p1 $p2 2>/dev/null; wait; rm -rf '{dir}'",
            parent = std::process::id(),
            dir = nodes.dir.display()
        ));
        let spawned = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            panic!("cannot start redis-server through sh: {e}");
        }
        match nodes.create() {
            Ok(()) => return nodes.urls(),
            Err(e) => last = e,
        }
    }
    panic!("{last}; set REDIS_CLUSTER_URLS to a running cluster instead");
}

/// Three cluster nodes on 127.0.0.1: their ports, their bus ports, and the
/// directory of their `nodes-PORT.conf`.
struct ClusterNodes {
    ports: [u16; 3],
    bus_ports: [u16; 3],
    dir: std::path::PathBuf,
}

impl ClusterNodes {
    fn new() -> ClusterNodes {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-cluster-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Held together, so that the six differ.
        let held: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |i: usize| held[i].local_addr().unwrap().port();
        ClusterNodes {
            ports: [port(0), port(1), port(2)],
            bus_ports: [port(3), port(4), port(5)],
            dir,
        }
    }

    /// The arguments of node `i`: a master of a cluster that keeps serving
    /// the slots it still covers when a master is lost, without
    /// persistence (its `nodes-PORT.conf` keeps its place in the cluster).
    fn args(&self, i: usize) -> Vec<String> {
        let port = self.ports[i];
        [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &self.bus_ports[i].to_string(),
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "2000",
            "--cluster-require-full-coverage",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn command_line(&self, i: usize) -> String {
        let args: Vec<String> = self.args(i).iter().map(|a| format!("'{a}'")).collect();
        format!("redis-server {}", args.join(" "))
    }

    fn spawn(&self, i: usize) -> Child {
        Command::new("redis-server")
            .args(self.args(i))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)")
    }

    /// Waits for the three to answer, joins them with `redis-cli --cluster
    /// create`, and waits until each says `cluster_state:ok`.
    fn create(&self) -> Result<(), String> {
        for &port in &self.ports {
            wait_until(Duration::from_secs(5), || answers(port))
                .map_err(|_| format!("redis-server on port {port} did not answer within 5 s"))?;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in self.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        self.wait_ok(&self.ports, Duration::from_secs(10))
    }

    /// Waits until each of `ports` says `cluster_state:ok`.
    fn wait_ok(&self, ports: &[u16], within: Duration) -> Result<(), String> {
        for &port in ports {
            wait_until(within, || cluster_info(port).contains("cluster_state:ok")).map_err(
                |_| format!("the cluster node on port {port} was not ok within {within:?}"),
            )?;
        }
        Ok(())
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }
}

fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    while !ok() {
        if Instant::now() >= deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `redis-cli -p PORT ARGS...`, its output (empty when it failed).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn cluster_info(port: u16) -> String {
    redis_cli(port, &["cluster", "info"])
}

/// A three-master cluster of the test's own, which it may take a master
/// of down and bring back; its nodes are killed when it is dropped.
pub struct PrivateCluster {
    nodes: ClusterNodes,
    children: [Option<Child>; 3],
}

impl PrivateCluster {
    /// Starts three masters and joins them (a few seconds at most).
    pub fn start() -> PrivateCluster {
        let nodes = ClusterNodes::new();
        let children = [nodes.spawn(0), nodes.spawn(1), nodes.spawn(2)].map(Some);
        let cluster = PrivateCluster { nodes, children };
        if let Err(e) = cluster.nodes.create() {
            panic!("{e}");
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.urls()
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes.ports[i]
    }

    /// The master that holds `key` (its index), as `CLUSTER KEYSLOT` and
    /// `CLUSTER NODES` of the first node say.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = redis_cli(self.port(0), &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        // A line: ID IP:PORT@BUS FLAGS MASTER PING PONG EPOCH LINK SLOTS...
        for line in redis_cli(self.port(0), &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(port) = fields
                .get(1)
                .and_then(|a| a.split(['@', ':']).nth(1))
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            let holds = fields.iter().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                match (start.parse::<u16>(), end.parse::<u16>()) {
                    (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                    _ => false,
                }
            });
            if holds {
                return self.nodes.ports.iter().position(|&p| p == port).unwrap();
            }
        }
        panic!("no master holds slot {slot} of {key}");
    }

    /// Kills master `i` at once (no shutdown, no save) and waits until it
    /// is gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts master `i` again on its port with its `nodes-PORT.conf`, so
    /// that it rejoins holding its slots (empty), and waits until every
    /// node says `cluster_state:ok`.
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "master {i} is running");
        self.children[i] = Some(self.nodes.spawn(i));
        self.wait_ok();
    }

    /// Starts every master that is down, as [`restart`](Self::restart)
    /// does one.
    pub fn restart_all(&mut self) {
        for i in 0..3 {
            if self.children[i].is_none() {
                self.children[i] = Some(self.nodes.spawn(i));
            }
        }
        self.wait_ok();
    }

    fn wait_ok(&self) {
        if let Err(e) = self
            .nodes
            .wait_ok(&self.nodes.ports, Duration::from_secs(10))
        {
            panic!("{e}");
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.nodes.dir);
    }
}

/// A store on the cluster of `nodes`, with the same patience as
/// [`connect`](super::connect).
pub async fn connect_cluster(nodes: &[String], prefix: &str) -> tollgate::redis::RedisStore {
    tollgate::redis::RedisStore::cluster_builder(nodes.iter().cloned())
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("the Redis cluster to test against answers")
}
