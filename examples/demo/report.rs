//! The plain-text report: one row per configured source, then notes, then
//! the learning source's lines (`learning: ..`), then the line
//! `violations: N` that CI greps, which counts the configured sources only.

use std::fmt::Write as _;
use std::time::Duration;

use tollgate::Policy;

use crate::upstream::Outcome;

/// One source's row.
#[derive(Clone, Debug)]
pub struct Row {
    /// Source name.
    pub name: String,
    /// The API's limits (what the demo configures when limits are on).
    pub policies: Vec<Policy>,
    /// Attempts that passed the limiter and reached the server (for
    /// `local-files`: tag reads).
    pub sent: u64,
    /// Requests the server admitted and answered 200.
    pub ok: u64,
    /// Requests the server refused for going over its limit (429/503).
    pub violations: u64,
    /// Attempts the retry layer made after a call's first.
    pub retries: u64,
    /// Mean wait of an attempt inside the rate-limit layer.
    pub mean_wait: Duration,
    /// Longest such wait.
    pub max_wait: Duration,
}

/// The long-run rate the policies allow (the slowest), per second.
pub fn policy_rate(policies: &[Policy]) -> f64 {
    policies
        .iter()
        .map(Policy::tokens_per_second)
        .fold(f64::INFINITY, f64::min)
}

/// The most requests the policies admit from a start with full buckets up
/// to `t` seconds later, both ends included: the envelope `capacity +
/// rate·t` taken down to whole requests, the tightest policy winning.
pub fn allowed_by(policies: &[Policy], t: f64) -> f64 {
    policies
        .iter()
        .map(|p| p.capacity() + (p.tokens_per_second() * t + 1e-9).floor())
        .fold(f64::INFINITY, f64::min)
}

/// A duration in the unit that reads best.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn number(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "∞".to_string()
    }
}

fn policies_text(policies: &[Policy]) -> String {
    if policies.is_empty() {
        return "unlimited".to_string();
    }
    policies
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// How a source's limit is described in the header lines.
pub fn allowed_text(policies: &[Policy], limits_on: bool) -> String {
    let text = policies_text(policies);
    if limits_on {
        format!("limit {text}")
    } else {
        format!("API limit {text}, not enforced by the client")
    }
}

/// How the learning source is described in the header lines.
pub fn learning_text(true_limit: Policy, limits_on: bool) -> String {
    if limits_on {
        format!("no limit configured, learns one (the server's: {true_limit}, unannounced)")
    } else {
        format!("API limit {true_limit} (unannounced), not learned")
    }
}

/// How long a learning source is given to find its rate before its
/// refusals are held to the mark (under 5 %).
pub const SETTLING: Duration = Duration::from_secs(10);

/// When a source's first `settle` ends, in seconds since the start: that
/// long after its first answer in `events` (seconds since the start,
/// outcome).
pub fn settled_from(events: &[(f64, Outcome)], settle: Duration) -> Option<f64> {
    Some(events.first()?.0 + settle.as_secs_f64())
}

/// A learning source's answers after its settling time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct After {
    /// Requests the server answered.
    pub requests: u64,
    /// Of them, refused.
    pub refused: u64,
    /// Of them, answered 200.
    pub ok: u64,
    /// How long the span lasted, to the end of the run.
    pub seconds: f64,
}

/// Of `events`, those from `from` on, in a run that lasted `end` seconds.
/// `None` when there are none (a run too short to tell).
pub fn after(events: &[(f64, Outcome)], from: f64, end: f64) -> Option<After> {
    let later: Vec<_> = events.iter().filter(|(t, _)| *t >= from).collect();
    if later.is_empty() {
        return None;
    }
    let count = |outcome| later.iter().filter(|(_, o)| *o == outcome).count() as u64;
    Some(After {
        requests: later.len() as u64,
        refused: count(Outcome::Violation),
        ok: count(Outcome::Ok),
        seconds: end - from,
    })
}

/// The mean of the rates sampled (evenly) from `from` on, where the
/// controller was on.
pub fn mean_after(samples: &[(f64, Option<f64>)], from: f64) -> Option<f64> {
    let rates: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= from)
        .filter_map(|(_, r)| *r)
        .collect();
    (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
}

/// What the learning source did, for its own lines.
#[derive(Clone, Debug)]
pub struct Learning {
    /// Source name.
    pub name: String,
    /// Whether it learned (not with `--no-limits`).
    pub learning: bool,
    /// The server's limit, which it never announced.
    pub true_limit: Policy,
    /// Requests the server answered.
    pub requests: u64,
    /// Of them, answered 200.
    pub ok: u64,
    /// Of them, refused with a bare 429.
    pub refused: u64,
    /// Requests and refusals after the source's first [`SETTLING`].
    pub after: Option<After>,
    /// The adaptive controller's rate at the end, if it started.
    pub learned: Option<f64>,
    /// Its mean after the source's first [`SETTLING`].
    pub learned_mean: Option<f64>,
    /// The run.
    pub elapsed: Duration,
    /// Mean wait of an attempt inside the rate-limit layer.
    pub mean_wait: Duration,
}

