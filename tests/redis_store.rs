//! What only the Redis store has to prove: one script called by `EVALSHA`
//! and reloaded after `NOSCRIPT`, keys under a hash tag that expire when the
//! bucket is full (never before a deferral ends), refusals that write
//! nothing, processes that disagree on the policy, a dead Redis that never
//! hangs a call, and bad settings refused with typed errors.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

#[path = "common/redis.rs"]
mod redis_env;

use ::redis::AsyncCommands;
use tollgate::redis::{OnStoreError, RedisStore};
use tollgate::{ErrorKind, Policy};

async fn setup(test: &str) -> Option<(RedisStore, ::redis::aio::MultiplexedConnection)> {
    let url = redis_env::redis_url(test)?;
    let store = redis_env::connect(&url, &redis_env::unique_prefix(test)).await;
    let raw = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Some((store, raw))
}

/// Calls of a command (`evalsha`, `eval`, ...) the server has counted.
async fn calls(raw: &mut ::redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn one_evalsha_per_call_and_reloaded_after_noscript() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("evalsha").await else {
        return;
    };
    let b = store
        .bucket("evalsha", &[Policy::new(100.0, 1000.0).unwrap()])
        .unwrap();
    let (evalsha, eval) = (
        calls(&mut raw, "evalsha").await,
        calls(&mut raw, "eval").await,
    );
    for _ in 0..5 {
        b.try_acquire(1.0).await.unwrap();
    }
    assert!(calls(&mut raw, "evalsha").await >= evalsha + 5);
    assert_eq!(
        calls(&mut raw, "eval").await,
        eval,
        "never the script's text"
    );

    // A server that lost its scripts (a restart, SCRIPT FLUSH) answers
    // NOSCRIPT; the store loads the script again and carries on.
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let exists: Vec<bool> = ::redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(store.script_sha())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, vec![false]);
    let admitted = b.try_acquire(1.0).await.unwrap();
    assert!(admitted.by_redis());
    let exists: Vec<bool> = ::redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(store.script_sha())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, vec![true]);
    assert!(!b.is_on_fallback());
}

#[tokio::test]
async fn keys_share_a_hash_tag_and_expire_when_the_bucket_is_full() {
    let Some((store, mut raw)) = setup("expiry").await else {
        return;
    };
    let b = store
        .bucket(
            "jikan",
            &[
                Policy::new(2.0, 10.0).unwrap(),
                Policy::new(5.0, 5.0).unwrap(),
            ],
        )
        .unwrap();
    let keys = b.keys();
    assert_eq!(
        keys,
        vec![
            format!("{}{{jikan}}:0", store.prefix()),
            format!("{}{{jikan}}:1", store.prefix())
        ]
    );
    for k in &keys {
        assert!(
            !raw.exists::<_, bool>(k).await.unwrap(),
            "a full bucket stores nothing"
        );
    }
    b.try_acquire(1.0).await.unwrap();
    // Full again after one interval of each limit: 100 ms and 200 ms.
    let ttl0: i64 = raw.pttl(&keys[0]).await.unwrap();
    let ttl1: i64 = raw.pttl(&keys[1]).await.unwrap();
    assert!((1..=100).contains(&ttl0), "{ttl0}");
    assert!((101..=200).contains(&ttl1), "{ttl1}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    for k in &keys {
        assert!(!raw.exists::<_, bool>(k).await.unwrap(), "{k} expired");
    }

    // A deferral keeps the key until it ends, even when the bucket is full.
    b.defer_for(Duration::from_secs(3)).await.unwrap();
    let ttl: i64 = raw.pttl(&keys[0]).await.unwrap();
    assert!(ttl >= 2_900, "{ttl}");
}

