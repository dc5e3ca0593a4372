//! Coalesced takes: takes of one bucket set that arrive while a call for it
//! is on the way to Redis go together in the next call, and each gets the
//! slot (or the refusal) GCRA gives it one by one. Each test runs its own
//! `redis-server`, so that the server's command counts are the test's.
#![cfg(feature = "redis")]

use std::time::Duration;

#[path = "common/conformance.rs"]
mod conformance;
#[path = "common/redis.rs"]
mod redis_env;

use conformance::Model;
use futures_util::future::join_all;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use tollgate::redis::{RedisReservation, RedisStore};
use tollgate::{Error, Policy};

use redis_env::Raw;

/// How much later than Redis's own a refusal repeated without a round trip
/// may end (as in `tests/redis_conformance.rs`).
const LATE: u64 = 50_000_000;

fn wait_of(e: &Error) -> u64 {
    match e.retry_after() {
        Some(after) => after.as_nanos() as u64,
        None => panic!("expected a refusal, got {e:?}"),
    }
}

/// One case: a fresh bucket of `policies`; the first take calls alone, the
/// rest (and a last light one that may wait for ever, to read the batch's
/// now) arrive while it is on the way and go together.
async fn case(
    store: &RedisStore,
    raw: &mut Raw,
    name: &str,
    policies: &[Policy],
    takes: &[(f64, Duration)],
) -> Result<(), TestCaseError> {
    let b = store.bucket(name, policies).unwrap();
    let mut takes = takes.to_vec();
    takes.push((0.5, Duration::MAX));
    let before = redis_env::script_calls(raw).await;
    // One pass polls every future once, in order, before any answer is read.
    let results: Vec<Result<RedisReservation, Error>> =
        join_all(takes.iter().map(|&(w, max_wait)| b.reserve(w, max_wait))).await;
    // Kept at once: a reservation dropped on a failed check would give its
    // tokens back in a task, and that call would count in the next case.
    let results: Vec<Result<(u64, u64), u64>> = results
        .into_iter()
        .map(|r| match r {
            Ok(r) => {
                let times = (
                    r.issued_at().unwrap().as_nanos(),
                    r.ready_at().unwrap().as_nanos(),
                );
                r.commit();
                Ok(times)
            }
            Err(e) => Err(wait_of(&e)),
        })
        .collect();
    let calls = redis_env::script_calls(raw).await - before;
    prop_assert_eq!(calls, 2, "one call alone, one for the rest: {:?}", results);

    let (n0, slot0) = results[0].expect("a full bucket grants");
    prop_assert_eq!(slot0, n0);
    let (n1, _) = results.last().unwrap().expect("may wait for ever");
    let mut model = Model::new(policies);
    model.take_at(takes[0].0, n0);
    // No take of the batch granted yet.
    let mut head = true;
    for (i, ((w, max_wait), got)) in takes.iter().zip(&results).enumerate().skip(1) {
        let slot = model.slot(*w, n1);
        let wait = slot - n1;
        if u128::from(wait) <= max_wait.as_nanos() {
            match got {
                Ok((issued, at)) => {
                    prop_assert_eq!(*issued, n1, "take {} in the batch's call", i);
                    prop_assert_eq!(*at, slot, "take {}", i);
                }
                Err(w) => {
                    return Err(TestCaseError::fail(format!(
                        "take {i} refused for {w} ns, one by one granted at {slot}"
                    )))
                }
            }
            model.take_at(*w, slot);
            head = false;
        } else {
            match got {
                Ok((_, at)) => {
                    return Err(TestCaseError::fail(format!(
                        "take {i} granted at {at}, one by one refused for {wait} ns"
                    )))
                }
                // Exact from Redis; a take at the head of the batch that
                // the first call's answer already refuses hears it here,
                // counted on the local timer from that answer's arrival:
                // later by its travel, never earlier.
                Err(got) => prop_assert!(
                    *got == wait || (head && *got > wait && *got <= wait + LATE),
                    "take {}: refused for {} ns, one by one {} ns",
                    i,
                    got,
                    wait
                ),
            }
        }
    }
    Ok(())
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(vec![2.0, 3.0, 5.0]),
        prop::sample::select(vec![1.0, 2.0, 10.0, 50.0]),
    )
        .prop_map(|(c, r)| Policy::new(c, r).unwrap())
}

