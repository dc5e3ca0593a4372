//! The embedded upstream: four axum servers on 127.0.0.1, one per API, each
//! enforcing its API's limit itself and answering a violation the way the
//! real API does.
//!
//! | API | route | limit enforced here | violation |
//! |---|---|---|---|
//! | MusicBrainz | `GET /ws/2/recording/{mbid}` | 1 in any 1 s | 503, no `Retry-After` |
//! | Discogs | `GET /releases/{id}` | 25 in any 60 s, 60 with `Authorization: Discogs token=..` | 429 with `X-Discogs-Ratelimit*` |
//! | AcoustID | `GET /v2/lookup?fingerprint=..&duration=..` | 3 in any 1 s | 429 with a JSON error body |
//! | Lyrics (fictional) | `GET /v1/tracks/{id}/lyrics` | [`LYRICS_LIMIT`] in any 1 s, documented nowhere | 429 with no header at all |
//!
//! The first three limits are documented, so the demo configures them. The
//! lyrics API stands for the many small services that publish no limit and
//! announce none: the client can only learn it from the refusals.
//!
//! Each server keeps, per client IP, a log of the instants at which it
//! admitted a request ([`SlidingLog`]). A request is admitted when fewer than
//! `limit` earlier admissions lie within the last `window − TOLERANCE`; so
//! the window the server checks is [`TOLERANCE`] (50 ms) shorter than the
//! documented one. That slack absorbs network and scheduling jitter between
//! a client's send and the server's read (on loopback it is well under a
//! millisecond, but a 2-core machine under load can delay a task by tens of
//! milliseconds). A client that spaces its requests exactly as documented
//! never comes near it; a client that ignores the limit gets no benefit from
//! it worth mentioning. Refused requests do not enter the log.
//!
//! Every answer is counted ([`ApiStats`]) and logged with its instant, for
//! the report and the plot.
//!
//! The soak (`examples/soak.rs`) also injects deferrals
//! ([`Upstream::inject_retry_after`]): the next request is answered 429 with
//! a `Retry-After`, and until that time (less [`TOLERANCE`] at each end) any
//! request from the same IP counts as a violation. The demo injects none.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

/// The slack every server grants: its window is this much shorter than the
/// documented one.
pub const TOLERANCE: Duration = Duration::from_millis(50);

/// The most requests the lyrics API admits in any 1 s window (less
/// [`TOLERANCE`], as everywhere here). It says so nowhere.
pub const LYRICS_LIMIT: u32 = 8;

/// The four APIs the upstream plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// MusicBrainz: 1 request a second.
    MusicBrainz,
    /// Discogs: 25 (60 authenticated) requests in any minute.
    Discogs,
    /// AcoustID: 3 requests in any second.
    AcoustId,
    /// A fictional lyrics API: [`LYRICS_LIMIT`] requests in any second,
    /// unannounced.
    Lyrics,
}

impl Api {
    /// Every API, in the order of the report.
    pub const ALL: [Api; 4] = [Api::MusicBrainz, Api::Discogs, Api::AcoustId, Api::Lyrics];

    /// The APIs whose limits are documented, so a client can configure them.
    pub const CONFIGURED: [Api; 3] = [Api::MusicBrainz, Api::Discogs, Api::AcoustId];

    /// The tollgate source name of this API.
    pub fn name(self) -> &'static str {
        match self {
            Api::MusicBrainz => "musicbrainz",
            Api::Discogs => "discogs",
            Api::AcoustId => "acoustid",
            Api::Lyrics => "lyrics",
        }
    }

    /// Index into [`Api::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How the upstream answered one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted and answered 200.
    Ok,
    /// Refused for going over the limit (503 or 429). For the lyrics API,
    /// whose limit nobody can configure, the refusals a learning client
    /// pays to find it.
    Violation,
    /// Any other refusal (400, 403, 404): a bad request, not a rate problem.
    Other,
}

