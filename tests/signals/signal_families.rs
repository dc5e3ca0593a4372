//! Header families a user declares, in code and in TOML: the shapes no
//! generic rule can tell apart (a reset in milliseconds whose values look
//! like seconds), read exactly; merged with the rest, the tightest winning;
//! checked with errors that say what to change.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tollgate::signal::{may_signal, Dialect, Dialects, HeaderFamily, ResetKind, Unit};
use tollgate::{ErrorKind, Registry, RegistryBuilder, Signal, SignalConfig, Target};

const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in lines {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn read(status: u16, lines: &[(&str, &str)], config: &SignalConfig) -> Signal {
    let status = StatusCode::from_u16(status).unwrap();
    Signal::parse(status, &headers(lines), now(), config)
}

fn foo_ms() -> HeaderFamily {
    HeaderFamily::new()
        .limit("x-foo-ratelimit-limit")
        .remaining("x-foo-ratelimit-remaining")
        .reset("x-foo-ratelimit-reset")
        .reset_unit(Unit::Milliseconds)
        .reset_kind(ResetKind::Delta)
}

/// `1500` meaning 1.5 s: by its size it is 1500 s (25 minutes), and no
/// rule can know otherwise.
const MS_LOOKS_LIKE_SECONDS: &[(&str, &str)] = &[
    ("x-foo-ratelimit-limit", "10"),
    ("x-foo-ratelimit-remaining", "0"),
    ("x-foo-ratelimit-reset", "1500"),
];

#[test]
fn a_reset_in_milliseconds_that_looks_like_seconds() {
    let long_cap = SignalConfig::default().with_max_wait(Duration::from_secs(3600));
    let generic = read(200, MS_LOOKS_LIKE_SECONDS, &long_cap);
    assert_eq!(generic.retry_after, Some(Duration::from_secs(1500)));
    assert_eq!(generic.dialects, Dialects::NONE.with(Dialect::Generic));

    let declared = read(200, MS_LOOKS_LIKE_SECONDS, &long_cap.with_family(foo_ms()));
    assert_eq!(declared.retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(declared.limit, Some(10.0));
    // The declared family reads its names alone: the generic rules do not
    // read them again as seconds.
    assert_eq!(declared.dialects, Dialects::NONE.with(Dialect::Declared));
}

#[test]
fn a_declared_family_can_take_a_built_in_name() {
    // A server that writes `x-ratelimit-reset` as a delta in milliseconds.
    let lines = [
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "30000"),
    ];
    assert_eq!(
        read(200, &lines, &SignalConfig::default()).retry_after,
        Some(Duration::from_secs(600)),
        "by size, 30000 s, capped"
    );
    let config = SignalConfig::default().with_family(
        HeaderFamily::new()
            .remaining("x-ratelimit-remaining")
            .reset("x-ratelimit-reset")
            .reset_unit(Unit::Milliseconds)
            .reset_kind(ResetKind::Delta),
    );
    let got = read(200, &lines, &config);
    assert_eq!(got.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(got.dialects, Dialects::NONE.with(Dialect::Declared));
}

#[test]
fn epoch_milliseconds_and_epoch_seconds_by_declaration() {
    let family = |unit| {
        HeaderFamily::new()
            .remaining("x-foo-left")
            .reset("x-foo-reset")
            .reset_unit(unit)
            .reset_kind(ResetKind::Epoch)
    };
    let ms = SignalConfig::default().with_family(family(Unit::Milliseconds));
    let got = read(
        429,
        &[("x-foo-left", "0"), ("x-foo-reset", "1700000002500")],
        &ms,
    );
    assert_eq!(got.retry_after, Some(Duration::from_millis(2500)));
    // An epoch in seconds below 10⁹ is still an epoch (long past: no wait)
    // when the family says so.
    let secs = SignalConfig::default().with_family(family(Unit::Seconds));
    let got = read(429, &[("x-foo-left", "0"), ("x-foo-reset", "5")], &secs);
    assert_eq!(got.retry_after, Some(Duration::ZERO));
}

#[test]
fn names_no_rule_knows_are_seen_by_the_config() {
    let config = SignalConfig::default().with_family(
        HeaderFamily::new()
            .remaining("x-foo-left")
            .reset("x-foo-wait")
            .retry_after("x-foo-backoff")
            .window(Duration::from_secs(10)),
    );
    let lines = [("x-foo-left", "0")];
    let map = headers(&lines);
    assert!(
        !may_signal(StatusCode::OK, &map),
        "no rule knows x-foo-left"
    );
    assert!(config.may_signal(StatusCode::OK, &map));
    // Exhausted, no reset: the declared window, flagged for escalation.
    let got = read(200, &lines, &config);
    assert_eq!(got.retry_after, Some(Duration::from_secs(10)));
    assert!(got.reset_unknown);
    // Its retry-after is read as `Retry-After` is, below the real one.
    let got = read(403, &[("x-foo-backoff", "7")], &config);
    assert_eq!(
        (got.retry_after, got.limited),
        (Some(Duration::from_secs(7)), true)
    );
    let got = read(
        429,
        &[("x-foo-backoff", "7"), ("retry-after", "3")],
        &config,
    );
    assert_eq!(got.retry_after, Some(Duration::from_secs(3)));
}

#[test]
fn the_tightest_of_declared_and_built_in_wins() {
    let config = SignalConfig::default().with_family(
        HeaderFamily::new()
            .limit("x-foo-limit")
            .remaining("x-foo-left")
            .window(Duration::from_secs(1)),
    );
    let got = read(
        200,
        &[
            ("x-foo-limit", "5"),
            ("x-foo-left", "3"),
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "20"),
        ],
        &config,
    );
    assert_eq!(got.remaining, Some(0.0));
    assert_eq!(got.limit, Some(5.0));
    assert_eq!(got.retry_after, Some(Duration::from_secs(20)));
    assert_eq!(got.quota.map(|q| q.per_second()), Some(5.0));
    let both = Dialects::NONE
        .with(Dialect::Declared)
        .with(Dialect::XRateLimit);
    assert_eq!(got.dialects, both);
}

#[test]
fn bad_families_are_refused_with_what_to_change() {
    let cases = [
        (HeaderFamily::new(), "names no header"),
        (HeaderFamily::new().remaining("X-Foo-Left"), "lowercase"),
        (HeaderFamily::new().remaining("a b"), "lowercase"),
        (HeaderFamily::new().remaining("x").reset("x"), "named twice"),
        (
            HeaderFamily::new().retry_after("retry-after"),
            "always read",
        ),
        (
            HeaderFamily::new().remaining("x").window(Duration::ZERO),
            "zero window",
        ),
    ];
    for (family, words) in cases {
        match SignalConfig::default()
            .with_family(family.clone())
            .validate()
        {
            Err(e) if e.kind() == ErrorKind::InvalidConfig => {
                let (location, reason) = (e.location().unwrap(), e.reason().unwrap());
                assert_eq!(location, "SignalConfig::families[0]");
                assert!(reason.contains(words), "{family:?}: {reason}");
            }
            other => panic!("{family:?}: {other:?}"),
        }
    }
    // A source with a bad family is refused when the registry is built.
    let bad = tollgate::Source::new("bad")
        .signals(SignalConfig::default().with_family(HeaderFamily::new()));
    assert!(Registry::builder().source(bad).build().is_err());
}

const TOML: &str = r#"
[[source]]
name = "foo"
limits = ["10/s"]
hosts = ["api.foo.example"]

[[source.headers]]
limit = "x-foo-ratelimit-limit"
remaining = "x-foo-ratelimit-remaining"
reset = "x-foo-ratelimit-reset"
reset_unit = "ms"
reset_kind = "delta"
window = "1s"
"#;

#[test]
fn toml_declares_a_family_for_its_source() {
    let registry = Registry::from_toml(TOML).unwrap();
    let permit = registry
        .try_acquire(&Target::new("api.foo.example", None, "/"), 1.0)
        .unwrap();
    let got = permit.observe(StatusCode::OK, &headers(MS_LOOKS_LIKE_SECONDS));
    assert_eq!(got.retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(got.dialects, Dialects::NONE.with(Dialect::Declared));
    assert_eq!(got.quota.map(|q| q.per_second()), Some(10.0));
}

#[test]
fn toml_families_round_trip() {
    let builder = RegistryBuilder::from_toml(TOML).unwrap();
    let text = builder.to_toml();
    assert!(text.contains("[[source.headers]]"), "{text}");
    assert!(text.contains("reset_unit = \"ms\""), "{text}");
    let again = RegistryBuilder::from_toml(&text).unwrap();
    assert_eq!(again.to_toml(), text);
}

#[test]
fn toml_errors_name_the_line_and_key() {
    let with = |line: &str| TOML.replace("window = \"1s\"", line);
    let cases = [
        (with("reset_unit2 = \"ms\""), "line 13", "reset_unit2"),
        (
            TOML.replace("\"ms\"", "\"minutes\""),
            "line 11",
            "reset_unit",
        ),
        (
            TOML.replace("\"delta\"", "\"later\""),
            "line 12",
            "reset_kind",
        ),
        (with("window = \"soon\""), "line 13", "window"),
        (
            TOML.replace("x-foo-ratelimit-remaining", "X-Foo"),
            "line 9",
            "remaining",
        ),
        (
            TOML.replace("x-foo-ratelimit-reset", "x-foo-ratelimit-limit"),
            "line 10",
            "reset",
        ),
    ];
    for (text, line, key) in cases {
        match RegistryBuilder::from_toml(&text) {
            Err(e) if e.kind() == ErrorKind::InvalidConfig => {
                let (location, reason) = (e.location().unwrap(), e.reason().unwrap());
                assert!(location.contains(line), "{location}: {reason}");
                assert!(location.contains(key), "{location}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}
