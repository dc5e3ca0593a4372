//! [`Policy`]: how many tokens a bucket holds (its burst) and how fast it
//! refills, validated once so that every bucket built from it is sound.
//!
//! A policy is built from what API documentation says ("25 per minute",
//! "3 per second, bursts of 3", "at most 60 in any minute") and can be parsed
//! from the same words: `"25/min"`, `"3/s burst 3"`, `"60/min window"`.
//! It knows nothing of clocks or state; [`TokenBucket`](crate::TokenBucket)
//! turns it into integer nanoseconds.
//!
//! # Window bound
//!
//! With capacity `c` and rate `r`, requests of one token each admit at most
//! `c + ceil(r·W) − 1` in any half-open window of length `W`. So:
//!
//! * `Policy::per_minute(25.0)` (burst 1) sends at most 25 in any minute;
//! * `Policy::per_minute(25.0)?.burst(5.0)` keeps the rate and may send
//!   25 + 5 − 1 = 29 in a minute;
//! * [`Policy::window`]`(n, w)` picks the rate `(n − c + 1) / w`, so it sends at
//!   most `n` in any window `w` whatever its burst.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// The fastest rate a limited policy accepts: one token a nanosecond.
/// Anything faster is [`Policy::unlimited`].
pub const MAX_TOKENS_PER_SECOND: f64 = 1e9;
/// The longest emission interval a policy accepts (about 31.7 years a token),
/// which keeps every timestamp of a bucket inside 64 bits.
const MAX_INTERVAL_NANOS: f64 = 1e18;
/// The largest tolerance (`capacity × interval`) a policy accepts.
const MAX_TOLERANCE_NANOS: f64 = 4e18;

/// Capacity (burst) plus refill rate, or no limit at all.
///
/// Built only through validated constructors, so a `Policy` always describes
/// a bucket that can serve requests. See the [module docs](self) for the
/// window bound.
///
/// ```
/// use std::time::Duration;
/// use tollgate::Policy;
///
/// let mb: Policy = "1/s".parse()?;
/// assert_eq!(mb, Policy::per_second(1.0)?);
/// let jikan = Policy::per_second(3.0)?.burst(3.0)?;
/// assert_eq!(jikan.to_string(), "3/s burst 3");
/// let discogs = Policy::window(60, Duration::from_secs(60))?;
/// assert_eq!(discogs.max_in_window(Duration::from_secs(60)), 60.0);
/// assert!(Policy::per_second(0.0).is_err());
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Unlimited,
    Limited {
        /// Tokens per `period_secs` as the user wrote it (for display).
        amount: f64,
        period: Period,
        capacity: f64,
        /// `window(n, w)`: the rate is derived as `(n - capacity + 1) / w`.
        window: bool,
    },
}

/// A period as written: a count of a unit, so that `25/min` prints back as `25/min`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Period {
    count: f64,
    unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    fn seconds(self) -> f64 {
        match self {
            Unit::Second => 1.0,
            Unit::Minute => 60.0,
            Unit::Hour => 3600.0,
            Unit::Day => 86400.0,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Unit::Second => "s",
            Unit::Minute => "min",
            Unit::Hour => "h",
            Unit::Day => "d",
        }
    }
    fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "s" | "sec" | "secs" | "second" | "seconds" => Unit::Second,
            "m" | "min" | "mins" | "minute" | "minutes" => Unit::Minute,
            "h" | "hr" | "hour" | "hours" => Unit::Hour,
            "d" | "day" | "days" => Unit::Day,
            _ => return None,
        })
    }
}

impl Period {
    fn seconds(self) -> f64 {
        self.count * self.unit.seconds()
    }
    fn unit(unit: Unit) -> Period {
        Period { count: 1.0, unit }
    }
}

impl Policy {
    /// No limit: every request is admitted at once. A server's `Retry-After`
    /// still defers such a bucket (the limit is ours, the server's word is
    /// not), so a source with no limit of its own still backs off when told.
    pub const fn unlimited() -> Policy {
        Policy {
            kind: Kind::Unlimited,
        }
    }

    /// `capacity` tokens of burst, refilled at `tokens_per_second`.
    pub fn new(capacity: f64, tokens_per_second: f64) -> Result<Policy, Error> {
        let input = format!("Policy::new({capacity}, {tokens_per_second})");
        Self::limited(
            &input,
            tokens_per_second,
            Period::unit(Unit::Second),
            capacity,
            false,
        )
    }

