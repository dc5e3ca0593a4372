//! A flood of a million distinct hosts through a per-host source stays
//! under the table's cap, in entries and in bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tollgate::{ManualClock, Policy, Registry, Source, Target, DEFAULT_MAX_HOSTS};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The documented budget: a per-host bucket set of one limit, its table
/// entry and its host name take well under 1 KiB.
const BYTES_PER_HOST: isize = 1024;

#[test]
fn a_million_hosts_stay_under_the_cap() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let registry = Registry::builder()
        .source(
            Source::new("crawl")
                .limit(Policy::per_second(10.0).unwrap())
                .host("*")
                .per_host(),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    let (mut admitted, mut peak_hosts, mut peak_bytes) = (0u64, 0, 0);
    let mut host = String::new();
    for i in 0..1_000_000u32 {
        host.clear();
        use std::fmt::Write;
        write!(host, "h{i}.flood.test").unwrap();
        if registry
            .try_acquire(&Target::new(&host, Some(443), "/"), 1.0)
            .is_ok()
        {
            admitted += 1;
        }
        // A million requests over ten simulated seconds.
        clock.advance(Duration::from_micros(10));
        if i % 10_000 == 0 {
            peak_hosts = peak_hosts.max(registry.host_count("crawl").unwrap());
            peak_bytes = peak_bytes.max(LIVE.load(Ordering::Relaxed) - before);
        }
    }
    let cap_bytes = DEFAULT_MAX_HOSTS as isize * BYTES_PER_HOST;
    println!(
        "1,000,000 hosts: {admitted} admitted, at most {peak_hosts} host sets kept, \
         {:.2} MiB at most (cap {} hosts, {:.2} MiB)",
        peak_bytes as f64 / 1048576.0,
        DEFAULT_MAX_HOSTS,
        cap_bytes as f64 / 1048576.0
    );
    assert!(peak_hosts <= DEFAULT_MAX_HOSTS, "{peak_hosts} host sets");
    assert!(peak_bytes <= cap_bytes, "{peak_bytes} bytes");
    // Idle sets were evicted and remade, so most hosts got their own bucket:
    // far more than the overflow set alone (10/s for 10 s) could admit.
    assert!(admitted > 500_000, "only {admitted} admitted");
    // Once everything is idle, the next sweep empties the table.
    clock.advance(Duration::from_secs(1));
    for i in 0..=DEFAULT_MAX_HOSTS {
        let h = format!("late{i}.flood.test");
        let _ = registry.try_acquire(&Target::new(&h, None, "/"), 1.0);
    }
    assert!(registry.host_count("crawl").unwrap() <= DEFAULT_MAX_HOSTS);
}