/// What one API's server counted.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Answers 200.
    ok: AtomicU64,
    /// Answers 429/503 for the rate.
    violations: AtomicU64,
    /// Any other refusal.
    other: AtomicU64,
    /// Every answer with its instant.
    events: Mutex<Vec<(Instant, Outcome)>>,
}

impl ApiStats {
    fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Violation => &self.violations,
            Outcome::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        lock(&self.events).push((Instant::now(), outcome));
    }

    /// Requests answered 200.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Requests refused for going over the limit.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// Requests refused for another reason.
    pub fn other(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }

    /// Every answer with the instant it was given, in order.
    pub fn events(&self) -> Vec<(Instant, Outcome)> {
        lock(&self.events).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Admission instants within the last window, oldest first.
#[derive(Debug, Default)]
pub struct SlidingLog {
    admitted: VecDeque<Instant>,
}

impl SlidingLog {
    /// Admits a request arriving at `now` if fewer than `limit` admissions
    /// lie in `(now − (window − TOLERANCE), now]`; returns how many lie
    /// there after the decision (the request included when admitted).
    fn admit(&mut self, now: Instant, limit: usize, window: Duration) -> Result<usize, usize> {
        let span = window.saturating_sub(TOLERANCE);
        while self
            .admitted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= span)
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() >= limit {
            return Err(self.admitted.len());
        }
        self.admitted.push_back(now);
        Ok(self.admitted.len())
    }
}

/// Deferrals injected into one API's answers.
#[derive(Debug, Default)]
struct Faults {
    /// `Retry-After` seconds for the next request; 0 when none is asked for.
    next: AtomicU64,
    /// The deferral in force per client IP: (when it was answered, until).
    deferred: Mutex<HashMap<IpAddr, (Instant, Instant)>>,
    /// Injected 429s answered.
    injected: AtomicU64,
    /// Requests that came inside a deferral (counted as violations too).
    early: AtomicU64,
}

/// One API's server state: its counters and a sliding log per client IP.
#[derive(Debug)]
struct ApiState {
    /// The counters the demo reads.
    stats: Arc<ApiStats>,
    /// One admission log per client IP.
    logs: Mutex<HashMap<IpAddr, SlidingLog>>,
    /// What the soak injects.
    faults: Arc<Faults>,
}

impl ApiState {
    /// An injected deferral's answer: the 429 that starts one, or a
    /// violation for a request inside one. `None` for a request to serve.
    fn deferral(&self, peer: IpAddr) -> Option<Response> {
        let now = Instant::now();
        let mut deferred = lock(&self.faults.deferred);
        if let Some(&(from, until)) = deferred.get(&peer) {
            // Requests already on their way when the 429 left are let be.
            if now >= from + TOLERANCE && now + TOLERANCE < until {
                self.faults.early.fetch_add(1, Ordering::Relaxed);
                self.stats.record(Outcome::Violation);
                return Some(retry_after(until.saturating_duration_since(now)));
            }
        }
        let secs = self.faults.next.swap(0, Ordering::Relaxed);
        if secs == 0 {
            return None;
        }
        let wait = Duration::from_secs(secs);
        deferred.insert(peer, (now, now + wait));
        self.faults.injected.fetch_add(1, Ordering::Relaxed);
        Some(retry_after(wait))
    }

    fn admit(&self, peer: IpAddr, limit: usize, window: Duration) -> Result<usize, usize> {
        lock(&self.logs)
            .entry(peer)
            .or_default()
            .admit(Instant::now(), limit, window)
    }
}

type Shared = Arc<ApiState>;

/// How many APIs the upstream serves.
const APIS: usize = Api::ALL.len();

/// The running upstream: where each API listens and what it counted.
#[derive(Debug)]
pub struct Upstream {
    addrs: [SocketAddr; APIS],
    stats: [Arc<ApiStats>; APIS],
    faults: [Arc<Faults>; APIS],
}