    /// `n` tokens a second, burst 1.
    pub fn per_second(n: f64) -> Result<Policy, Error> {
        Self::limited(
            &format!("Policy::per_second({n})"),
            n,
            Period::unit(Unit::Second),
            1.0,
            false,
        )
    }

    /// `n` tokens a minute, burst 1: never more than `n` in any minute.
    pub fn per_minute(n: f64) -> Result<Policy, Error> {
        Self::limited(
            &format!("Policy::per_minute({n})"),
            n,
            Period::unit(Unit::Minute),
            1.0,
            false,
        )
    }

    /// `n` tokens an hour, burst 1: never more than `n` in any hour.
    pub fn per_hour(n: f64) -> Result<Policy, Error> {
        Self::limited(
            &format!("Policy::per_hour({n})"),
            n,
            Period::unit(Unit::Hour),
            1.0,
            false,
        )
    }

    /// At most `n` requests of one token in any window of length `window`,
    /// whatever the burst set later with [`burst`](Self::burst) (which must
    /// then be a whole number no larger than `n`).
    pub fn window(n: u32, window: Duration) -> Result<Policy, Error> {
        let input = format!("Policy::window({n}, {window:?})");
        let secs = window.as_secs_f64();
        if secs <= 0.0 {
            return Err(Error::policy(input, "the window must be longer than zero"));
        }
        let period = if secs % 3600.0 == 0.0 {
            Period {
                count: secs / 3600.0,
                unit: Unit::Hour,
            }
        } else if secs % 60.0 == 0.0 {
            Period {
                count: secs / 60.0,
                unit: Unit::Minute,
            }
        } else {
            Period {
                count: secs,
                unit: Unit::Second,
            }
        };
        Self::limited(&input, n as f64, period, 1.0, true)
    }

    /// The same rate (or, for a [`window`](Self::window) policy, the same
    /// window bound) with a burst of `capacity` tokens.
    pub fn burst(self, capacity: f64) -> Result<Policy, Error> {
        match self.kind {
            Kind::Unlimited => Err(Error::policy(
                format!("unlimited burst {capacity}"),
                "an unlimited policy has no burst; build a limited one first",
            )),
            Kind::Limited {
                amount,
                period,
                window,
                ..
            } => Self::limited(
                &format!("{self} burst {capacity}"),
                amount,
                period,
                capacity,
                window,
            ),
        }
    }

    fn limited(
        input: &str,
        amount: f64,
        period: Period,
        capacity: f64,
        window: bool,
    ) -> Result<Policy, Error> {
        let bad = |reason: String| Err(Error::policy(input, reason));
        if !amount.is_finite() || amount <= 0.0 {
            return bad(format!(
                "the number of tokens per period must be a finite number above zero, not {amount}; \
                 use Policy::unlimited() for no limit"
            ));
        }
        if !period.count.is_finite() || period.count <= 0.0 {
            return bad(format!(
                "the period must be a finite length above zero, not {}",
                period.count
            ));
        }
        if !capacity.is_finite() || capacity <= 0.0 {
            return bad(format!(
                "the burst must be a finite number above zero, not {capacity}"
            ));
        }
        if window {
            if capacity.fract() != 0.0 || capacity > amount {
                return bad(format!(
                    "a window policy's burst must be a whole number from 1 to {amount}, not {capacity}"
                ));
            }
            if amount.fract() != 0.0 {
                return bad(format!("a window counts whole requests, not {amount}"));
            }
        }
        let policy = Policy {
            kind: Kind::Limited {
                amount,
                period,
                capacity,
                window,
            },
        };
        let rate = policy.tokens_per_second();
        if rate > MAX_TOKENS_PER_SECOND {
            return bad(format!(
                "{rate} tokens a second is faster than the {MAX_TOKENS_PER_SECOND} a limited bucket \
                 can time; use Policy::unlimited()"
            ));
        }
        let interval = (1e9 / rate).ceil();
        if interval > MAX_INTERVAL_NANOS {
            return bad(format!(
                "{rate} tokens a second is too slow to time (one token every {interval} ns); \
                 use a rate of at least one token in 30 years"
            ));
        }
        let tau = (capacity * interval).floor();
        if tau > MAX_TOLERANCE_NANOS {
            return bad(format!(
                "a burst of {capacity} at this rate spans more than a century; lower the burst"
            ));
        }
        if tau < 1.0 {
            return bad(format!(
                "a burst of {capacity} is less than a nanosecond's worth of tokens; raise it"
            ));
        }
        Ok(policy)
    }

