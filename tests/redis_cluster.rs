//! The Redis store on a Redis Cluster: the bucket contract
//! (`tests/common/conformance.rs`) on a three-master cluster, every key of
//! a set in one slot, `MOVED` and `ASK` followed while a slot moves with
//! the set's state, and the loss of one master, which fails only the sets
//! in its slots, until it is back. Needs a cluster: `REDIS_CLUSTER_URLS`,
//! or `redis-server` and `redis-cli` on the PATH (see
//! `tests/common/redis.rs`).
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

#[path = "common/conformance.rs"]
mod conformance;
#[path = "common/redis_buckets.rs"]
mod redis_buckets;
#[path = "common/redis.rs"]
mod redis_env;

use redis_buckets::Redis;
use redis_env::{redis_cli, PrivateCluster};
use tollgate::redis::{OnStoreError, RedisBucket, RedisStore};
use tollgate::{Error, ErrorKind, Policy, Registry, Source, Target};

conformance_suite!(#[tokio::test] => Redis::connect_cluster(module_path!()).await);

fn policy(s: &str) -> Policy {
    s.parse().unwrap()
}

/// A store on a private cluster that asks a lost master again soon.
async fn impatient(cluster: &PrivateCluster, test: &str) -> RedisStore {
    RedisStore::cluster_builder(cluster.urls())
        .prefix(redis_env::unique_prefix(test))
        .timeout(Duration::from_secs(1))
        .probe_every(Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

/// The first name `name(i)` whose keys live on master `master`.
fn name_on(
    cluster: &PrivateCluster,
    store: &RedisStore,
    master: usize,
    name: impl Fn(u32) -> String,
) -> String {
    (0..)
        .map(name)
        .find(|n| {
            let keys = store.bucket(n, &[]).unwrap().keys();
            cluster.master_of(&keys[0]) == master
        })
        .unwrap()
}

#[tokio::test]
async fn every_key_of_a_set_is_in_one_slot() {
    let Some(urls) = redis_env::redis_cluster_urls("one_slot") else {
        return;
    };
    let store = redis_env::connect_cluster(&urls, &redis_env::unique_prefix("one_slot")).await;
    assert!(store.is_cluster());
    let port: u16 = urls[0]
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let bucket = store
        .bucket(
            "api/a.test",
            &[policy("3/s"), policy("60/min"), policy("1000/h")],
        )
        .unwrap();
    // Every limit is taken in one script call, which a cluster refuses
    // (CROSSSLOT) unless the keys share a slot.
    assert!(bucket.try_acquire(1.0).await.unwrap().by_redis());
    let slots: Vec<String> = bucket
        .keys()
        .iter()
        .map(|k| {
            redis_cli(port, &["cluster", "keyslot", k])
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(slots.len(), 3);
    assert!(slots.iter().all(|s| s == &slots[0]), "{slots:?}");
}

/// A slot moves to another master while a set in it is used: during the
/// move the old master answers `ASK` for what it no longer holds, after it
/// `MOVED`; the client follows both, and the set's state moves with it.
#[tokio::test]
async fn moved_and_ask_are_followed_and_state_moves_with_the_slot() {
    let Some(_) = redis_env::redis_cluster_urls("moved_ask") else {
        return;
    };
    let cluster = PrivateCluster::start();
    let store = impatient(&cluster, "moved_ask").await;
    let name = name_on(&cluster, &store, 0, |i| format!("m{i}"));
    let bucket = store.bucket(&name, &[policy("1/min burst 2")]).unwrap();
    assert!(bucket.try_acquire(1.0).await.unwrap().by_redis());
    let key = &bucket.keys()[0];
    let slot = redis_cli(cluster.port(0), &["cluster", "keyslot", key]);
    let slot = slot.trim();
    let id = |i: usize| {
        redis_cli(cluster.port(i), &["cluster", "myid"])
            .trim()
            .to_string()
    };
    let (from, to) = (id(0), id(1));
    let (p_from, p_to) = (cluster.port(0), cluster.port(1));
    // The move begins: the key moves over, and the old master answers ASK
    // for it.
    assert!(redis_cli(p_to, &["cluster", "setslot", slot, "importing", &from]).contains("OK"));
    assert!(redis_cli(p_from, &["cluster", "setslot", slot, "migrating", &to]).contains("OK"));
    let moved = redis_cli(
        p_from,
        &["migrate", "127.0.0.1", &p_to.to_string(), key, "0", "5000"],
    );
    assert!(moved.contains("OK"), "MIGRATE: {moved}");
    // Redirected by ASK: one token left of the burst of two, then none.
    assert!(bucket.try_acquire(1.0).await.unwrap().by_redis());
    assert!(matches!(
        bucket.try_acquire(1.0).await,
        Err(e) if e.kind() == ErrorKind::RateLimited
    ));
    // The move ends: the old master answers MOVED.
    for port in [p_to, p_from, cluster.port(2)] {
        assert!(redis_cli(port, &["cluster", "setslot", slot, "node", &to]).contains("OK"));
    }
    assert_eq!(cluster.master_of(key), 1);
    assert!(matches!(
        bucket.try_acquire(1.0).await,
        Err(e) if e.kind() == ErrorKind::RateLimited
    ));
    bucket.defer_for(Duration::from_millis(1)).await.unwrap();
    assert!(!bucket.is_on_fallback());
    // The key lives on the new master only.
    assert_eq!(redis_cli(p_to, &["exists", key]).trim(), "1");
}

/// Admits once through `bucket`: whether Redis decided, or the error.
async fn admit(bucket: &RedisBucket) -> Result<bool, Error> {
    bucket.try_acquire(1.0).await.map(|a| a.by_redis())
}

/// One master dies: the sets in its slots follow their fail mode (fail
/// closed refuses with a store error, a local fallback admits), the sets
/// on the other masters keep deciding through Redis, a registry source's
/// per-host sets included; the master comes back empty, and everything
/// returns to Redis by itself.
#[tokio::test]
async fn losing_a_master_fails_only_the_sets_in_its_slots() {
    let Some(_) = redis_env::redis_cluster_urls("lose_master") else {
        return;
    };
    let mut cluster = PrivateCluster::start();
    let store = impatient(&cluster, "lose_master").await;
    let on = |master: usize, base: &'static str| {
        name_on(&cluster, &store, master, move |i| format!("{base}{i}"))
    };
    let closed = |name: &str| {
        store
            .bucket_with(name, &[policy("1000/s")], OnStoreError::FailClosed)
            .unwrap()
    };
    let local = |name: &str| {
        let mode = OnStoreError::Local { divide_by: 1 };
        store.bucket_with(name, &[policy("1000/s")], mode).unwrap()
    };
    let lost_closed = closed(&on(0, "c"));
    let lost_local = local(&on(0, "l"));
    let kept: Vec<RedisBucket> = vec![closed(&on(1, "c")), closed(&on(2, "c")), local(&on(1, "l"))];
    // A registry source with a set per host: one host on each side.
    let host_on = |master: usize| {
        let name = name_on(&cluster, &store, master, |i| format!("api/h{i}.test"));
        name.trim_start_matches("api/").to_string()
    };
    let (lost_host, kept_host) = (host_on(0), host_on(1));
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit(policy("1000/s"))
                .host("*.test")
                .per_host()
                .on_store_error(OnStoreError::FailClosed),
        )
        .redis(store.clone())
        .build()
        .unwrap();
    let via_registry = |host: String| {
        let r = registry.clone();
        async move {
            match r.admit(&Target::new(&host, None, "/"), 1.0)? {
                tollgate::Admission::Ready(p) => drop(p),
                tollgate::Admission::Wait(w) => drop(w.await?),
            }
            Ok::<(), Error>(())
        }
    };
    let everything_on_redis = || async {
        for b in [&lost_closed, &lost_local].into_iter().chain(&kept) {
            if admit(b).await.ok() != Some(true) {
                return false;
            }
        }
        via_registry(lost_host.clone()).await.is_ok()
            && via_registry(kept_host.clone()).await.is_ok()
    };
    assert!(everything_on_redis().await);

    cluster.kill(0);
    let t = Instant::now();
    for _ in 0..5 {
        let e = admit(&lost_closed).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Store, "{e:?}");
        let by_redis = admit(&lost_local).await.unwrap();
        assert!(!by_redis, "the local fallback admits");
        for b in &kept {
            let by_redis = admit(b).await.unwrap();
            assert!(by_redis, "{} decides through Redis", b.name());
        }
        let e = via_registry(lost_host.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Store, "{e:?}");
        via_registry(kept_host.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lost_closed.is_on_fallback() && lost_local.is_on_fallback());
    assert!(kept.iter().all(|b| !b.is_on_fallback()));
    // Each call to the lost master waits at most the timeout.
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // The error names the slot whose master is lost.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = admit(&lost_closed).await.unwrap_err().to_string();
    let slot = redis_cli(
        cluster.port(1),
        &["cluster", "keyslot", &lost_closed.keys()[0]],
    );
    let at = format!(
        "cannot connect to Redis at the master of slot {} of ",
        slot.trim()
    );
    assert!(
        e.contains(&at) && e.contains("(cluster): connection refused"),
        "{e}"
    );

    // A process that starts now connects through the masters that answer.
    let late = impatient(&cluster, "lose_master_late").await;
    let on_kept = late.bucket(kept[0].name(), &[policy("1000/s")]).unwrap();
    assert!(admit(&on_kept).await.unwrap());

    cluster.restart(0);
    let back = Instant::now();
    while !everything_on_redis().await {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back on Redis 5 s after the master rejoined"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "back on Redis {:?} after the master rejoined",
        back.elapsed()
    );
    assert!(!lost_closed.is_on_fallback() && !lost_local.is_on_fallback());
    // The master came back without the script: `EVAL` loaded it there.
    let sha = store.script_sha();
    let exists = redis_cli(cluster.port(0), &["script", "exists", sha]);
    assert_eq!(exists.trim(), "1");
}

/// Every master down, then back: a store connected before, and one set up
/// lazily while nothing answered, both return to Redis by themselves.
#[tokio::test]
async fn a_whole_cluster_down_and_back() {
    let Some(_) = redis_env::redis_cluster_urls("cluster_down") else {
        return;
    };
    let mut cluster = PrivateCluster::start();
    let early = impatient(&cluster, "cluster_down").await;
    let a = early
        .bucket_with("a", &[policy("1000/s")], OnStoreError::FailClosed)
        .unwrap();
    assert!(admit(&a).await.unwrap());
    for i in 0..3 {
        cluster.kill(i);
    }
    let late = RedisStore::cluster_builder(cluster.urls())
        .prefix(early.prefix())
        .timeout(Duration::from_secs(1))
        .probe_every(Duration::from_millis(50))
        .connect_lazy()
        .unwrap();
    let b = late
        .bucket_with("a", &[policy("1000/s")], OnStoreError::FailClosed)
        .unwrap();
    assert!(matches!(admit(&a).await, Err(e) if e.kind() == ErrorKind::Store));
    assert!(matches!(admit(&b).await, Err(e) if e.kind() == ErrorKind::Store));
    cluster.restart_all();
    let back = Instant::now();
    while admit(&a).await.ok() != Some(true) || admit(&b).await.ok() != Some(true) {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back on Redis 5 s after the cluster came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "back on Redis {:?} after the cluster came back",
        back.elapsed()
    );
}
