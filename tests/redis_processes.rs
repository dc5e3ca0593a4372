//! Four OS processes share one 50/s source (burst 1) through Redis for
//! 3 s: the union of their admissions, on Redis's clock, keeps the window
//! bound, and the total is within 1% of the ideal 50·3 + 1.
//!
//! The processes are this test binary itself, run again with
//! `--ignored --exact child_admits_until_the_end` and the run's settings in
//! environment variables.
#![cfg(feature = "redis")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
#[path = "common/redis.rs"]
mod redis_env;

use tollgate::{Policy, Timestamp};

const PROCESSES: usize = 4;
const RATE: f64 = 50.0;
const SECONDS: u64 = 3;
const CHILD: &str = "child_admits_until_the_end";

fn policy() -> Policy {
    Policy::per_second(RATE).unwrap()
}

#[tokio::test]
async fn four_processes_keep_the_window_bound_together() {
    let Some(url) = redis_env::redis_url("four_processes") else {
        return;
    };
    let prefix = redis_env::unique_prefix("processes");
    let store = redis_env::connect(&url, &prefix).await;
    let bucket = store.bucket("shared", &[policy()]).unwrap();
    // Nobody is admitted before the deferral ends and one is at it, so the
    // run starts then on Redis's clock however long the processes take to
    // start. It ends 3 s later: `end` is that or up to one round trip
    // after, less than one interval.
    let lead = Duration::from_millis(1500);
    let before = store.time().await.unwrap();
    bucket.defer_for(lead).await.unwrap();
    let after = store.time().await.unwrap();
    let end = after + lead + Duration::from_secs(SECONDS);

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    CHILD,
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("REDIS_URL", &url)
                .env("TOLLGATE_CHILD_PREFIX", &prefix)
                .env("TOLLGATE_CHILD_END", end.as_nanos().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();

    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|mut c| {
                // A child stops by itself soon after the end; never wait forever.
                let deadline = Instant::now() + Duration::from_secs(30);
                while c.try_wait().unwrap().is_none() {
                    if Instant::now() > deadline {
                        let _ = c.kill();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut out = String::new();
                c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                (c.wait().unwrap(), out)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();

    let mut admitted: Vec<(u64, f64)> = Vec::new();
    for (i, (status, out)) in outputs.iter().enumerate() {
        assert!(status.success(), "process {i} failed: {out}");
        let mine: Vec<(u64, u64)> = out
            .lines()
            // libtest may print `test NAME ... ` on the line before ours.
            .filter_map(|l| l.split_once("admitted ").map(|(_, rest)| rest))
            .map(|l| {
                let (slot, woke) = l.split_once(' ').unwrap();
                (slot.parse().unwrap(), woke.parse().unwrap())
            })
            .collect();
        assert!(!mine.is_empty(), "process {i} admitted nothing: {out}");
        for &(slot, woke) in &mine {
            // Each process slept on its own timer for Redis's difference:
            // it never went before its slot on Redis's clock.
            assert!(
                woke + 1_000_000 >= slot,
                "process {i} went at {woke}, slot {slot}"
            );
            admitted.push((slot, 1.0));
        }
    }
    admitted.sort_by_key(|a| a.0);
    let start = admitted[0].0;
    assert!(
        ((before + lead).as_nanos()..=(after + lead).as_nanos()).contains(&start),
        "the first admission is at the deferral's end"
    );
    assert!(admitted.last().unwrap().0 <= end.as_nanos());
    assert!(end.as_nanos() - start < SECONDS * 1_000_000_000 + 20_000_000);
    for ms in [1, 19, 20, 21, 100, 500, 999, 1000, 2000, 3000] {
        let w = Duration::from_millis(ms);
        let got = common::max_in_window(&admitted, w.as_nanos() as u64);
        let bound = policy().max_in_window(w);
        assert!(
            got <= bound,
            "{got} admitted in a window of {ms} ms; at most {bound}"
        );
    }
    let ideal = RATE * SECONDS as f64 + 1.0;
    let total = admitted.len() as f64;
    eprintln!("{PROCESSES} processes admitted {total} in {SECONDS} s (ideal {ideal})");
    assert!(
        (total - ideal).abs() <= ideal * 0.01,
        "{total} admitted in {SECONDS} s; ideal {ideal}"
    );
}

/// One of the four processes: acquires from the shared bucket until its
/// slot would pass the end, printing each slot and when it went (both on
/// Redis's clock). Runs only when the test above starts it.
#[tokio::test]
#[ignore = "a child process of four_processes_keep_the_window_bound_together"]
async fn child_admits_until_the_end() {
    let (Ok(url), Ok(prefix), Ok(end)) = (
        std::env::var("REDIS_URL"),
        std::env::var("TOLLGATE_CHILD_PREFIX"),
        std::env::var("TOLLGATE_CHILD_END"),
    ) else {
        panic!("run by four_processes_keep_the_window_bound_together only");
    };
    let end = Timestamp::from_nanos(end.parse().unwrap());
    let store = redis_env::connect(&url, &prefix).await;
    let bucket = store.bucket("shared", &[policy()]).unwrap();
    let give_up = Instant::now() + Duration::from_secs(20);
    while Instant::now() < give_up {
        let r = bucket.reserve(1.0, Duration::MAX).await.unwrap();
        let slot = r.ready_at().unwrap();
        if slot > end {
            r.cancel().await.unwrap();
            break;
        }
        r.wait().await;
        let woke = store.time().await.unwrap();
        println!("admitted {} {}", slot.as_nanos(), woke.as_nanos());
    }
}
