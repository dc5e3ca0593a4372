//! Requests priced by method and path: GitHub's secondary limit of 900
//! points a minute admits 900 GETs or 180 POSTs in any minute, no more,
//! and any mix stays within 900 points; through both adapters' targets.

use std::time::Duration;

use http::Method;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tollgate::{presets, ManualClock, Policy, Price, Registry, Source, Target};

use crate::common;
use common::max_in_window;

const MINUTE: u64 = 60_000_000_000;

/// GitHub's secondary limit alone, as `presets::github()` carries it beside
/// the hourly quota (which, at burst 1, would bind first in these tests).
fn secondary() -> Source {
    Source::new("github")
        .priced_limit(
            Policy::window(900, Duration::from_secs(60))
                .unwrap()
                .burst(5.0)
                .unwrap(),
        )
        .price(Price::new().writes(5.0))
        .host("api.github.com")
}

fn github(clock: &ManualClock) -> Registry {
    Registry::builder()
        .source(secondary())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn the_github_preset_carries_the_secondary_limit_and_its_price() {
    let preset = presets::github();
    assert_eq!(preset.limits()[1], secondary().limits()[0]);
    // Writes cost 5 points against the secondary limit, 1 request against
    // the hourly quota: a POST is not refused for lack of a burst of 5 there.
    let clock = ManualClock::new();
    let registry = Registry::builder()
        .source(preset)
        .clock(clock)
        .build()
        .unwrap();
    let post = Method::POST;
    let target = Target::new("api.github.com", Some(443), "/repos/a/b/issues").with_method(&post);
    let _permit = registry.try_acquire(&target, 1.0).unwrap();
}

/// Tries a request every `step` for `span`, each with the method `pick`
/// chooses; returns (time, points) of the admitted ones.
fn drive(step: Duration, span: Duration, pick: impl Fn(u64) -> Method) -> Vec<(u64, f64)> {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let registry = github(&clock);
    let mut admitted = Vec::new();
    let steps = span.as_nanos() / step.as_nanos();
    for k in 0..steps as u64 {
        let method = pick(k);
        let points = if method == Method::GET { 1.0 } else { 5.0 };
        let target =
            Target::new("api.github.com", Some(443), "/repos/a/b/issues").with_method(&method);
        if registry.try_acquire(&target, 1.0).is_ok() {
            admitted.push((k * step.as_nanos() as u64, points));
        }
        clock.advance(step);
    }
    admitted
}

#[test]
fn nine_hundred_gets_a_minute_and_no_more() {
    let admitted = drive(Duration::from_millis(5), Duration::from_secs(180), |_| {
        Method::GET
    });
    assert_eq!(max_in_window(&admitted, MINUTE), 900.0);
}

#[test]
fn a_hundred_and_eighty_posts_a_minute_and_no_more() {
    let admitted = drive(Duration::from_millis(5), Duration::from_secs(180), |_| {
        Method::POST
    });
    assert_eq!(max_in_window(&admitted, MINUTE), 900.0, "in points");
    let posts: Vec<(u64, f64)> = admitted.iter().map(|(t, _)| (*t, 1.0)).collect();
    assert_eq!(max_in_window(&posts, MINUTE), 180.0);
}

#[test]
fn any_mix_stays_within_nine_hundred_points() {
    // A runner of our own rather than `proptest!`, which lets
    // PROPTEST_CASES (10,000 in CI, for the window-bound tests) override the
    // count: each case here simulates 90 seconds of traffic.
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(prop::collection::vec(any::<bool>(), 64), 2u64..20),
            |(writes, step_ms)| {
                let admitted = drive(
                    Duration::from_millis(step_ms),
                    Duration::from_secs(90),
                    |k| {
                        if writes[(k % 64) as usize] {
                            Method::POST
                        } else {
                            Method::GET
                        }
                    },
                );
                prop_assert!(max_in_window(&admitted, MINUTE) <= 900.0);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn the_longest_path_rule_wins_then_the_method_then_the_default() {
    let price = Price::new()
        .default_cost(2.0)
        .writes(5.0)
        .path("/search", 3.0)
        .path("/search/code", 4.0);
    assert_eq!(price.of(Some(&Method::GET), "/repos"), 2.0);
    assert_eq!(price.of(Some(&Method::POST), "/repos"), 5.0);
    assert_eq!(price.of(Some(&Method::POST), "/search/issues"), 3.0);
    assert_eq!(price.of(Some(&Method::GET), "/search/code"), 4.0);
    assert_eq!(
        price.of(Some(&Method::GET), "/searching"),
        2.0,
        "segment boundary"
    );
    assert_eq!(price.of(None, "/repos"), 2.0);
}

#[test]
fn a_price_above_a_limits_burst_is_refused_at_build() {
    let source = Source::new("s")
        .limit("10/s".parse().unwrap())
        .price(Price::new().writes(5.0))
        .host("s.test");
    let err = Registry::builder().source(source).build().unwrap_err();
    assert!(err.to_string().contains("raise its burst"), "{err}");
    let nan = Source::new("n")
        .host("n.test")
        .price(Price::new().default_cost(f64::NAN));
    assert!(Registry::builder().source(nan).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn the_tower_layer_prices_by_the_request_method() {
    use tower::{service_fn, Service, ServiceExt};
    let clock = tollgate::TokioClock::new();
    let registry = Registry::builder()
        .source(
            Source::new("api")
                .limit("1/s burst 5".parse().unwrap())
                .price(Price::new().writes(5.0))
                .host("api.test"),
        )
        .clock(clock)
        .build()
        .unwrap();
    let mut svc = tollgate::tower::RateLimitLayer::new(registry.clone()).layer_service(service_fn(
        |_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) },
    ));
    let start = tokio::time::Instant::now();
    let post = http::Request::post("https://api.test/x").body(()).unwrap();
    svc.ready().await.unwrap().call(post).await.unwrap();
    // The POST spent the whole burst of 5: a GET waits a second.
    let get = http::Request::get("https://api.test/x").body(()).unwrap();
    svc.ready().await.unwrap().call(get).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

trait LayerService<S> {
    fn layer_service(&self, inner: S) -> tollgate::tower::RateLimit<S>;
}

impl<S> LayerService<S> for tollgate::tower::RateLimitLayer {
    fn layer_service(&self, inner: S) -> tollgate::tower::RateLimit<S> {
        tower::Layer::layer(self, inner)
    }
}

/// Issue #19, item 12: `set_policy` skipped the price check `build()` makes;
/// after lowering the burst to 1 with writes priced at 5, every POST failed
/// with `InsufficientCapacity` for good. The change is refused instead, and
/// the source keeps its limit.
#[test]
fn a_policy_change_below_a_price_is_refused() {
    let clock = ManualClock::new();
    let registry = github(&clock);
    let e = registry
        .set_policy("github", Policy::per_minute(900.0).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("github") && e.contains('5'), "{e}");
    let post = Target::new("api.github.com", None, "/repos/x/issues").with_method(&Method::POST);
    let _sent = registry.try_acquire(&post, 1.0).unwrap();
    assert_eq!(registry.snapshot()[0].configured[0].capacity(), 5.0);
}
