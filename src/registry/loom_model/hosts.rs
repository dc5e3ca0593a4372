//! The per-host table under loom: a server's deferral arrives for one host
//! while a new host's insert sweeps the full table and the source's policy
//! changes, from three threads, through the registry's own calls.
//!
//! What every interleaving must keep:
//! * a set's deferral is never lost: the sweep keeps a set that someone
//!   holds (the permit whose response defers it) or that is deferred, so
//!   the host's next request is refused until the deferral ends;
//! * the version catch-up: a set made from the configuration before a
//!   policy change and inserted after the change visited the table follows
//!   the new policy all the same, as does every other set;
//! * the table stays within its capacity, and the idle set is the one
//!   swept.

use std::time::Duration;

use loom::thread;

use crate::registry::Registry;
use crate::sync::model;
use crate::{ManualClock, Policy, Signal, Source, Target};

/// A server's `Retry-After`.
const DEFERRAL: Duration = Duration::from_secs(5);

fn target(host: &str) -> Target<'_> {
    Target::new(host, None, "/")
}

/// Every set of source 0 (its overflow set and each host's) holds `policy`.
fn assert_policies(registry: &Registry, policy: Policy) {
    let state = &registry.inner.sources[0];
    assert_eq!(state.shared.policies(), [policy], "the overflow set");
    if let Some(table) = &state.hosts {
        table.for_each(|b| assert_eq!(b.policies(), [policy], "host {:?}", b.host));
    }
}

/// Hosts `a` (admitted: its permit is still held) and `c` (idle) fill a
/// table of two at a standstill. Then, at once: `a`'s response defers it;
/// a request for a new host `b` sweeps the table (only `c` may go) and
/// inserts `b`'s set, made from the configuration it read; and the
/// source's policy changes.
#[test]
fn loom_model_hosts_deferral_survives_a_sweep_and_a_policy_change() {
    model(
        "hosts_deferral_survives_a_sweep_and_a_policy_change",
        || {
            let (p1, p2) = (
                Policy::new(2.0, 1.0).expect("a valid policy"),
                Policy::new(1.0, 2.0).expect("a valid policy"),
            );
            let clock = ManualClock::new();
            clock.advance(Duration::from_secs(100));
            let registry = Registry::builder()
                .clock(clock.clone())
                .max_hosts(2)
                .source(Source::new("s").limit(p1).host("*").per_host())
                .build()
                .expect("a valid registry");
            let permit = registry
                .try_acquire(&target("a"), 1.0)
                .expect("a fresh set admits");
            drop(
                registry
                    .try_acquire(&target("c"), 1.0)
                    .expect("a fresh set admits"),
            );
            // Both sets full again, and the next sweep due.
            clock.advance(Duration::from_secs(10));
            assert_eq!(registry.host_count("s").unwrap(), 2);

            let response = thread::spawn(move || {
                permit.apply_signal(&Signal {
                    limited: true,
                    retry_after: Some(DEFERRAL),
                    ..Signal::default()
                });
                drop(permit);
            });
            let newcomer = {
                let registry = registry.clone();
                thread::spawn(move || {
                    drop(registry.try_acquire(&target("b"), 1.0));
                })
            };
            registry.set_policy("s", p2).expect("a valid change");
            response.join().unwrap();
            newcomer.join().unwrap();

            match registry.try_acquire(&target("a"), 1.0) {
                Err(e) if e.is_rate_limited() => assert!(
                    e.retry_after().unwrap() >= DEFERRAL - Duration::from_millis(1),
                    "deferred for {:?} only",
                    e.retry_after()
                ),
                Ok(_) => panic!("host a admitted during its deferral: the deferral was lost"),
                Err(e) => panic!("host a: {e}"),
            }
            assert!(registry.host_count("s").unwrap() <= 2);
            assert_policies(&registry, p2);
        },
    );
}
