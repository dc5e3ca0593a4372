//! The connectors: one tower stack per API over one shared
//! [`tollgate::Registry`], and typed calls on top.
//!
//! Each stack is, from the outside in:
//!
//! ```text
//! RetryLayer(tollgate::tower::RetryPolicy)     (left out with --no-limits)
//!   stamp: the attempt enters the limiter
//!   tollgate::tower::RateLimitLayer(registry)  waits for the slot, reads 429/503 back
//!   stamp: the attempt leaves the limiter
//!   TimeoutLayer(10 s)
//!   hyper-util client (Request<String> in, Response<Bytes> out)
//! ```
//!
//! The two stamps are `MapRequest` layers that touch only a [`Probe`] riding
//! in the request's extensions (the retry policy copies extensions, so every
//! attempt of a call shares it). The wait they measure is the time one
//! attempt spent inside `RateLimitLayer` before it was handed to the HTTP
//! client: the limiter's pacing and any server-ordered deferral, and nothing
//! of the network, the server or the retry backoff.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate::tower::{RateLimitLayer, RetryPolicy};
use tollgate::Registry;
use tower::retry::RetryLayer;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// The User-Agent every connector sends (MusicBrainz refuses requests
/// without one).
pub const USER_AGENT: &str = "tollgate-demo/0.1 ( https://example.invalid/tollgate )";

/// A connector's whole stack, boxed: `Request<String>` in, the collected
/// `Response<Bytes>` out.
pub type HttpStack = BoxCloneSyncService<Request<String>, Response<Bytes>, BoxError>;

/// What the client side saw for one source, over every worker.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Attempts that left the limiter for the HTTP client.
    sent: AtomicU64,
    /// Attempts after a call's first.
    retries: AtomicU64,
    /// Calls dropped at the deadline before they were sent.
    cancelled: AtomicU64,
    /// Calls that ended without an answer.
    failed: AtomicU64,
    /// The last such failure, as text.
    last_failure: Mutex<Option<String>>,
    /// Sum of the limiter waits of the attempts sent, in nanoseconds.
    wait_total_ns: AtomicU64,
    /// Longest limiter wait of an attempt sent, in nanoseconds.
    wait_max_ns: AtomicU64,
}

impl ClientStats {
    /// Counts one attempt sent after `wait` in the limiter.
    fn record_wait(&self, wait: Duration) {
        let ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.wait_total_ns.fetch_add(ns, Ordering::Relaxed);
        self.wait_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Counts a call abandoned at the end of the run while it still waited
    /// in the limiter (or in a retry's backoff).
    pub fn record_cancel(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call that ended without an answer: connection failure,
    /// timeout, or a refusal by the limiter itself.
    pub fn record_failure(&self, error: &BoxError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
    }

    /// Calls that ended without an answer.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The last such failure.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Attempts that passed the limiter and went to the server.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Attempts made by the retry layer after a call's first.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Calls abandoned at the end of the run before they were sent.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Mean wait in the limiter over the attempts sent.
    pub fn mean_wait(&self) -> Duration {
        let n = self.sent();
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.wait_total_ns.load(Ordering::Relaxed) / n)
    }

    /// Longest wait in the limiter of an attempt sent.
    pub fn max_wait(&self) -> Duration {
        Duration::from_nanos(self.wait_max_ns.load(Ordering::Relaxed))
    }
}

/// Where a worker's current call is (see [`Probe::phase`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting in the limiter, in a retry's backoff, or not started.
    Waiting,
    /// Handed to the HTTP client: on the wire or in the server.
    AtClient,
    /// The HTTP client has the answer; the call returns it or retries.
    Answered,
}

/// Per-worker view of the call in progress, carried in the request's
/// extensions so the stamp layers can reach it.
#[derive(Clone, Debug)]
pub struct Probe(Arc<ProbeInner>);

#[derive(Debug)]
struct ProbeInner {
    /// The source's counters.
    stats: Arc<ClientStats>,
    /// When the current attempt entered the limiter.
    entered: Mutex<Option<Instant>>,
    /// Attempts of the current call so far.
    attempts: AtomicU32,
    /// A [`Phase`] as its discriminant.
    phase: AtomicU8,
}

impl Probe {
    fn new(stats: Arc<ClientStats>) -> Self {
        Probe(Arc::new(ProbeInner {
            stats,
            entered: Mutex::new(None),
            attempts: AtomicU32::new(0),
            phase: AtomicU8::new(Phase::Waiting as u8),
        }))
    }

    /// A new call starts.
    fn reset(&self) {
        self.0.attempts.store(0, Ordering::Relaxed);
        self.set_phase(Phase::Waiting);
    }

