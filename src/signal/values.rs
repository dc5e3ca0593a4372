//! Scalar values as servers write them: counts, seconds, the epoch-or-delta
//! rule, `Retry-After`, Go durations (OpenAI) and ISO 8601 / RFC 3339 times
//! (Anthropic, Mastodon). Every function refuses what it does not recognise.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::family::{ResetKind, Unit};

/// A number of seconds at or above this is a UNIX timestamp, below it a
/// delta; see the [module docs](super#epoch-or-delta).
pub const EPOCH_THRESHOLD_SECS: u64 = 1_000_000_000;

/// A bare number at or above this (10¹²) is a UNIX timestamp in
/// milliseconds; see the [module docs](super#epoch-or-delta).
pub const EPOCH_THRESHOLD_MILLIS: u64 = 1_000_000_000_000;

/// `digits[.digits]` as an exact duration in seconds: the only number
/// syntax these headers use. Signs, exponents, `inf` and `NaN` are refused,
/// so Azure's `-1` ("unknown") is ignored. Whole seconds saturate (a
/// 30-digit wait is absurd, and the cap deals with it); fractions keep nine
/// digits.
fn decimal(v: &str) -> Option<Duration> {
    let (whole, frac) = match v.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (v, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    let secs = whole.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    let mut nanos = 0u32;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        nanos = nanos * 10 + d;
    }
    Some(Duration::new(secs, nanos))
}

/// A count (remaining, limit): a finite, non-negative decimal.
pub(super) fn count(v: &str) -> Option<f64> {
    decimal(v)?;
    let n: f64 = v.parse().ok()?;
    n.is_finite().then_some(n)
}