#[tokio::test]
async fn a_refused_call_writes_nothing() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("refused").await else {
        return;
    };
    let b = store
        .bucket("r", &[Policy::new(1.0, 1.0).unwrap()])
        .unwrap();
    b.try_acquire(1.0).await.unwrap();
    let key = &b.keys()[0];
    let before: String = raw.get(key).await.unwrap();
    let sets = calls(&mut raw, "set").await;
    for _ in 0..10 {
        assert!(b.try_acquire(1.0).await.is_err());
        assert!(b.reserve(1.0, Duration::from_millis(100)).await.is_err());
    }
    // Refused under another policy too: the rescale is computed, not stored.
    let other = store
        .bucket("r", &[Policy::new(1.0, 0.5).unwrap()])
        .unwrap();
    assert!(other.try_acquire(1.0).await.is_err());
    assert_eq!(calls(&mut raw, "set").await, sets);
    assert_eq!(raw.get::<_, String>(key).await.unwrap(), before);
}

#[tokio::test]
async fn no_policy_change_lowers_a_deferral() {
    let Some((store, _raw)) = setup("floor").await else {
        return;
    };
    let b = store
        .bucket("f", &[Policy::new(5.0, 2.0).unwrap()])
        .unwrap();
    b.defer_for(Duration::from_secs(3)).await.unwrap();
    for p in [
        Policy::new(5.0, 1000.0).unwrap(),
        Policy::unlimited(),
        Policy::new(1.0, 50.0).unwrap(),
    ] {
        b.set_policies(&[p]).await.unwrap();
        let wait = b.try_acquire(1.0).await.unwrap_err();
        let wait = wait.as_rate_limited().unwrap().retry_after();
        assert!(wait > Duration::from_millis(2_800), "{p}: {wait:?}");
    }

    // Nor does a refund: the deferral below comes after a reservation
    // that already reaches past it, and stays when that one is given back.
    let b = store
        .bucket("g", &[Policy::new(1.0, 1.0).unwrap()])
        .unwrap();
    b.try_acquire(1.0).await.unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    b.defer_for(Duration::from_millis(1500)).await.unwrap();
    assert_eq!(r.cancel().await.unwrap(), 1.0);
    let wait = b.try_acquire(1.0).await.unwrap_err();
    let wait = wait.as_rate_limited().unwrap().retry_after();
    assert!(wait > Duration::from_millis(1_400), "{wait:?}");
}

#[tokio::test]
async fn processes_with_other_policies_rescale_keeping_the_level() {
    let Some((store, _raw)) = setup("policies").await else {
        return;
    };
    // Two processes name one bucket with different policies: each call
    // rescales the stored state to the caller's policy, keeping its level.
    let a = store
        .bucket("shared", &[Policy::new(10.0, 1.0).unwrap()])
        .unwrap();
    let b = store
        .bucket("shared", &[Policy::new(20.0, 1.0).unwrap()])
        .unwrap();
    a.try_acquire(4.0).await.unwrap();
    let level = b.available().await.unwrap();
    assert!((6.0..6.1).contains(&level), "{level}");
    b.try_acquire(6.0).await.unwrap();
    let level = a.available().await.unwrap();
    assert!(level < 0.1, "{level}");
    // A reservation made before a policy change gives nothing back.
    let r = a.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    b.set_policies(&[Policy::new(20.0, 1.0).unwrap()])
        .await
        .unwrap();
    assert_eq!(r.cancel().await.unwrap(), 0.0);
    // Without a change in between, the last reservation comes back.
    let r = a.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.cancel().await.unwrap(), 1.0);
}

#[tokio::test]
async fn a_dropped_reservation_gives_its_tokens_back() {
    let Some((store, _raw)) = setup("drop").await else {
        return;
    };
    let b = store
        .bucket("d", &[Policy::new(1.0, 1.0).unwrap()])
        .unwrap();
    b.try_acquire(1.0).await.unwrap();
    let first = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    let slot = first.ready_at().unwrap();
    drop(first);
    // The refund runs in a task: let it reach Redis before reserving again
    // (a reservation made first would depend on the dropped one's tokens).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        again.ready_at(),
        Some(slot),
        "the dropped reservation was given back"
    );
    again.commit();
}