fn percent(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// The learning source's lines, each starting `learning:`.
pub fn learning(l: &Learning) -> String {
    let settle = SETTLING.as_secs();
    let after = match l.after {
        Some(a) => format!(
            "after its first {settle} s, {} refused of {} ({:.1} %), {} ok/s",
            a.refused,
            a.requests,
            percent(a.refused, a.requests),
            number(a.ok as f64 / a.seconds.max(1e-9), 2)
        ),
        None => format!("nothing after its first {settle} s (a shorter run)"),
    };
    let limit = l.true_limit.tokens_per_second();
    let learned = match (l.learning, l.learned) {
        (false, _) => "not learning (--no-limits)".to_string(),
        (true, None) => "learned no rate (no refusal started the controller)".to_string(),
        // The controller keeps probing above what it found and cutting
        // back, so its rate at the end is one point of an oscillation; its
        // mean after the settling time says where it converged.
        (true, Some(rate)) => {
            let (shown, text) = match l.learned_mean {
                Some(mean) => (
                    mean,
                    format!(
                        "{}/s on average after its first {settle} s ({}/s at the end)",
                        number(mean, 1),
                        number(rate, 1)
                    ),
                ),
                None => (rate, format!("{}/s by the end", number(rate, 1))),
            };
            format!(
                "learned {text}, {} the server's unannounced {}/s",
                // Compared as printed, so that "8.0/s above 8/s" cannot be.
                match number(shown, 1).parse::<f64>().unwrap_or(shown) {
                    r if r < limit => "under",
                    r if r > limit => "above",
                    _ => "at",
                },
                number(limit, 0)
            )
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "learning: {}, {} requests: {} refused ({:.1} %); {after}",
        l.name,
        l.requests,
        l.refused,
        percent(l.refused, l.requests)
    );
    let _ = writeln!(
        out,
        "learning: {} {learned}; {} ok/s overall, wait mean {}",
        l.name,
        number(l.ok as f64 / l.elapsed.as_secs_f64().max(1e-9), 2),
        human(l.mean_wait)
    );
    out
}

/// Renders the table for a run of `elapsed`; `limits_on` says whether the
/// limiter enforced the policies (otherwise they are shown as the APIs'
/// limits the run ignored).
pub fn table(rows: &[Row], elapsed: Duration, limits_on: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let header = [
        "source",
        if limits_on {
            "policy"
        } else {
            "API limit (off)"
        },
        "sent",
        "ok",
        "violations",
        "retries",
        "ok/s",
        "limit/s",
        "allowed",
        "wait mean",
        "wait max",
    ];
    let mut cells: Vec<[String; 11]> = vec![header.map(str::to_string)];
    for r in rows {
        cells.push([
            r.name.clone(),
            policies_text(&r.policies),
            r.sent.to_string(),
            r.ok.to_string(),
            r.violations.to_string(),
            r.retries.to_string(),
            number(r.ok as f64 / secs, 2),
            number(policy_rate(&r.policies), 2),
            number(allowed_by(&r.policies, secs), 0),
            human(r.mean_wait),
            human(r.max_wait),
        ]);
    }
    let mut widths = [0usize; 11];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let mut line = String::new();
        for (j, (c, w)) in row.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if j < 2 {
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            }
            line.push_str("  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    out
}

/// What the columns mean, printed under the table.
/// The legend under the table, for a run with limits (`limits_on`) or
/// without.
pub fn legend(limits_on: bool) -> &'static str {
    if limits_on {
        LEGEND_LIMITS
    } else {
        LEGEND_NO_LIMITS
    }
}

const LEGEND_LIMITS: &str = "\
sent: attempts that passed the limiter and reached the server. ok, violations: what the server
counted (200; 503/429 for going over its limit). ok/s: ok / elapsed. limit/s, allowed: the
client policy's long-run rate and the most it admits in the elapsed time (capacity + rate*t,
whole requests); an API's own moving window may admit a burst beyond that (Discogs: 25 at once).
wait: time an attempt spent inside the rate-limit layer before it went to the HTTP client.";

const LEGEND_NO_LIMITS: &str = "\
sent: attempts that reached the server, with no client limit and no retries. ok, violations:
what the server counted (200; 503/429 for going over its limit). ok/s: ok / elapsed. limit/s,
allowed: what the API's documented limit would have let through in the elapsed time (capacity +
rate*t, whole requests). wait: time an attempt spent in the rate-limit layer, which without
limits holds a host back only after a server's refusal (its Retry-After, or 1 s after a bare 429).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_counts_both_ends() {
        let p = [Policy::per_second(1.0).unwrap()];
        assert_eq!(allowed_by(&p, 15.0), 16.0);
        let w = [Policy::window(3, Duration::from_secs(1)).unwrap()];
        assert_eq!(allowed_by(&w, 1.0), 4.0);
    }

    #[test]
    fn after_the_first_ten_seconds_counts_from_the_first_answer() {
        let events = [
            (0.5, Outcome::Violation),
            (10.4, Outcome::Violation),
            (10.5, Outcome::Ok),
            (12.0, Outcome::Ok),
        ];
        let from = settled_from(&events, SETTLING).unwrap();
        let later = after(&events, from, 12.5).unwrap();
        assert_eq!((later.requests, later.refused, later.ok), (2, 0, 2));
        assert_eq!(later.seconds, 2.0);
        assert_eq!(after(&events[..2], from, 12.5), None);
        let samples = [
            (9.0, Some(20.0)),
            (10.5, None),
            (11.0, Some(6.0)),
            (11.5, Some(7.0)),
        ];
        assert_eq!(mean_after(&samples, from), Some(6.5));
    }
}
