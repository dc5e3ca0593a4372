//! Registry behaviour on a manual clock: several limits at once, reject and
//! wait modes, in-flight caps, runtime policy changes, snapshots, presets.

use std::time::Duration;

use tokio_test::task;
use tollgate::{
    presets, Clock, Error, ErrorKind, ManualClock, OnLimit, Policy, Registry, Source, Target,
    UnknownHost,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn registry(sources: Vec<Source>) -> (Registry, ManualClock) {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(100));
    let r = Registry::builder()
        .sources(sources)
        .clock(clock.clone())
        .unknown_hosts(UnknownHost::Reject)
        .build()
        .unwrap();
    (r, clock)
}

fn target(uri: &str) -> http::Uri {
    uri.parse().unwrap()
}

fn retry_after(e: Error) -> Duration {
    e.as_rate_limited()
        .unwrap_or_else(|| panic!("{e:?}"))
        .retry_after()
}

#[tokio::test]
async fn several_limits_wait_for_the_later_slot_and_take_from_all() {
    let two = Source::new("two")
        .limit(Policy::per_second(2.0).unwrap())
        .limit(Policy::new(3.0, 0.5).unwrap())
        .host("two.test");
    let (r, clock) = registry(vec![two]);
    let src = r.source("two").unwrap();
    let start = clock.now();
    let mut slots = Vec::new();
    for _ in 0..4 {
        let mut fut = task::spawn(src.acquire(1.0));
        loop {
            if let std::task::Poll::Ready(p) = fut.poll() {
                slots.push(p.unwrap().admitted_at().saturating_duration_since(start));
                break;
            }
            clock.advance(ms(10));
        }
    }
    // 2/s gives 0, .5, 1.0; the burst of 3 at 1 per 2 s then holds the 4th to 2.0.
    assert_eq!(slots, [ms(0), ms(500), ms(1000), ms(2000)]);
}

#[test]
fn a_refusal_by_one_limit_takes_from_none() {
    let s = Source::new("s")
        .limit(Policy::new(2.0, 0.001).unwrap())
        .limit(Policy::per_second(1.0).unwrap())
        .host("s.test");
    let (r, clock) = registry(vec![s]);
    let uri = target("https://s.test/");
    let t = Target::from_uri(&uri);
    let _first = r.try_acquire(&t, 1.0).unwrap();
    let e = r.try_acquire(&t, 1.0).unwrap_err();
    assert_eq!(retry_after(e.clone()), Duration::from_secs(1));
    assert_eq!(e.as_rate_limited().unwrap().source(), Some("s"));
    clock.advance(Duration::from_secs(1));
    // The first limit still has its second token: the refusal took nothing.
    let _second = r.try_acquire(&t, 1.0).unwrap();
}

#[tokio::test]
async fn a_cancelled_wait_takes_from_none() {
    let s = Source::new("s")
        .limit(Policy::per_second(1.0).unwrap())
        .limit(Policy::per_second(2.0).unwrap())
        .host("s.test");
    let (r, clock) = registry(vec![s]);
    let src = r.source("s").unwrap();
    let start = clock.now();
    let _p = src.try_acquire(1.0).unwrap();
    let mut waiting = task::spawn(src.acquire(1.0));
    assert!(waiting.poll().is_pending());
    drop(waiting);
    let mut next = task::spawn(src.acquire(1.0));
    assert!(next.poll().is_pending());
    clock.advance(Duration::from_secs(1));
    match next.poll() {
        std::task::Poll::Ready(p) => {
            assert_eq!(p.unwrap().admitted_at(), start + Duration::from_secs(1))
        }
        std::task::Poll::Pending => panic!("the cancelled slot was not given back"),
    }
}

