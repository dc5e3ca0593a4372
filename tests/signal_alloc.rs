//! The pre-check every response passes through allocates nothing, and
//! neither does reading the plain-number dialects (GitHub's headers).
//! Counted by a global allocator, per thread, so tests running beside each
//! other do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};
use tollgate::signal::may_signal;
use tollgate::{Signal, SignalConfig};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn plain_200() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/json; charset=utf-8"),
        ("content-length", "1432"),
        ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("server", "nginx"),
        ("cache-control", "private, max-age=60"),
        ("etag", "\"5f3a-1b2c\""),
        ("vary", "Accept-Encoding"),
        ("x-request-id", "0b1c2d3e"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn the_pre_check_allocates_nothing() {
    // The counter counts.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![0u8; 16]))) >= 1);
    let plain = plain_200();
    let mut github = plain_200();
    github.insert("x-ratelimit-remaining", HeaderValue::from_static("4987"));
    let mut seen = (0, 0);
    let n = allocations_in(|| {
        for _ in 0..1_000 {
            seen.0 += usize::from(may_signal(StatusCode::OK, &plain));
            seen.1 += usize::from(may_signal(StatusCode::OK, &github));
        }
    });
    assert_eq!(n, 0);
    assert_eq!(seen, (0, 1_000));
    assert!(may_signal(StatusCode::TOO_MANY_REQUESTS, &plain));
    assert!(!may_signal(StatusCode::FORBIDDEN, &plain));
}

#[test]
fn reading_number_headers_allocates_nothing() {
    let mut h = plain_200();
    for (k, v) in [
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-used", "5000"),
        ("x-ratelimit-reset", "1700000042"),
        ("x-ratelimit-resource", "core"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let config = SignalConfig::default();
    let mut got = None;
    let n = allocations_in(|| got = Some(Signal::parse(StatusCode::FORBIDDEN, &h, now, &config)));
    let got = got.unwrap();
    assert_eq!(n, 0, "{got:?}");
    assert_eq!(got.retry_after, Some(Duration::from_secs(42)));
    assert!(got.limited);
}