    fn set_phase(&self, phase: Phase) {
        self.0.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Where the worker's current call is.
    pub fn phase(&self) -> Phase {
        match self.0.phase.load(Ordering::Relaxed) {
            x if x == Phase::AtClient as u8 => Phase::AtClient,
            x if x == Phase::Answered as u8 => Phase::Answered,
            _ => Phase::Waiting,
        }
    }

    /// The stats of the source this probe reports to.
    pub fn stats(&self) -> &ClientStats {
        &self.0.stats
    }
}

/// Stamp above the rate-limit layer: an attempt enters the limiter.
fn stamp_enter(req: Request<String>) -> Request<String> {
    if let Some(p) = req.extensions().get::<Probe>() {
        if p.0.attempts.fetch_add(1, Ordering::Relaxed) > 0 {
            p.0.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        *p.0.entered.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        p.set_phase(Phase::Waiting);
    }
    req
}

/// Stamp below the rate-limit layer: the attempt was admitted and goes to
/// the HTTP client now.
fn stamp_leave(req: Request<String>) -> Request<String> {
    if let Some(p) = req.extensions().get::<Probe>() {
        let entered = p.0.entered.lock().unwrap_or_else(|e| e.into_inner()).take();
        let wait = entered.map_or(Duration::ZERO, |t| t.elapsed());
        p.0.stats.record_wait(wait);
        p.set_phase(Phase::AtClient);
    }
    req
}

/// Builds one connector stack over `registry`; `retry: false` leaves out
/// the retry layer (for `--no-limits`, so violations reach the report).
pub fn http_stack(registry: &Registry, retry: bool) -> HttpStack {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // The client takes `Request<String>` (which the retry policy can clone,
    // unlike `Full<Bytes>`) and collects the body, so that the layers above
    // see a plain `Response<Bytes>`.
    let client = tower::service_fn(move |req: Request<String>| {
        let client = client.clone();
        async move {
            let probe = req.extensions().get::<Probe>().cloned();
            let req = req.map(|body| Full::new(Bytes::from(body)));
            let response = client.request(req).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            if let Some(p) = probe {
                p.set_phase(Phase::Answered);
            }
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        }
    });
    let stack = ServiceBuilder::new()
        .option_layer(retry.then(|| RetryLayer::new(RetryPolicy::default())))
        .map_request(stamp_enter)
        .layer(RateLimitLayer::new(registry.clone()))
        .map_request(stamp_leave)
        .timeout(Duration::from_secs(10))
        .service(client);
    BoxCloneSyncService::new(stack)
}

/// Why a typed call failed.
#[derive(Debug)]
pub enum CallError {
    /// The server answered, but not 200.
    Status(StatusCode),
    /// No answer: connection failure, timeout, or a limiter refusal.
    Transport(BoxError),
    /// 200, but the body was not the JSON expected.
    Body(serde_json::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(s) => write!(f, "answered {s}"),
            CallError::Transport(e) => write!(f, "no answer: {e}"),
            CallError::Body(e) => write!(f, "bad body: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The part every connector shares: its stack, its base URL and the probe
/// of the worker that owns this copy.
#[derive(Clone, Debug)]
struct Http {
    /// The tower stack (shared by every copy).
    stack: HttpStack,
    /// `http://host:port`.
    base: String,
    /// This copy's probe.
    probe: Probe,
}

impl Http {
    fn new(stack: HttpStack, base: String, stats: Arc<ClientStats>) -> Self {
        Http {
            stack,
            base,
            probe: Probe::new(stats),
        }
    }

    /// The same stack and stats, with a probe of its own (one per worker).
    fn for_worker(&self) -> Self {
        Http {
            stack: self.stack.clone(),
            base: self.base.clone(),
            probe: Probe::new(self.probe.0.stats.clone()),
        }
    }

    /// GETs `path` (with query) and parses a 200's JSON body.
    async fn get_json(
        &self,
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> Result<serde_json::Value, CallError> {
        let mut req = Request::get(format!("{}{path}", self.base))
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json");
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let mut req = req
            .body(String::new())
            .map_err(|e| CallError::Transport(e.into()))?;
        self.probe.reset();
        req.extensions_mut().insert(self.probe.clone());
        let response = self
            .stack
            .clone()
            .oneshot(req)
            .await
            .map_err(CallError::Transport)?;
        if response.status() != StatusCode::OK {
            return Err(CallError::Status(response.status()));
        }
        serde_json::from_slice(response.body()).map_err(CallError::Body)
    }
}

/// MusicBrainz web service v2.
#[derive(Clone, Debug)]
pub struct MusicBrainz {
    http: Http,
}

impl MusicBrainz {
    /// A connector for the server at `base` (`http://host:port`).
    pub fn new(stack: HttpStack, base: String, stats: Arc<ClientStats>) -> Self {
        MusicBrainz {
            http: Http::new(stack, base, stats),
        }
    }

    /// A copy for one worker: same stack, its own [`Probe`].
    pub fn for_worker(&self) -> Self {
        MusicBrainz {
            http: self.http.for_worker(),
        }
    }

    /// This copy's probe.
    pub fn probe(&self) -> &Probe {
        &self.http.probe
    }

    /// `GET /ws/2/recording/{mbid}?fmt=json`.
    pub async fn lookup_recording(&self, mbid: &str) -> Result<serde_json::Value, CallError> {
        self.http
            .get_json(&format!("/ws/2/recording/{mbid}?fmt=json"), &[])
            .await
    }
}

/// Discogs database API.
#[derive(Clone, Debug)]
pub struct Discogs {
    http: Http,
    token: Option<String>,
}

impl Discogs {
    /// A connector for the server at `base`; with a token, every request is
    /// authenticated (`Authorization: Discogs token=..`).
    pub fn new(
        stack: HttpStack,
        base: String,
        stats: Arc<ClientStats>,
        token: Option<String>,
    ) -> Self {
        Discogs {
            http: Http::new(stack, base, stats),
            token,
        }
    }

    /// A copy for one worker: same stack, its own [`Probe`].
    pub fn for_worker(&self) -> Self {
        Discogs {
            http: self.http.for_worker(),
            token: self.token.clone(),
        }
    }

    /// This copy's probe.
    pub fn probe(&self) -> &Probe {
        &self.http.probe
    }

    /// `GET /releases/{id}`.
    pub async fn release(&self, id: u64) -> Result<serde_json::Value, CallError> {
        let auth = self.token.as_ref().map(|t| format!("Discogs token={t}"));
        let headers: Vec<_> = auth
            .iter()
            .map(|a| (header::AUTHORIZATION, a.as_str()))
            .collect();
        self.http
            .get_json(&format!("/releases/{id}"), &headers)
            .await
    }
}

/// AcoustID lookup by fingerprint.
#[derive(Clone, Debug)]
pub struct AcoustId {
    http: Http,
}

impl AcoustId {
    /// A connector for the server at `base`.
    pub fn new(stack: HttpStack, base: String, stats: Arc<ClientStats>) -> Self {
        AcoustId {
            http: Http::new(stack, base, stats),
        }
    }

    /// A copy for one worker: same stack, its own [`Probe`].
    pub fn for_worker(&self) -> Self {
        AcoustId {
            http: self.http.for_worker(),
        }
    }

    /// This copy's probe.
    pub fn probe(&self) -> &Probe {
        &self.http.probe
    }

    /// `GET /v2/lookup?client=..&fingerprint=..&duration=..`.
    pub async fn lookup_fingerprint(
        &self,
        fingerprint: &str,
        duration_secs: u32,
    ) -> Result<serde_json::Value, CallError> {
        let path = format!(
            "/v2/lookup?client=demo&meta=recordingids&fingerprint={fingerprint}&duration={duration_secs}"
        );
        self.http.get_json(&path, &[]).await
    }
}

/// The lyrics API (fictional; see [`crate::upstream`]): no documented
/// limit, so its source learns one.
#[derive(Clone, Debug)]
pub struct Lyrics {
    http: Http,
}

impl Lyrics {
    /// A connector for the server at `base`.
    pub fn new(stack: HttpStack, base: String, stats: Arc<ClientStats>) -> Self {
        Lyrics {
            http: Http::new(stack, base, stats),
        }
    }

    /// A copy for one worker: same stack, its own [`Probe`].
    pub fn for_worker(&self) -> Self {
        Lyrics {
            http: self.http.for_worker(),
        }
    }

    /// This copy's probe.
    pub fn probe(&self) -> &Probe {
        &self.http.probe
    }

    /// `GET /v1/tracks/{id}/lyrics`.
    pub async fn lyrics(&self, track: u64) -> Result<serde_json::Value, CallError> {
        self.http
            .get_json(&format!("/v1/tracks/{track}/lyrics"), &[])
            .await
    }
}

/// Tags read from local files: no server, no limit. Goes through the
/// registry all the same (source `local-files`, which has no limits), to
/// show that an unlimited source admits at once.
#[derive(Clone, Debug)]
pub struct LocalTags {
    registry: Registry,
    reads: Arc<AtomicU64>,
    wait_total_ns: Arc<AtomicU64>,
    wait_max_ns: Arc<AtomicU64>,
}

impl LocalTags {
    /// Reads through `registry`'s source `local-files`.
    pub fn new(registry: Registry) -> Self {
        LocalTags {
            registry,
            reads: Arc::default(),
            wait_total_ns: Arc::default(),
            wait_max_ns: Arc::default(),
        }
    }

    /// "Reads" the tags of `path`: takes a permit from `local-files`, then
    /// spends a few microseconds as a tag read would. Reads nothing real.
    pub async fn read_tags(&self, path: &str) -> Result<(String, String), tollgate::Error> {
        let start = Instant::now();
        let _permit = self.registry.source("local-files")?.acquire(1.0).await?;
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.wait_total_ns.fetch_add(ns, Ordering::Relaxed);
        self.wait_max_ns.fetch_max(ns, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let work = Instant::now();
        while work.elapsed() < Duration::from_micros(3) {
            std::hint::spin_loop();
        }
        let title = path.rsplit('/').next().unwrap_or(path).to_string();
        Ok(("Demo Artist".to_string(), title))
    }

    /// Tag reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Mean time spent acquiring the permit.
    pub fn mean_wait(&self) -> Duration {
        let n = self.reads();
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.wait_total_ns.load(Ordering::Relaxed) / n)
    }

    /// Longest time spent acquiring the permit.
    pub fn max_wait(&self) -> Duration {
        Duration::from_nanos(self.wait_max_ns.load(Ordering::Relaxed))
    }
}