#[tokio::test]
async fn reject_mode_and_max_wait_refuse_with_the_exact_wait() {
    let reject = Source::new("reject")
        .limit(Policy::per_second(4.0).unwrap())
        .host("reject.test")
        .on_limit(OnLimit::Reject);
    let bounded = Source::new("bounded")
        .limit(Policy::per_second(4.0).unwrap())
        .host("bounded.test")
        .on_limit(OnLimit::Wait {
            max_wait: Some(ms(300)),
        });
    let (r, _clock) = registry(vec![reject, bounded]);
    let uri = target("https://reject.test/");
    let t = Target::from_uri(&uri);
    let _p = r.acquire(&t, 1.0).await.unwrap();
    let e = r.acquire(&t, 1.0).await.unwrap_err();
    assert_eq!(retry_after(e.clone()), ms(250));
    assert_eq!(
        e.to_string(),
        "rate limited by source `reject`: retry after 250ms"
    );

    let b = r.source("bounded").unwrap();
    let _p = b.acquire(1.0).await.unwrap();
    let mut within = task::spawn(b.acquire(1.0)); // slot at 250 ms: waits
    assert!(within.poll().is_pending());
    // The next slot is 500 ms away, beyond max_wait: refused, nothing taken.
    assert_eq!(retry_after(b.acquire(1.0).await.unwrap_err()), ms(500));
}

#[tokio::test]
async fn max_in_flight_is_held_until_the_permit_drops() {
    let s = Source::new("s")
        .limit(Policy::unlimited())
        .host("s.test")
        .max_in_flight(2);
    let r_reject = Source::new("r")
        .limit(Policy::unlimited())
        .host("r.test")
        .max_in_flight(1)
        .on_limit(OnLimit::Reject);
    let (r, _clock) = registry(vec![s, r_reject]);
    let src = r.source("s").unwrap();
    let a = src.acquire(1.0).await.unwrap();
    let _b = src.acquire(1.0).await.unwrap();
    let mut third = task::spawn(src.acquire(1.0));
    assert!(third.poll().is_pending());
    assert_eq!(r.snapshot()[0].buckets[0].in_flight, 2);
    drop(a);
    assert!(third.is_woken());
    assert!(third.poll().is_ready());

    let rej = r.source("r").unwrap();
    let _held = rej.try_acquire(1.0).unwrap();
    // A full in-flight cap is its own refusal: no exact time to retry at.
    let e = rej.acquire(1.0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InFlightFull, "{e:?}");
    assert_eq!((e.source_name(), e.in_flight_cap()), (Some("r"), Some(1)));
    assert_eq!(e.retry_after(), None);
}

#[test]
fn set_policy_keeps_levels_and_slow_down_scales_rates() {
    let (r, clock) = registry(vec![
        Source::new("a")
            .limit(Policy::new(10.0, 10.0).unwrap())
            .host("a.test"),
        Source::new("b")
            .limit(Policy::per_second(1.0).unwrap())
            .limit(Policy::per_minute(30.0).unwrap()),
    ]);
    let a = r.source("a").unwrap();
    let _p = a.try_acquire(4.0).unwrap();
    r.set_policy("a", Policy::new(20.0, 1.0).unwrap()).unwrap();
    assert!((a.available() - 6.0).abs() < 1e-9);

    let e = r
        .set_policy("b", Policy::per_second(5.0).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("give exactly 2 policies"), "{e}");
    let e = r
        .set_policy("zz", Policy::per_second(5.0).unwrap())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no source named `zz`; registered sources: [a, b]"
    );

    for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
        assert!(r.slow_down(bad).is_err(), "{bad}");
    }
    r.slow_down(0.5).unwrap();
    assert_eq!(a.limits()[0].tokens_per_second(), 0.5);
    let snap = r.snapshot();
    assert_eq!(snap[0].configured[0].tokens_per_second(), 1.0);
    assert_eq!(snap[0].limits[0].tokens_per_second(), 0.5);
    // Spend the level; the next token now comes at the slowed rate.
    let _p = a.try_acquire(6.0).unwrap();
    assert_eq!(
        retry_after(a.try_acquire(1.0).unwrap_err()),
        Duration::from_secs(2)
    );
    r.slow_down(1.0).unwrap();
    assert_eq!(
        retry_after(a.try_acquire(1.0).unwrap_err()),
        Duration::from_secs(1)
    );
    clock.advance(Duration::from_secs(1));
    let _p = a.try_acquire(1.0).unwrap();
}