#[tokio::test]
async fn acquire_sleeps_for_redis_difference_on_the_local_timer() {
    let Some((store, _raw)) = setup("acquire").await else {
        return;
    };
    let b = store
        .bucket("a", &[Policy::per_second(10.0).unwrap()])
        .unwrap();
    let first = b.acquire(1.0).await.unwrap().at().unwrap();
    let start = Instant::now();
    let second = b.acquire(1.0).await.unwrap().at().unwrap();
    let waited = start.elapsed();
    assert_eq!(second.as_nanos() - first.as_nanos(), 100_000_000);
    assert!(waited >= Duration::from_millis(95), "{waited:?}");
    assert!(waited < Duration::from_millis(300), "{waited:?}");
    let after = store.time().await.unwrap();
    assert!(after >= second, "woke at {after}, slot {second}");
}

#[tokio::test]
async fn a_dead_redis_never_hangs_a_call() {
    // Runs without REDIS_URL: nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}/", redis_env::free_port());
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    let err = RedisStore::builder(&url)
        .timeout(timeout)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    let store = RedisStore::builder(&url)
        .timeout(timeout)
        .probe_every(Duration::from_millis(50))
        .connect_lazy()
        .unwrap();
    let p = [Policy::per_second(2.0).unwrap()];
    let closed = store.bucket("c", &p).unwrap();
    let open = store.bucket_with("o", &p, OnStoreError::FailOpen).unwrap();
    for _ in 0..5 {
        let start = Instant::now();
        let err = closed.try_acquire(1.0).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store, "{err}");
        assert!(
            err.to_string().contains("FailOpen"),
            "says what to change: {err}"
        );
        assert!(open.try_acquire(1.0).await.unwrap().at().is_none());
        assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());
    }
    assert!(closed.is_on_fallback() && open.is_on_fallback());
    assert!(matches!(closed.available().await, Err(e) if e.kind() == ErrorKind::Store));
    assert_eq!(open.available().await.unwrap(), f64::INFINITY);
    closed
        .set_policies(&[Policy::per_second(1.0).unwrap()])
        .await
        .unwrap();
    assert_eq!(closed.policies(), vec![Policy::per_second(1.0).unwrap()]);
}

#[tokio::test]
async fn bad_settings_are_typed_errors() {
    let store = RedisStore::builder("redis://127.0.0.1:1/")
        .connect_lazy()
        .unwrap();
    let p = [Policy::per_second(1.0).unwrap()];
    for name in ["", "a{b", "c}"] {
        assert!(
            matches!(store.bucket(name, &p), Err(e) if e.kind() == ErrorKind::InvalidConfig),
            "{name:?}"
        );
    }
    assert!(matches!(
        store.bucket_with("x", &p, OnStoreError::Local { divide_by: 0 }),
        Err(e) if e.kind() == ErrorKind::InvalidConfig
    ));
    for b in [
        RedisStore::builder("redis://127.0.0.1/").prefix("{p}:"),
        RedisStore::builder("redis://127.0.0.1/").timeout(Duration::ZERO),
        RedisStore::builder("http://127.0.0.1/"),
        RedisStore::builder("redis://127.0.0.1/")
            .on_store_error(OnStoreError::Local { divide_by: 0 }),
    ] {
        let err = b.connect_lazy().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    }
}

