//! Two server instances on one Redis hold one client key to one quota: each
//! runs its own axum app, `GuardLayer` and registry on its own store handle
//! (as two machines would), and shares nothing with the other but Redis.
//! Real time over loopback; the limits are per minute, so nothing refills
//! during a test.
#![cfg(all(feature = "server", feature = "redis"))]

use std::net::SocketAddr;

#[path = "common/redis.rs"]
mod redis_env;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tollgate::redis::{OnStoreError, RedisStore};
use tollgate::server::{tier, GuardLayer, HeaderKey, MissingKey, SuccessHeaders};
use tollgate::Registry;

/// One server instance: its own registry with the tiers in `store`.
async fn instance(store: RedisStore) -> SocketAddr {
    instance_with(store, SuccessHeaders::RateLimit).await
}

async fn instance_with(store: RedisStore, headers: SuccessHeaders) -> SocketAddr {
    let registry = Registry::builder()
        .source(tier("free").limit("5/min burst 5".parse().unwrap()))
        .source(tier("enterprise").limit("20/h burst 20".parse().unwrap()))
        .redis(store)
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key").unwrap())
        .default_tier("free")
        .tier_by(["enterprise"], |key| {
            key.starts_with("ent-").then_some("enterprise")
        })
        .missing_key(MissingKey::Refuse(StatusCode::UNAUTHORIZED))
        .success_headers(headers)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(guard)
        .route("/health", get(|| async { "up" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, make).await });
    addr
}

struct Reply {
    status: u16,
    ratelimit: Option<String>,
    retry_after: Option<u64>,
}

async fn get_key(client: &reqwest::Client, addr: SocketAddr, key: &str) -> Reply {
    let resp = client
        .get(format!("http://{addr}/"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    Reply {
        status: resp.status().as_u16(),
        ratelimit: header("ratelimit"),
        retry_after: header("retry-after").map(|v| v.parse().unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_hold_one_key_to_one_quota() {
    let Some(url) = redis_env::redis_url("two_instances") else {
        return;
    };
    let prefix = redis_env::unique_prefix("two_instances");
    let a = instance(redis_env::connect(&url, &prefix).await).await;
    let b = instance(redis_env::connect(&url, &prefix).await).await;
    let client = reqwest::Client::new();

    // One key, alternating between the instances: five in all, then 429
    // from either one.
    let mut replies = Vec::new();
    for i in 0..8 {
        let addr = if i % 2 == 0 { a } else { b };
        replies.push(get_key(&client, addr, "k1").await);
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // Each answer counts what both instances took: 4, 3, 2, 1, 0 left.
    for (i, r) in replies[..5].iter().enumerate() {
        let field = r.ratelimit.as_deref().expect("a RateLimit field");
        let left = 4 - i;
        assert!(
            field.starts_with(&format!(r#""free";r={left};"#)),
            "reply {i}: {field}"
        );
    }
    // The refusals name the shared schedule: the first token back in 12 s.
    for r in &replies[5..] {
        let retry = r.retry_after.expect("Retry-After");
        assert!((10..=12).contains(&retry), "{retry}");
    }

    // An instance that sends no success headers admits from the same
    // quota (it checks without a permit, and falls back to Redis).
    let c = instance_with(
        redis_env::connect(&url, &prefix).await,
        SuccessHeaders::None,
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let addr = if i % 2 == 0 { c } else { a };
        statuses.push(get_key(&client, addr, "k3").await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);

    // Another key has its own quota, on both instances.
    assert_eq!(get_key(&client, b, "k2").await.status, 200);
    assert_eq!(get_key(&client, a, "k2").await.status, 200);
    // An enterprise key takes from its own tier.
    for addr in [a, b, a, b, a, b] {
        assert_eq!(get_key(&client, addr, "ent-7").await.status, 200);
    }
    // The unlimited route stays open.
    let health = client
        .get(format!("http://{a}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_answers_503_when_failing_closed() {
    let Some(_) = redis_env::redis_url("server_dead_redis") else {
        return;
    };
    let mut server = redis_env::PrivateRedis::start(redis_env::free_port());
    let store = RedisStore::builder(server.url())
        .prefix(redis_env::unique_prefix("server_dead_redis"))
        .timeout(std::time::Duration::from_millis(100))
        .on_store_error(OnStoreError::FailClosed)
        .connect()
        .await
        .unwrap();
    let addr = instance(store).await;
    let client = reqwest::Client::new();
    assert_eq!(get_key(&client, addr, "k").await.status, 200);
    server.stop();
    assert_eq!(get_key(&client, addr, "k").await.status, 503);
}