    /// Whether this is [`Policy::unlimited`].
    pub fn is_unlimited(&self) -> bool {
        matches!(self.kind, Kind::Unlimited)
    }

    /// The burst: how many tokens a full bucket holds. Infinite when unlimited.
    pub fn capacity(&self) -> f64 {
        match self.kind {
            Kind::Unlimited => f64::INFINITY,
            Kind::Limited { capacity, .. } => capacity,
        }
    }

    /// The refill rate. Infinite when unlimited.
    pub fn tokens_per_second(&self) -> f64 {
        match self.kind {
            Kind::Unlimited => f64::INFINITY,
            Kind::Limited {
                amount,
                period,
                capacity,
                window,
            } => {
                let tokens = if window {
                    amount - capacity + 1.0
                } else {
                    amount
                };
                tokens / period.seconds()
            }
        }
    }

    /// The amount per period as written: `"25/min"` is `(25, 60 s)`,
    /// `Policy::window(60, 1 min)` is `(60, 60 s)`, and a scaled policy is
    /// its rate per second. `None` when unlimited (or a period too long for
    /// a `Duration`). What a server announces as its quota
    /// (`RateLimit-Policy: q=…;w=…`).
    pub fn quota(&self) -> Option<(f64, Duration)> {
        match self.kind {
            Kind::Unlimited => None,
            Kind::Limited { amount, period, .. } => {
                Some((amount, Duration::try_from_secs_f64(period.seconds()).ok()?))
            }
        }
    }

    /// The emission interval `1 / rate` in whole nanoseconds, rounded up so
    /// the bucket is never looser than the policy. Zero when unlimited.
    pub fn interval_nanos(&self) -> u64 {
        if self.is_unlimited() {
            0
        } else {
            (1e9 / self.tokens_per_second()).ceil() as u64
        }
    }

    /// The tolerance `capacity × interval` in whole nanoseconds, rounded down
    /// so the bucket is never looser than the policy. Zero when unlimited.
    pub fn tolerance_nanos(&self) -> u64 {
        if self.is_unlimited() {
            0
        } else {
            (self.capacity() * self.interval_nanos() as f64).floor() as u64
        }
    }

    /// The most tokens of one-token requests this policy admits in any
    /// half-open window of length `window`: `c + ceil(r·W) − 1`.
    pub fn max_in_window(&self, window: Duration) -> f64 {
        if self.is_unlimited() {
            return f64::INFINITY;
        }
        let per_window = self.tokens_per_second() * window.as_secs_f64();
        // Guard the ceiling against the float error of a rate derived by division.
        let rounded = per_window.round();
        let steps = if (per_window - rounded).abs() < 1e-9 {
            rounded
        } else {
            per_window.ceil()
        };
        self.capacity() + steps.max(1.0) - 1.0
    }