/// The wait until `at`: zero when it has passed; the longest wait when it
/// lies beyond what `SystemTime` holds (the cap then applies).
pub(super) fn until(at: Option<SystemTime>, now: SystemTime) -> Duration {
    match at {
        Some(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        None => Duration::MAX,
    }
}

/// Applies the size rule to a bare number (as a duration of that many
/// seconds): from 10¹² epoch milliseconds, from 10⁹ epoch seconds, below
/// that seconds from now.
pub(super) fn epoch_or_delta(secs: Duration, now: SystemTime) -> Duration {
    if secs.as_secs() >= EPOCH_THRESHOLD_MILLIS {
        until(UNIX_EPOCH.checked_add(secs / 1000), now)
    } else if secs.as_secs() >= EPOCH_THRESHOLD_SECS {
        until(UNIX_EPOCH.checked_add(secs), now)
    } else {
        secs
    }
}

/// A reset written as a number: epoch seconds or a delta, by size.
pub(super) fn reset(v: &str, now: SystemTime) -> Option<Duration> {
    decimal(v).map(|d| epoch_or_delta(d, now))
}

/// A reset as a family declares it: a number in `unit` that is a delta, an
/// epoch or either by size; a Go duration; or a date-time. `BySize` also
/// reads text as an ISO 8601 time or an HTTP-date, so that a generic family
/// reads every form a server may write.
pub(super) fn reset_as(v: &str, unit: Unit, kind: ResetKind, now: SystemTime) -> Option<Duration> {
    let number = || {
        let d = decimal(v)?;
        Some(match unit {
            Unit::Seconds => d,
            Unit::Milliseconds => d / 1000,
        })
    };
    let date = || {
        let at = timestamp(v).or_else(|| httpdate::parse_http_date(v).ok())?;
        Some(until(Some(at), now))
    };
    match kind {
        ResetKind::Delta => number(),
        ResetKind::Epoch => number().map(|d| until(UNIX_EPOCH.checked_add(d), now)),
        ResetKind::BySize => match unit {
            Unit::Seconds => reset(v, now).or_else(date),
            // Milliseconds: 10¹² ms is 31.7 years, so the same reasoning
            // splits epochs from deltas at 10¹² whatever the unit.
            Unit::Milliseconds => match decimal(v) {
                Some(d) if d.as_secs() >= EPOCH_THRESHOLD_MILLIS => {
                    until(UNIX_EPOCH.checked_add(d / 1000), now).into()
                }
                Some(d) => Some(d / 1000),
                None => date(),
            },
        },
        ResetKind::GoDuration => go_duration(v),
        ResetKind::Timestamp => date(),
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110), plus two forms
/// met in practice: fractional seconds and a UNIX timestamp (by size, in
/// seconds or milliseconds).
pub(super) fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if let Some(d) = decimal(v) {
        return Some(epoch_or_delta(d, now));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(until(Some(at), now))
}

/// Go's `time.Duration` text, as OpenAI writes its resets: `6m0s`, `1.5s`,
/// `12ms`, `1h2m3.5s`, `0`. Units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`; no
/// sign (a negative wait means nothing). A bare decimal is read as seconds,
/// as servers that copy OpenAI's header names sometimes write it.
pub(super) fn go_duration(v: &str) -> Option<Duration> {
    if let Some(d) = decimal(v) {
        return Some(d);
    }
    if v.is_empty() {
        return None;
    }
    let mut rest = v;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, tail) = rest.split_at(n);
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let unit_nanos: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        total = total.saturating_add(scaled(number, unit_nanos)?);
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).unwrap_or(u64::MAX);
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `number` (digits with at most one point, at least one digit) times
/// `unit` nanoseconds, exactly; fraction digits past the 18th are dropped.
fn scaled(number: &str, unit: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let whole = whole.bytes().fold(0u128, |n, b| {
        n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
    });
    let frac = &frac[..frac.len().min(18)];
    let (num, den) = frac.bytes().fold((0u128, 1u128), |(n, d), b| {
        (n * 10 + u128::from(b - b'0'), d * 10)
    });
    Some(whole.saturating_mul(unit).saturating_add(num * unit / den))
}

/// An ISO 8601 date-time in the forms servers write: RFC 3339's
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`T` and `Z` in either case, as
/// RFC 3339 §5.6 allows), and ISO 8601's reduced precision `THH:MMZ` and
/// offsets `±HHMM` and `±HH`. A time without an offset is refused: its zone
/// is unknown.
pub(super) fn timestamp(v: &str) -> Option<SystemTime> {
    let b = v.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = b.get(from..from + len)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":")) {
        return None;
    }
    // Seconds may be left out (ISO 8601 §4.2.2.3, reduced precision).
    let with_seconds = at(16, b":");
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let second = if with_seconds { num(17, 2)? } else { 0 };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = if with_seconds { 19 } else { 16 };
    let mut nanos = 0u32;
    if with_seconds && at(i, b".") {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for k in 0..9 {
            let d = if k < digits {
                u32::from(b[i + 1 + k] - b'0')
            } else {
                0
            };
            nanos = nanos * 10 + d;
        }
        i += 1 + digits;
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [_, _] => (num(i + 1, 2)?, 0),
                [_, _, b':', _, _] => (num(i + 1, 2)?, num(i + 4, 2)?),
                [_, _, _, _] => (num(i + 1, 2)?, num(i + 3, 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let before_month = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    // Leap years in [1, y]; euclidean division keeps it right for year 0.
    let leaps = |y: i64| y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400);
    let days = 365 * (year - 1970) + leaps(year - 1) - leaps(1969)
        + before_month[month as usize - 1]
        + i64::from(leap && month > 2)
        + day
        - 1;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let whole = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)?
    } else {
        UNIX_EPOCH.checked_sub(whole)?
    };
    t.checked_add(Duration::from_nanos(u64::from(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn decimals_are_exact_and_strict() {
        assert_eq!(decimal("1.123"), ms(1123));
        assert_eq!(decimal("0.0000000019"), Some(Duration::from_nanos(1)));
        assert_eq!(decimal("598.0"), ms(598_000));
        for bad in [
            "", "-1", "+1", "1e3", "inf", "NaN", ".5", "5.", "1.2.3", " 1", "0x10",
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
        assert_eq!(
            decimal("99999999999999999999999").unwrap().as_secs(),
            u64::MAX
        );
        assert_eq!(count("88.0"), Some(88.0));
        assert_eq!(count("-1"), None);
    }

    #[test]
    fn the_size_rule() {
        let secs = Duration::from_secs;
        assert_eq!(epoch_or_delta(secs(999_999_999), now()), secs(999_999_999));
        assert_eq!(epoch_or_delta(secs(NOW + 42), now()), secs(42));
        assert_eq!(
            epoch_or_delta(secs(EPOCH_THRESHOLD_SECS), now()),
            Duration::ZERO
        );
        assert_eq!(
            epoch_or_delta(secs(999_999_999_999), now()).as_secs(),
            999_999_999_999 - NOW
        );
        assert_eq!(epoch_or_delta(secs(NOW * 1000 + 42_000), now()), secs(42));
        assert_eq!(
            epoch_or_delta(Duration::new(NOW * 1000 + 1, 500_000_000), now()),
            Duration::from_micros(1500)
        );
        assert_eq!(
            epoch_or_delta(secs(EPOCH_THRESHOLD_MILLIS), now()),
            Duration::ZERO
        );
        assert!(epoch_or_delta(secs(u64::MAX), now()) > secs(600));
        assert_eq!(reset("1700000001.5", now()), ms(1500));
        assert_eq!(reset("1700000001500", now()), ms(1500));
    }

    #[test]
    fn retry_after_forms() {
        let at = |s: &str| retry_after(s, now());
        assert_eq!(at("120"), ms(120_000));
        assert_eq!(at("1.5"), ms(1500));
        assert_eq!(at("1700000030"), ms(30_000));
        assert_eq!(at("1700000030000"), ms(30_000));
        assert_eq!(at("Tue, 14 Nov 2023 22:13:50 GMT"), ms(30_000));
        assert_eq!(at("Tuesday, 14-Nov-23 22:13:50 GMT"), ms(30_000));
        assert_eq!(at("Tue Nov 14 22:13:50 2023"), ms(30_000));
        assert_eq!(at("Fri, 31 Dec 1999 23:59:59 GMT"), ms(0));
        for bad in ["-5", "soon", "", "1e3", "2023-11-14T22:13:50Z"] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("6m0s", 360_000),
            ("12ms", 12),
            ("1.5s", 1500),
            ("1h2m3.5s", 3_723_500),
            ("0", 0),
            ("0s", 0),
            ("20", 20_000),
            (".5s", 500),
            ("1000us", 1),
            ("1000µs", 1),
        ];
        for (text, want) in cases {
            assert_eq!(go_duration(text), ms(want), "{text}");
        }
        assert_eq!(go_duration("2ns"), Some(Duration::from_nanos(2)));
        for bad in ["", "s", "-1s", "1.2.3s", "1d", "1 s", "1sm", "ms5", "."] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
        let huge = go_duration("99999999999999999999999h").unwrap();
        assert_eq!(huge.as_secs(), u64::MAX);
    }

    #[test]
    fn iso8601_times() {
        let t = |s: &str| timestamp(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        let secs = |n: u64| Some(Duration::from_secs(n));
        assert_eq!(t("2023-11-14T22:13:20Z"), secs(NOW));
        assert_eq!(t("2023-11-14t22:13:20z"), secs(NOW));
        assert_eq!(t("2023-11-15T00:13:20+02:00"), secs(NOW));
        assert_eq!(t("2023-11-14T21:43:20-00:30"), secs(NOW));
        assert_eq!(t("2023-11-15T00:13:20+0200"), secs(NOW));
        assert_eq!(t("2023-11-15T00:13:20+02"), secs(NOW));
        assert_eq!(t("2023-11-14T22:13Z"), secs(NOW - 20));
        assert_eq!(t("2023-11-15T00:13+02:00"), secs(NOW - 20));
        assert_eq!(
            t("2023-11-14T22:13:20.25Z"),
            Some(Duration::new(NOW, 250_000_000))
        );
        assert_eq!(t("1970-01-01T00:00:00Z"), secs(0));
        assert_eq!(t("2000-03-01T00:00:00Z"), secs(951_868_800));
        assert_eq!(t("2024-02-29T00:00:00Z"), secs(1_709_164_800));
        assert_eq!(t("2100-03-01T00:00:00Z"), secs(4_107_542_400));
        assert_eq!(
            timestamp("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "2100-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20+0",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13",
            "2023-11-14T22:13.5Z",
            "2023-11-14T22Z",
            "2023-11-14T22:13:20Zjunk",
            "+2023-11-14T22:13:20Z",
            "2023-1a-14T22:13:20Z",
        ] {
            assert_eq!(timestamp(bad), None, "{bad:?}");
        }
    }
}