fn take() -> impl Strategy<Value = (f64, Duration)> {
    (
        prop::sample::select(vec![0.5, 1.0, 1.5, 2.0]),
        prop::sample::select(vec![
            Duration::ZERO,
            Duration::from_millis(50),
            Duration::from_millis(300),
            Duration::from_secs(2),
            Duration::MAX,
        ]),
    )
}

/// The property of the issue: for the same arrivals, coalesced takes get
/// the slots one-by-one takes get (so FIFO order and the window bound hold
/// as they do one by one), and a refused take is refused with the same
/// wait and takes nothing.
#[test]
fn coalesced_takes_get_the_slots_of_one_by_one() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some((_server, store, raw)) = runtime.block_on(redis_env::private_with_counts("coalesce"))
    else {
        return;
    };
    let mut runner = TestRunner::new(Config {
        cases: 64,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(policy(), 1..=2),
        take(),
        prop::collection::vec(take(), 1..=7),
    );
    let n = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&strategy, |(policies, first, rest)| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut takes = vec![first];
            takes.extend(rest);
            runtime.block_on(case(
                &store,
                &mut raw.clone(),
                &format!("case{n}"),
                &policies,
                &takes,
            ))
        })
        .unwrap();
}

/// Only the last reservation gives its tokens back, in a batch as one by
/// one: an earlier one was followed by others.
#[tokio::test]
async fn in_a_batch_only_the_last_reservation_refunds() {
    let Some((_server, store, mut raw)) = redis_env::private_with_counts("refund").await else {
        return;
    };
    let b = store
        .bucket("refund", &[Policy::new(1.0, 1.0).unwrap()])
        .unwrap();
    let before = redis_env::script_calls(&mut raw).await;
    let mut rs: Vec<RedisReservation> =
        join_all((0..4).map(|_| b.reserve(1.0, Duration::from_secs(10))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert_eq!(redis_env::script_calls(&mut raw).await - before, 2);
    let t0 = rs[0].ready_at().unwrap();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(
            r.ready_at().unwrap().as_nanos(),
            t0.as_nanos() + i as u64 * 1_000_000_000,
            "FIFO, one second apart"
        );
    }
    let last = rs.pop().unwrap();
    let third = rs.pop().unwrap();
    assert_eq!(
        third.cancel().await.unwrap(),
        0.0,
        "a later one depends on it"
    );
    assert_eq!(last.cancel().await.unwrap(), 1.0);
    for r in rs {
        r.commit();
    }
}

/// A take that goes away while it waits for the batch takes nothing: it is
/// left out of the call (or, gone during it, gives back what it was
/// granted).
#[tokio::test]
async fn a_take_dropped_while_it_waits_takes_nothing() {
    let Some((_server, store, _raw)) = redis_env::private_with_counts("dropped").await else {
        return;
    };
    let b = store
        .bucket("dropped", &[Policy::new(1.0, 1.0).unwrap()])
        .unwrap();
    let first = b.reserve(1.0, Duration::from_secs(10));
    let gone = b.reserve(1.0, Duration::from_secs(10));
    let mut gone = Box::pin(gone);
    // Polled once (it joins the batch behind the first), then dropped.
    let first = {
        let mut first = Box::pin(first);
        tokio::select! {
            biased;
            r = &mut first => r,
            _ = &mut gone => unreachable!("the second waits for the first"),
        }
    };
    drop(gone);
    let first = first.unwrap();
    // Nothing was taken for it: the next take gets the slot right after
    // the first, not a second later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = b.reserve(1.0, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        next.ready_at().unwrap().as_nanos(),
        first.ready_at().unwrap().as_nanos() + 1_000_000_000
    );
    first.commit();
    next.commit();
}