    /// The same policy with its rate multiplied by `factor` (used to slow a
    /// source down); the burst is kept. `factor` must be in (0, 1].
    pub fn scaled(&self, factor: f64) -> Result<Policy, Error> {
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(Error::policy(
                format!("{self} scaled by {factor}"),
                "the factor must be above 0 and at most 1 (never faster than configured)",
            ));
        }
        if factor == 1.0 {
            return Ok(*self); // as written, window form included
        }
        match self.kind {
            Kind::Unlimited => Ok(*self),
            Kind::Limited { capacity, .. } => {
                Policy::new(capacity, self.tokens_per_second() * factor)
            }
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Unlimited => f.write_str("unlimited"),
            Kind::Limited {
                amount,
                period,
                capacity,
                window,
            } => {
                write!(f, "{amount}/")?;
                if period.count != 1.0 {
                    write!(f, "{}", period.count)?;
                }
                f.write_str(period.unit.symbol())?;
                if capacity != 1.0 {
                    write!(f, " burst {capacity}")?;
                }
                if window {
                    f.write_str(" window")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses `"1/s"`, `"25/min"`, `"5000/h"`, `"0.5/s"`, `"3/s burst 3"`,
/// `"100/15min"`, `"60/min window"` (at most 60 in any minute, see
/// [`Policy::window`]) and `"unlimited"`. Units: `s`, `min`, `h`, `d` and
/// their spelled-out forms.
impl FromStr for Policy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Policy, Error> {
        let input = s.trim();
        let err = |reason: &str| {
            Err(Error::policy(
                input,
                format!("{reason}; write it like \"25/min\", \"3/s burst 3\" or \"60/min window\""),
            ))
        };
        if input.eq_ignore_ascii_case("unlimited") {
            return Ok(Policy::unlimited());
        }
        if input.is_empty() {
            return err("the policy is empty");
        }
        let mut words = input.split_whitespace();
        let rate = words.next().unwrap_or_default();
        let Some((amount, per)) = rate.split_once('/') else {
            return err("missing `/` between the count and the period");
        };
        let Ok(amount) = amount.trim().parse::<f64>() else {
            return err(&format!("`{amount}` is not a number"));
        };
        let digits = per
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(per.len());
        let (count, unit) = per.split_at(digits);
        let count = if count.is_empty() {
            1.0
        } else {
            match count.parse::<f64>() {
                Ok(c) => c,
                Err(_) => return err(&format!("`{count}` is not a number")),
            }
        };
        let Some(unit) = Unit::parse(&unit.to_ascii_lowercase()) else {
            return err(&format!("unknown unit `{unit}` (use s, min, h or d)"));
        };
        let mut capacity = 1.0;
        let mut window = false;
        while let Some(word) = words.next() {
            match word.to_ascii_lowercase().as_str() {
                "burst" => {
                    let Some(c) = words.next() else {
                        return err("`burst` needs a number after it");
                    };
                    let Ok(c) = c.parse::<f64>() else {
                        return err(&format!("`{c}` is not a number"));
                    };
                    // Text configures request limits: below one token, no
                    // request could ever go.
                    if c > 0.0 && c < 1.0 {
                        return err(&format!(
                            "a burst of {c} admits no request of one token: use `burst 1` or more \
                             (for fractional tokens, build it in code with `Policy::new`)"
                        ));
                    }
                    capacity = c;
                }
                "window" => window = true,
                other => return err(&format!("unexpected `{other}`")),
            }
        }
        if !amount.is_finite() || !count.is_finite() {
            return err("numbers must be finite");
        }
        Policy::limited(input, amount, Period { count, unit }, capacity, window)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> serde::Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_api_docs_say() {
        let cases: &[(&str, f64, f64)] = &[
            ("1/s", 1.0, 1.0),
            ("25/min", 1.0, 25.0 / 60.0),
            ("5000/h", 1.0, 5000.0 / 3600.0),
            ("0.5/s", 1.0, 0.5),
            ("3/s burst 3", 3.0, 3.0),
            ("100/15min", 1.0, 100.0 / 900.0),
            ("60/min window", 1.0, 1.0),
            ("60/min burst 10 window", 10.0, 51.0 / 60.0),
            ("10/second", 1.0, 10.0),
            ("1/d", 1.0, 1.0 / 86400.0),
        ];
        for &(text, capacity, rate) in cases {
            let p: Policy = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.capacity(), capacity, "{text}");
            assert!((p.tokens_per_second() - rate).abs() < 1e-12, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "1/s",
            "25/min",
            "5000/h",
            "0.5/s",
            "3/s burst 3",
            "100/15min",
            "60/min burst 10 window",
            "unlimited",
        ] {
            let p: Policy = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
        }
    }

    #[test]
    fn rounding_is_stricter_never_looser() {
        let p = Policy::per_second(3.0).unwrap();
        assert_eq!(p.interval_nanos(), 333_333_334);
        let p = Policy::new(2.5, 3.0).unwrap();
        assert_eq!(p.tolerance_nanos(), 833_333_335);
        assert!(p.tolerance_nanos() as f64 <= 2.5 * 1e9 / 3.0 + 2.5);
    }

    #[test]
    fn window_bound() {
        let w = Duration::from_secs(60);
        assert_eq!(Policy::per_minute(25.0).unwrap().max_in_window(w), 25.0);
        assert_eq!(
            Policy::per_minute(25.0)
                .unwrap()
                .burst(5.0)
                .unwrap()
                .max_in_window(w),
            29.0
        );
        let p = Policy::window(60, w).unwrap().burst(10.0).unwrap();
        assert_eq!(p.max_in_window(w), 60.0);
        assert_eq!(p.capacity(), 10.0);
    }
}