#[test]
fn per_host_scope_gives_each_host_its_own_buckets() {
    let s = Source::new("crawl")
        .limit(Policy::per_second(1.0).unwrap())
        .host("*.crawl.test")
        .per_host();
    let (r, _clock) = registry(vec![s]);
    for host in ["a.crawl.test", "b.crawl.test", "c.crawl.test"] {
        let uri = target(&format!("https://{host}/"));
        let p = r.try_acquire(&Target::from_uri(&uri), 1.0).unwrap();
        assert_eq!(p.host(), Some(host));
        assert!(r.try_acquire(&Target::from_uri(&uri), 1.0).is_err());
    }
    assert_eq!(r.host_count("crawl").unwrap(), 3);
    let snap = &r.snapshot()[0];
    assert_eq!(snap.buckets.len(), 4, "the source-wide set and three hosts");
    assert!(snap.buckets[1..]
        .iter()
        .all(|b| b.available < 1.0 && b.ready_in > Duration::ZERO));
}

#[test]
fn bad_token_counts_through_the_registry() {
    let (r, _clock) = registry(vec![Source::new("s")
        .limit(Policy::new(2.0, 1.0).unwrap())
        .host("s.test")]);
    let s = r.source("s").unwrap();
    assert!(matches!(
        s.try_acquire(f64::NAN),
        Err(e) if e.kind() == ErrorKind::InvalidTokens
    ));
    assert!(matches!(
        s.try_acquire(3.0),
        Err(e) if e.kind() == ErrorKind::InsufficientCapacity
    ));
    assert!(matches!(
        s.try_acquire(-1.0),
        Err(e) if e.kind() == ErrorKind::InvalidTokens
    ));
}

#[test]
fn presets_route_their_hosts() {
    let r = Registry::builder()
        .source(presets::musicbrainz())
        .source(presets::discogs_authenticated())
        .source(presets::acoustid())
        .source(presets::anilist())
        .source(presets::jikan())
        .source(presets::mangadex())
        .source(presets::github())
        .source(presets::github_search())
        .unknown_hosts(UnknownHost::Reject)
        .build()
        .unwrap();
    for (uri, want) in [
        ("https://musicbrainz.org/ws/2/recording/x", "musicbrainz"),
        ("https://api.discogs.com/releases/1", "discogs"),
        ("https://api.acoustid.org/v2/lookup", "acoustid"),
        ("https://graphql.anilist.co/", "anilist"),
        ("https://api.jikan.moe/v4/anime/1", "jikan"),
        ("https://api.mangadex.org/manga", "mangadex"),
        ("https://api.github.com/repos/a/b", "github"),
        ("https://api.github.com/search/code", "github-search"),
    ] {
        let uri = target(uri);
        assert_eq!(r.source_for(&Target::from_uri(&uri)).unwrap(), Some(want));
    }
    assert!(Registry::builder()
        .source(presets::discogs_authenticated())
        .source(presets::discogs_unauthenticated())
        .build()
        .is_err());
}

#[test]
fn a_source_can_switch_a_signal_dialect_off() {
    use tollgate::signal::Dialect;
    use tollgate::SignalConfig;
    let deaf = Source::new("deaf")
        .limit(Policy::unlimited())
        .host("deaf.test")
        .signals(SignalConfig::default().without(Dialect::RetryAfter));
    let (r, _clock) = registry(vec![
        deaf,
        Source::new("hears")
            .limit(Policy::unlimited())
            .host("hears.test"),
    ]);
    let mut headers = http::HeaderMap::new();
    headers.insert("retry-after", http::HeaderValue::from_static("30"));
    for host in ["deaf.test", "hears.test"] {
        let p = r.try_acquire(&Target::new(host, None, "/"), 1.0).unwrap();
        p.observe(http::StatusCode::SERVICE_UNAVAILABLE, &headers);
    }
    let snap = r.snapshot();
    // Without the dialect, a 503 is only a bare refusal: the default wait.
    assert_eq!(
        snap[0].buckets[0].deferred_for,
        Some(SignalConfig::default().default_wait),
        "the deaf source ignored Retry-After"
    );
    assert_eq!(
        snap[1].buckets[0].deferred_for,
        Some(Duration::from_secs(30))
    );
    // A bad per-source setting is refused when the registry is built.
    let bad = Source::new("bad").signals(SignalConfig::default().with_safety(f64::NAN));
    assert!(Registry::builder().source(bad).build().is_err());
}