impl Upstream {
    /// Binds a listener per API on 127.0.0.1 (ports chosen by the OS) and
    /// serves each API on its own, in background tasks.
    pub async fn start() -> std::io::Result<Upstream> {
        let stats: [Arc<ApiStats>; APIS] = Default::default();
        let faults: [Arc<Faults>; APIS] = Default::default();
        let mut addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); APIS];
        for api in Api::ALL {
            let state = Arc::new(ApiState {
                stats: stats[api.index()].clone(),
                logs: Mutex::default(),
                faults: faults[api.index()].clone(),
            });
            let app = match api {
                Api::MusicBrainz => Router::new().route("/ws/2/recording/{mbid}", get(musicbrainz)),
                Api::Discogs => Router::new().route("/releases/{id}", get(discogs)),
                Api::AcoustId => Router::new().route("/v2/lookup", get(acoustid)),
                Api::Lyrics => Router::new().route("/v1/tracks/{id}/lyrics", get(lyrics)),
            }
            .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs[api.index()] = listener.local_addr()?;
            tokio::spawn(async move {
                let make = app.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, make).await {
                    eprintln!("upstream {}: {e}", api.name());
                }
            });
        }
        Ok(Upstream {
            addrs,
            stats,
            faults,
        })
    }

    /// Where `api` listens.
    pub fn addr(&self, api: Api) -> SocketAddr {
        self.addrs[api.index()]
    }

    /// What `api`'s server counted.
    pub fn stats(&self, api: Api) -> &ApiStats {
        &self.stats[api.index()]
    }

    /// The same counters, shared (for a task that outlives a borrow).
    pub fn stats_handle(&self, api: Api) -> Arc<ApiStats> {
        self.stats[api.index()].clone()
    }

    /// Answers `api`'s next request 429 with `Retry-After: secs` (at least
    /// 1), and counts a violation for any request from that client before
    /// then.
    #[allow(dead_code)] // the soak's, not the demo's
    pub fn inject_retry_after(&self, api: Api, secs: u64) {
        self.faults[api.index()]
            .next
            .store(secs.max(1), Ordering::Relaxed);
    }

    /// The injected 429s `api` has answered.
    #[allow(dead_code)] // the soak's, not the demo's
    pub fn injected(&self, api: Api) -> u64 {
        self.faults[api.index()].injected.load(Ordering::Relaxed)
    }

    /// Of `api`'s violations, those that came inside an injected deferral.
    #[allow(dead_code)] // the soak's, not the demo's
    pub fn early(&self, api: Api) -> u64 {
        self.faults[api.index()].early.load(Ordering::Relaxed)
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A 429 asking the client to wait `wait` (whole seconds, rounded up).
fn retry_after(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({ "error": "Slow down." }),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// MusicBrainz: a real User-Agent is required (403 without), and at most
/// one request a second per IP, answered 503 with no `Retry-After`.
async fn musicbrainz(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(mbid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = s.deferral(peer.ip()) {
        return r;
    }
    if !headers.contains_key(header::USER_AGENT) {
        s.stats.record(Outcome::Other);
        let msg = "Requests without a meaningful User-Agent are blocked.";
        return json_response(StatusCode::FORBIDDEN, json!({ "error": msg }));
    }
    if s.admit(peer.ip(), 1, Duration::from_secs(1)).is_err() {
        s.stats.record(Outcome::Violation);
        let msg = "Your requests are exceeding the allowable rate limit.";
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": msg }));
    }
    // Validity is checked after the rate: a malformed request still costs.
    let valid = mbid.len() == 36 && mbid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !valid {
        s.stats.record(Outcome::Other);
        return json_response(StatusCode::BAD_REQUEST, json!({ "error": "Invalid mbid." }));
    }
    s.stats.record(Outcome::Ok);
    json_response(
        StatusCode::OK,
        json!({ "id": mbid, "title": "Demo Recording", "length": 215_000, "video": false }),
    )
}

/// Discogs: 25 requests in any minute per IP, or 60 when the request is
/// authenticated; every answer says the limit, how many were used and how
/// many remain; a violation is 429 with the same headers.
async fn discogs(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = s.deferral(peer.ip()) {
        return r;
    }
    let authenticated = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Discogs token=") && v.len() > "Discogs token=".len());
    let limit = if authenticated { 60 } else { 25 };
    let decision = s.admit(peer.ip(), limit, Duration::from_secs(60));
    let used = match decision {
        Ok(n) | Err(n) => n,
    };
    let mut response = match (decision, id.parse::<u64>()) {
        (Err(_), _) => {
            s.stats.record(Outcome::Violation);
            json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "message": "You are making requests too quickly." }),
            )
        }
        (Ok(_), Err(_)) => {
            s.stats.record(Outcome::Other);
            json_response(
                StatusCode::NOT_FOUND,
                json!({ "message": "Release not found." }),
            )
        }
        (Ok(_), Ok(id)) => {
            s.stats.record(Outcome::Ok);
            json_response(
                StatusCode::OK,
                json!({ "id": id, "title": "Demo Release", "year": 1991, "status": "Accepted" }),
            )
        }
    };
    let h = response.headers_mut();
    for (name, value) in [
        ("x-discogs-ratelimit", limit),
        ("x-discogs-ratelimit-used", used),
        ("x-discogs-ratelimit-remaining", limit.saturating_sub(used)),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
    response
}

/// AcoustID: at most 3 requests in any second per IP; a violation is 429
/// with AcoustID's JSON error body (code 14, "too many requests"); a
/// missing parameter is 400 with code 2.
async fn acoustid(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Response {
    if let Some(r) = s.deferral(peer.ip()) {
        return r;
    }
    if s.admit(peer.ip(), 3, Duration::from_secs(1)).is_err() {
        s.stats.record(Outcome::Violation);
        let msg = "rate limit (3 requests per second) exceeded, try again later";
        return json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "status": "error", "error": { "code": 14, "message": msg } }),
        );
    }
    let query = uri.query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    };
    let (Some(fingerprint), Some(duration)) = (param("fingerprint"), param("duration")) else {
        s.stats.record(Outcome::Other);
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "status": "error", "error": { "code": 2, "message": "missing required parameter" } }),
        );
    };
    s.stats.record(Outcome::Ok);
    json_response(
        StatusCode::OK,
        json!({
            "status": "ok",
            "results": [{
                "id": format!("demo-{}", fingerprint.len()),
                "score": 0.97,
                "duration": duration,
            }],
        }),
    )
}

/// The lyrics API (fictional): at most [`LYRICS_LIMIT`] requests in any
/// second per IP, and beyond that a bare 429: no `Retry-After`, no quota
/// header, a plain-text body. Injected deferrals do not apply (they would
/// add the `Retry-After` this server never sends).
async fn lyrics(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    if s.admit(peer.ip(), LYRICS_LIMIT as usize, Duration::from_secs(1))
        .is_err()
    {
        s.stats.record(Outcome::Violation);
        let mut r = Response::new(Body::from("Too Many Requests"));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        s.stats.record(Outcome::Other);
        return json_response(StatusCode::NOT_FOUND, json!({ "error": "no such track" }));
    };
    s.stats.record(Outcome::Ok);
    json_response(
        StatusCode::OK,
        json!({ "track": id, "lines": ["Demo line one", "Demo line two"], "synced": false }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_log_keeps_the_tolerance() {
        let t0 = Instant::now();
        let mut log = SlidingLog::default();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(log.admit(at(0), 1, Duration::from_secs(1)), Ok(1));
        assert!(log.admit(at(949), 1, Duration::from_secs(1)).is_err());
        assert_eq!(log.admit(at(950), 1, Duration::from_secs(1)), Ok(1));
    }
}
