//! Every constructor and operation refuses bad input with a typed error whose
//! message says what to change: never a panic, a hang, or a silent default.

use std::time::Duration;

use tollgate::{Error, ErrorKind, ManualClock, Policy, TokenBucket};

fn policy_error(r: Result<Policy, Error>) -> String {
    match r {
        Err(e) if e.kind() == ErrorKind::InvalidPolicy => e.to_string(),
        other => panic!("expected InvalidPolicy, got {other:?}"),
    }
}

#[test]
fn constructors_refuse_bad_numbers() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let cases: Vec<(&str, Result<Policy, Error>, &str)> = vec![
        (
            "new capacity NaN",
            Policy::new(nan, 1.0),
            "burst must be a finite number above zero",
        ),
        (
            "new capacity 0",
            Policy::new(0.0, 1.0),
            "burst must be a finite number above zero",
        ),
        (
            "new capacity -1",
            Policy::new(-1.0, 1.0),
            "burst must be a finite number above zero",
        ),
        (
            "new capacity inf",
            Policy::new(inf, 1.0),
            "burst must be a finite number above zero",
        ),
        (
            "new rate 0",
            Policy::new(1.0, 0.0),
            "use Policy::unlimited()",
        ),
        (
            "new rate -1",
            Policy::new(1.0, -1.0),
            "finite number above zero",
        ),
        (
            "new rate NaN",
            Policy::new(1.0, nan),
            "finite number above zero",
        ),
        (
            "new rate inf",
            Policy::new(1.0, inf),
            "finite number above zero",
        ),
        (
            "new rate too fast",
            Policy::new(1.0, 2e9),
            "use Policy::unlimited()",
        ),
        ("new rate too slow", Policy::new(1.0, 1e-12), "too slow"),
        ("new burst too tiny", Policy::new(1e-12, 1.0), "raise it"),
        (
            "new burst too large",
            Policy::new(1e12, 1e-3),
            "lower the burst",
        ),
        ("per_second 0", Policy::per_second(0.0), "above zero"),
        ("per_second NaN", Policy::per_second(nan), "above zero"),
        ("per_minute -5", Policy::per_minute(-5.0), "above zero"),
        ("per_hour inf", Policy::per_hour(inf), "above zero"),
        (
            "window n 0",
            Policy::window(0, Duration::from_secs(1)),
            "above zero",
        ),
        (
            "window zero length",
            Policy::window(5, Duration::ZERO),
            "longer than zero",
        ),
        (
            "window burst above n",
            Policy::window(5, Duration::from_secs(1)).and_then(|p| p.burst(6.0)),
            "whole number from 1 to 5",
        ),
        (
            "window burst fraction",
            Policy::window(5, Duration::from_secs(1)).and_then(|p| p.burst(2.5)),
            "whole number",
        ),
        (
            "burst NaN",
            Policy::per_second(1.0).and_then(|p| p.burst(nan)),
            "burst must be",
        ),
        (
            "burst 0",
            Policy::per_second(1.0).and_then(|p| p.burst(0.0)),
            "burst must be",
        ),
        (
            "burst of unlimited",
            Policy::unlimited().burst(2.0),
            "build a limited one first",
        ),
        (
            "scaled 0",
            Policy::per_second(1.0).and_then(|p| p.scaled(0.0)),
            "never faster",
        ),
        (
            "scaled 1.5",
            Policy::per_second(1.0).and_then(|p| p.scaled(1.5)),
            "never faster",
        ),
        (
            "scaled NaN",
            Policy::per_second(1.0).and_then(|p| p.scaled(nan)),
            "never faster",
        ),
    ];
    for (name, result, hint) in cases {
        let msg = policy_error(result);
        assert!(msg.contains(hint), "{name}: `{msg}` lacks `{hint}`");
    }
}

#[test]
fn parsing_refuses_bad_text() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "missing `/`"),
        ("1/", "unknown unit"),
        ("/s", "is not a number"),
        ("x/s", "is not a number"),
        ("1/fortnight", "unknown unit `fortnight`"),
        ("1/s burst", "needs a number"),
        ("1/s burst x", "`x` is not a number"),
        ("1/s and more", "unexpected `and`"),
        ("1/s burst 2 junk", "unexpected `junk`"),
        ("NaN/s", "finite"),
        ("inf/s", "finite"),
        ("-1/s", "above zero"),
        ("0/s", "above zero"),
        ("1/0s", "above zero"),
        ("1/-1s", "unknown unit"),
        ("1e10/s", "unlimited"),
        ("1/s burst 0", "burst must be"),
        ("1/s burst -3", "burst must be"),
        ("5/min burst 6 window", "whole number from 1 to 5"),
        ("2.5/min window", "whole requests"),
    ];
    for (text, hint) in cases {
        let msg = policy_error(text.parse());
        assert!(msg.contains(hint), "{text:?}: `{msg}` lacks `{hint}`");
        assert!(
            msg.contains("write it like") || !text.is_empty(),
            "{text:?}: {msg}"
        );
    }
}

#[tokio::test]
async fn operations_refuse_bad_token_counts() {
    let clock = ManualClock::new();
    let bucket = TokenBucket::with_clock(Policy::new(2.0, 1.0).unwrap(), clock);
    for tokens in [
        0.0,
        -0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -f64::MIN_POSITIVE,
    ] {
        let check = |e: Error| assert_eq!(e.kind(), ErrorKind::InvalidTokens, "{tokens}: {e:?}");
        check(bucket.try_acquire(tokens).unwrap_err());
        check(bucket.reserve(tokens, Duration::MAX).unwrap_err());
        check(bucket.acquire(tokens).await.unwrap_err());
        check(bucket.acquire_blocking(tokens).unwrap_err());
    }
    for tokens in [2.000001, 3.0, 1e300] {
        let check = |e: Error| {
            assert!(
                e.kind() == ErrorKind::InsufficientCapacity,
                "{tokens}: {e:?}"
            );
            assert!(e.to_string().contains("raise the policy's burst"), "{e}");
        };
        // Never a wait: these return at once although the manual clock never moves.
        check(bucket.try_acquire(tokens).unwrap_err());
        check(bucket.reserve(tokens, Duration::MAX).unwrap_err());
        check(bucket.acquire(tokens).await.unwrap_err());
        check(bucket.acquire_blocking(tokens).unwrap_err());
    }
    // Nothing was taken by any refusal.
    bucket.try_acquire(2.0).unwrap();
}

#[test]
fn absurd_deferrals_saturate_instead_of_overflowing() {
    let clock = ManualClock::new();
    let bucket = TokenBucket::with_clock(Policy::per_second(1.0).unwrap(), clock.clone());
    bucket.defer_for(Duration::MAX);
    let e = bucket.try_acquire(1.0).unwrap_err();
    assert!(e.as_rate_limited().unwrap().retry_after() > Duration::from_secs(100 * 365 * 86400));
    assert!(bucket.reserve(1.0, Duration::from_secs(60)).is_err());
    assert_eq!(bucket.available(), 0.0);
}
