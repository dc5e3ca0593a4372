//! An axum API guarded by `tollgate::server::GuardLayer`:
//!
//! * `/api/items`: tiers by API key (`x-api-key`): free keys 5 a second,
//!   enterprise keys 100 a second, each key its own bucket; no key is 401;
//! * `POST /login?user=NAME`: at most 5 attempts a minute per user *and*
//!   client address;
//! * `/health`: never limited.
//!
//! ```sh
//! cargo run --example axum_server --features server                 # serves on 127.0.0.1:3000
//! curl -i -H 'x-api-key: free-1' http://127.0.0.1:3000/api/items
//! cargo run --example axum_server --features server -- --self-test  # what CI runs
//! ```
//!
//! With `--self-test` it serves on a free port of 127.0.0.1, sends a few
//! bursts, prints what it got, and exits 0 if every count is what the
//! limits allow.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use tollgate::server::{tier, ClientIp, GuardLayer, HeaderKey, KeyFn, MissingKey};
use tollgate::{Policy, Registry};

/// In a real service this is a lookup in the accounts table.
const ENTERPRISE_KEYS: &[&str] = &["ent-acme", "ent-globex"];

fn app() -> Result<Router, tollgate::Error> {
    let registry = Registry::builder()
        .source(tier("free").limit("5/s burst 5".parse()?))
        .source(tier("enterprise").limit("100/s burst 100".parse()?))
        // At most 5 in any minute, all 5 at once if need be.
        .source(tier("login").limit("5/min burst 5 window".parse::<Policy>()?))
        .build()?;

    let by_api_key = GuardLayer::builder(registry.clone(), HeaderKey::new("x-api-key")?)
        .default_tier("free")
        .tier_by(["enterprise"], |key| {
            ENTERPRISE_KEYS.contains(&key).then_some("enterprise")
        })
        .missing_key(MissingKey::Refuse(StatusCode::UNAUTHORIZED))
        .build()?;

    // The guard sees the request's head, not its body, so the user comes
    // from the query string here. axum keeps the peer's address as
    // `ConnectInfo<SocketAddr>` (see `serve` below); `peer_from` reads it.
    let user = KeyFn::new(|head, key| {
        let query = head.uri.query().unwrap_or("");
        match query.split('&').find_map(|kv| kv.strip_prefix("user=")) {
            Some(name) if !name.is_empty() => {
                key.push_str(name);
                true
            }
            _ => false,
        }
    })
    .describe("the `user` query parameter");
    let client = ClientIp::peer().peer_from(connect_info);
    let by_user_and_ip = GuardLayer::builder(registry, (user, client))
        .default_tier("login")
        .build()?;

    let api = Router::new()
        .route("/api/items", get(|| async { r#"["apple","pear"]"# }))
        .layer(by_api_key);
    let login = Router::new()
        .route("/login", post(|| async { "welcome" }))
        .layer(by_user_and_ip);
    Ok(Router::new()
        .merge(api)
        .merge(login)
        .route("/health", get(|| async { "up" })))
}

fn connect_info(ext: &http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

async fn serve(app: Router, addr: &str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // `with_connect_info` puts each connection's peer address into its
    // requests' extensions, where `ClientIp` finds it.
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, make).await });
    Ok(local)
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let app = app()?;
    if std::env::args().any(|a| a == "--self-test") {
        let addr = serve(app, "127.0.0.1:0").await?;
        return Ok(self_test(addr).await?);
    }
    let addr = serve(app, "127.0.0.1:3000").await?;
    println!("listening on http://{addr}");
    println!("  curl -i -H 'x-api-key: free-1' http://{addr}/api/items");
    println!("  curl -i -X POST 'http://{addr}/login?user=alice'");
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

/// Statuses of `n` requests sent one after another, and how long they took.
async fn burst(
    request: impl Fn() -> reqwest::RequestBuilder,
    n: usize,
) -> Result<(Vec<u16>, f64), reqwest::Error> {
    let start = Instant::now();
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(request().send().await?.status().as_u16());
    }
    Ok((statuses, start.elapsed().as_secs_f64()))
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn self_test(addr: SocketAddr) -> Result<ExitCode, reqwest::Error> {
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut failures = Vec::new();
    let mut check = |what: &str, ok: bool, got: String| {
        println!("{what}: {got}{}", if ok { "" } else { "  <-- unexpected" });
        if !ok {
            failures.push(what.to_string());
        }
    };

    // Free: a burst of 5, then 5 a second; 12 requests sent quickly.
    let (s, secs) = burst(
        || client.get(url("/api/items")).header("x-api-key", "free-1"),
        12,
    )
    .await?;
    let (ok, limited) = (count(&s, 200), count(&s, 429));
    let most = 5 + (5.0 * secs).ceil() as usize;
    check(
        "free key, 12 requests",
        ok >= 5 && ok <= most && ok + limited == 12,
        format!("{ok} ok, {limited} refused in {secs:.3} s (at most {most} allowed)"),
    );
    // Another free key is not affected.
    let (s, _) = burst(
        || client.get(url("/api/items")).header("x-api-key", "free-2"),
        5,
    )
    .await?;
    check(
        "second free key, 5 requests",
        count(&s, 200) == 5,
        format!("{} ok", count(&s, 200)),
    );
    // Enterprise: a burst of 100.
    let (s, _) = burst(
        || {
            client
                .get(url("/api/items"))
                .header("x-api-key", "ent-acme")
        },
        12,
    )
    .await?;
    check(
        "enterprise key, 12 requests",
        count(&s, 200) == 12,
        format!("{} ok", count(&s, 200)),
    );
    // No key.
    let (s, _) = burst(|| client.get(url("/api/items")), 1).await?;
    check("no key", s == [401], format!("{s:?}"));
    // Login: 5 a minute per user and address.
    let (s, _) = burst(|| client.post(url("/login?user=alice")), 7).await?;
    check(
        "login as alice, 7 attempts",
        count(&s, 200) == 5 && count(&s, 429) == 2,
        format!("{} ok, {} refused", count(&s, 200), count(&s, 429)),
    );
    let (s, _) = burst(|| client.post(url("/login?user=bob")), 1).await?;
    check("login as bob", s == [200], format!("{s:?}"));
    // Health: never limited.
    let (s, _) = burst(|| client.get(url("/health")), 50).await?;
    check(
        "health, 50 requests",
        count(&s, 200) == 50,
        format!("{} ok", count(&s, 200)),
    );

    if failures.is_empty() {
        println!("self-test: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("self-test: failed: {}", failures.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
