//! What a Redis store's errors say: the URL (never its password), what to
//! check, and the store's prefix once. Issue #20, item 5.
//!
//! The first tests need no server (nothing listens on the port they use);
//! the outage test needs one (see `tests/common/redis.rs`).
#![cfg(feature = "redis")]

#[path = "common/redis.rs"]
mod redis_env;

use std::time::Duration;

use tollgate::redis::{OnStoreError, RedisStore};
use tollgate::{ErrorKind, Policy};

const PREFIX: &str = "rate-limit store failed: ";

fn closed_port_url() -> String {
    format!("redis://127.0.0.1:{}/", redis_env::free_port())
}

#[tokio::test]
async fn a_refused_connection_names_the_url_and_what_to_check() {
    let url = closed_port_url();
    let err = RedisStore::builder(&url)
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{PREFIX}cannot connect to Redis at {url}: connection refused; check that \
             redis-server is running there and the URL is right"
        )
    );
}

#[tokio::test]
async fn the_password_never_appears() {
    let port = redis_env::free_port();
    for url in [
        format!("redis://:hunter2@127.0.0.1:{port}/"),
        format!("redis://default:hunter2@127.0.0.1:{port}/0"),
    ] {
        let err = RedisStore::builder(&url)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains(&format!("Redis at redis://…@127.0.0.1:{port}/")),
            "{text}"
        );
        let builder = RedisStore::builder(&url);
        assert!(!format!("{builder:?}").contains("hunter2"));
    }
    // A bad URL with a password in it.
    let err = RedisStore::builder("redis://:hunter2@127.0.0.1:notaport/")
        .connect_lazy()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn a_bad_url_says_how_to_write_one() {
    for url in [
        "127.0.0.1:6379",
        "http://127.0.0.1/",
        "redis://127.0.0.1:notaport/",
    ] {
        let err = RedisStore::builder(url).connect_lazy().unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err:?}");
        assert!(
            text.starts_with(&format!(
                "invalid configuration at redis url `{url}`: not a Redis URL"
            )),
            "{text}"
        );
        assert!(
            text.ends_with(
                "; write redis://[USER:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS, \
                 or redis+unix:///PATH"
            ),
            "{text}"
        );
        assert!(!text.contains("InvalidClientConfig"), "{text}");
    }
}

#[tokio::test]
async fn a_bucket_that_fails_closed_says_the_prefix_once() {
    let url = closed_port_url();
    let store = RedisStore::builder(&url)
        .timeout(Duration::from_secs(2))
        .connect_lazy()
        .unwrap();
    let bucket = store
        .bucket_with(
            "b",
            &[Policy::per_second(1.0).unwrap()],
            OnStoreError::FailClosed,
        )
        .unwrap();
    let err = bucket.try_acquire(1.0).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{PREFIX}bucket `b` fails closed while Redis is unavailable (cannot connect to \
             Redis at {url}: connection refused; check that redis-server is running there \
             and the URL is right); wait for Redis, or choose OnStoreError::Local or \
             FailOpen to keep going"
        )
    );
}

#[tokio::test]
async fn an_outage_says_the_prefix_once_and_names_the_url() {
    let Some(_) = redis_env::redis_url("redis_errors_outage") else {
        return;
    };
    let mut server = redis_env::PrivateRedis::start(redis_env::free_port());
    let url = server.url();
    let store = RedisStore::builder(&url)
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let bucket = store
        .bucket_with(
            "b",
            &[Policy::per_second(100.0).unwrap()],
            OnStoreError::FailClosed,
        )
        .unwrap();
    bucket.try_acquire(1.0).await.unwrap();
    server.stop();
    // Past the next token: until then the bucket knows Redis would refuse,
    // and says so without asking.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = bucket.try_acquire(1.0).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(text.matches("rate-limit store failed").count(), 1, "{text}");
    assert!(text.starts_with(PREFIX), "{text}");
    assert!(text.contains(&format!("Redis at {url}")), "{text}");
    assert!(text.contains("check that redis-server is"), "{text}");
}

#[tokio::test]
async fn a_cluster_nobody_answers_names_its_nodes_and_never_a_password() {
    let (a, b) = (redis_env::free_port(), redis_env::free_port());
    let nodes = [
        format!("redis://:hunter2@127.0.0.1:{a}/"),
        format!("redis://:hunter2@127.0.0.1:{b}/"),
    ];
    let builder = RedisStore::cluster_builder(nodes.clone()).timeout(Duration::from_secs(2));
    assert!(!format!("{builder:?}").contains("hunter2"));
    let err = builder.connect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!(
            "cannot connect to Redis at redis://…@127.0.0.1:{a}/, redis://…@127.0.0.1:{b}/ \
             (cluster): no node of the cluster answers; check that redis-server is running \
             there and the URLs are right"
        )),
        "{text}"
    );
    let err = RedisStore::cluster_builder(Vec::<String>::new())
        .connect_lazy()
        .unwrap_err();
    assert!(err.to_string().contains("no node given"), "{err}");
    let err = RedisStore::cluster_builder(["redis://127.0.0.1/", "nonsense"])
        .connect_lazy()
        .unwrap_err();
    assert!(err.to_string().contains("`nonsense`"), "{err}");
}