fn p(s: &str) -> Policy {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_cancelled_reservation_of_several_limits_leaves_each_as_it_was() {
    let Some((store, _raw)) = setup("cancel_several").await else {
        return;
    };
    // Limit 0 is fast, limit 1 slow: the slow one picks the slot, and the
    // fast one takes its share there, a second ahead.
    let both = store
        .bucket("x", &[p("10/s burst 4"), p("1/s burst 1")])
        .unwrap();
    let fast = store.bucket("x", &[p("10/s burst 4")]).unwrap(); // key {x}:0
    let _ = both.try_acquire(1.0).await.unwrap();
    let r = both.reserve(1.0, Duration::from_secs(2)).await.unwrap();
    assert!(r.delay() > Duration::from_millis(800), "{:?}", r.delay());
    assert_eq!(r.cancel().await.unwrap(), 1.0);
    // The fast limit is as the cancelled reservation found it: 3 tokens
    // (and a little refill), not empty until the abandoned slot.
    let left = fast.available().await.unwrap();
    assert!((3.0..=4.0).contains(&left), "{left}");
}

#[tokio::test]
async fn a_faster_limit_counts_from_the_slot_its_limits_chose() {
    let Some((store, _raw)) = setup("faster_from_slot").await else {
        return;
    };
    // Limit 0 (100/s burst 2) takes a reservation at the slot limit 1
    // (1/s) sets a second ahead, and gathers its tokens until then.
    let both = store
        .bucket("y", &[p("100/s burst 2"), p("1/s burst 1")])
        .unwrap();
    let _ = both.try_acquire(1.0).await.unwrap();
    let first = both.reserve(1.0, Duration::from_secs(2)).await.unwrap();
    let first_slot = first.ready_at().unwrap();
    first.commit();
    // Limit 0 ten times faster: its level counts from that slot (one token
    // left there), so two more tokens come 1 ms after it. Counted from now,
    // it would be full at the slot and hand out 2 more there (3 at once
    // under a burst of 2).
    both.set_policies(&[p("1000/s burst 2"), p("1/s burst 1")])
        .await
        .unwrap();
    let fast = store.bucket("y", &[p("1000/s burst 2")]).unwrap();
    let next = fast.reserve(2.0, Duration::from_secs(2)).await.unwrap();
    let next_slot = next.ready_at().unwrap();
    next.commit();
    assert!(
        next_slot > first_slot,
        "{:?} after the first",
        next_slot.saturating_duration_since(first_slot)
    );
}

/// A deferral as far ahead as can be said (`Duration::MAX`, past what
/// nanoseconds since 1970 hold in a `u64`) refuses every later take, under
/// every fail mode, and never turns into a store error (which would fail
/// open, or say Redis is down when it is not).
#[tokio::test]
async fn a_far_future_deferral_refuses_and_never_fails_open() {
    let Some(url) = redis_env::redis_url("far_future") else {
        return;
    };
    let prefix = redis_env::unique_prefix("far_future");
    let modes = [
        OnStoreError::FailOpen,
        OnStoreError::FailClosed,
        OnStoreError::Local { divide_by: 1 },
    ];
    let century = Duration::from_secs(99 * 365 * 86_400);
    for (i, mode) in modes.into_iter().enumerate() {
        let store = RedisStore::builder(url.as_str())
            .prefix(prefix.as_str())
            .timeout(Duration::from_secs(2))
            .on_store_error(mode)
            .connect()
            .await
            .unwrap();
        let b = store.bucket(&format!("far{i}"), &[p("10/s")]).unwrap();
        b.defer_for(Duration::MAX).await.unwrap();
        for _ in 0..3 {
            match b.try_acquire(1.0).await {
                Err(e) if e.is_rate_limited() => {
                    assert!(e.retry_after().unwrap() > century, "{e:?}")
                }
                other => panic!("{mode:?}: {other:?} after a deferral of Duration::MAX"),
            }
            match b.reserve(1.0, Duration::from_secs(3600)).await {
                Err(e) if e.kind() == ErrorKind::RateLimited => {}
                other => panic!("{mode:?}: {other:?}"),
            }
        }
        assert!(b.available().await.unwrap() < 1.0, "{mode:?}");
        assert!(!b.is_on_fallback(), "{mode:?}: Redis answered every call");
    }
}

/// A stored time too far ahead to read as nanoseconds (as a deferral of
/// `Duration::MAX` wrote before times were capped) is a refusal too.
#[tokio::test]
async fn a_stored_slot_too_far_ahead_to_decode_is_a_refusal() {
    let Some((store, mut raw)) = setup("undecodable").await else {
        return;
    };
    let b = store.bucket("u", &[p("10/s")]).unwrap();
    b.try_acquire(1.0).await.unwrap();
    let key = &b.keys()[0];
    let stored: String = raw.get(key).await.unwrap();
    let mut fields: Vec<&str> = stored.split(' ').collect();
    // 10^11 s after 1970: 10^20 ns, past u64::MAX.
    fields[0] = "100000000000";
    fields[2] = "100000000000";
    let _: () = raw.set(key, fields.join(" ")).await.unwrap();
    for _ in 0..3 {
        assert!(
            matches!(b.try_acquire(1.0).await, Err(e) if e.kind() == ErrorKind::RateLimited),
            "refused, not a store error"
        );
    }
    assert!(!b.is_on_fallback());
}
