//! A hand-written SVG timeline of a run: one lane per rate-limited source.
//!
//! In each lane, x is time since the start. For a configured source, the
//! chart shows the cumulative count of requests the server admitted (a
//! green staircase) beside the policy's envelope, the most it allows by
//! time `t` (`capacity + rate·t`, dashed blue); the staircase stays under
//! the envelope when the limiter works. For the learning source, the chart
//! shows rates instead: the rate it learned (purple, from the first
//! refusal on), the server's unannounced limit (dashed red) and what the
//! server admitted in the last second (thin green); the learned rate
//! settles under the limit. Under the chart, a strip of ticks: one green
//! tick per admitted request, one red tick per violation or refusal (ticks
//! that fall on the same pixel are drawn once, so a flood of violations
//! stays a readable red band). A count of zero is written in grey, not red.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use tollgate::Policy;

use crate::report::{allowed_by, policy_rate};
use crate::upstream::Outcome;

/// One lane: a source, its API's limits, and the server's answers.
#[derive(Clone, Debug)]
pub struct Lane {
    /// Source name.
    pub name: String,
    /// The API's limits; the envelope is drawn from them.
    pub policies: Vec<Policy>,
    /// Every answer: seconds since the start, and what it was.
    pub events: Vec<(f64, Outcome)>,
    /// For the learning source, what it learned: drawn as rates.
    pub learned: Option<Learned>,
}

/// What a learning source learned over the run.
#[derive(Clone, Debug)]
pub struct Learned {
    /// Whether it learned (not with `--no-limits`).
    pub learning: bool,
    /// The server's limit, which it never announced.
    pub true_limit: Policy,
    /// The learned rate: seconds since the start, and the rate (`None`
    /// while the controller is off).
    pub samples: Vec<(f64, Option<f64>)>,
}

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 180.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
/// The second legend row's height, when a learning lane needs it.
const LEGEND2: f64 = 16.0;
const LANE: f64 = 150.0;
const GAP: f64 = 30.0;
const STRIP: f64 = 26.0;
const BOTTOM: f64 = 40.0;

const GREEN: &str = "#1a7f37";
const RED: &str = "#d1242f";
const GREY: &str = "#57606a";
const PURPLE: &str = "#8250df";

/// The colour of a count of refusals: red when there are any.
fn refusal_colour(n: usize) -> &'static str {
    if n > 0 {
        RED
    } else {
        GREY
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `lanes` over `seconds`, titled `title`.
pub fn render(title: &str, lanes: &[Lane], seconds: f64) -> String {
    let seconds = seconds.max(1e-3);
    let plot_w = WIDTH - LEFT - RIGHT;
    let any_learned = lanes.iter().any(|l| l.learned.is_some());
    let top = if any_learned { TOP + LEGEND2 } else { TOP };
    let height = top + lanes.len() as f64 * (LANE + GAP) - GAP + BOTTOM;
    let x = |t: f64| LEFT + t.clamp(0.0, seconds) / seconds * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Legend.
    let ly = 48.0;
    let _ = writeln!(
        s,
        r##"<g font-size="11"><path d="M{LEFT} {ly}h24" stroke="#1a7f37" stroke-width="2"/><text x="{}" y="{}">answered 200 (cumulative)</text><path d="M{} {ly}h24" stroke="#1f5fbf" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{}" y="{}">limit envelope: capacity + rate·t</text><path d="M{} {}v10" stroke="#1a7f37"/><text x="{}" y="{}">answered 200</text><path d="M{} {}v10" stroke="#d1242f"/><text x="{}" y="{}">violation or refusal (429/503)</text></g>"##,
        LEFT + 30.0,
        ly + 4.0,
        LEFT + 170.0,
        LEFT + 200.0,
        ly + 4.0,
        LEFT + 400.0,
        ly - 5.0,
        LEFT + 406.0,
        ly + 4.0,
        LEFT + 480.0,
        ly - 5.0,
        LEFT + 486.0,
        ly + 4.0,
    );
    if any_learned {
        let ly = ly + LEGEND2;
        let _ = writeln!(
            s,
            r##"<g font-size="11"><path d="M{LEFT} {ly}h24" stroke="{PURPLE}" stroke-width="2"/><text x="{}" y="{}">learned rate</text><path d="M{} {ly}h24" stroke="{RED}" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{}" y="{}">the server's unannounced limit</text><path d="M{} {ly}h24" stroke="{GREEN}" stroke-width="1"/><text x="{}" y="{}">answered 200 in the last second</text></g>"##,
            LEFT + 30.0,
            ly + 4.0,
            LEFT + 170.0,
            LEFT + 200.0,
            ly + 4.0,
            LEFT + 400.0,
            LEFT + 430.0,
            ly + 4.0,
        );
    }
    let step = if seconds <= 20.0 {
        1.0
    } else if seconds <= 100.0 {
        5.0
    } else {
        30.0
    };

    for (i, lane) in lanes.iter().enumerate() {
        let y0 = top + i as f64 * (LANE + GAP);
        let chart_h = LANE - STRIP - 6.0;
        let chart_bottom = y0 + chart_h;
        let strip_top = chart_bottom + 6.0;
        let ok_times: Vec<f64> = lane
            .events
            .iter()
            .filter(|(_, o)| *o == Outcome::Ok)
            .map(|(t, _)| *t)
            .collect();
        let violations = lane
            .events
            .iter()
            .filter(|(_, o)| *o == Outcome::Violation)
            .count();
        let limited = policy_rate(&lane.policies).is_finite();
        // A learning lane's chart is in requests per second: what the
        // server admitted in the second before each instant.
        let admitted_rate: Vec<(f64, f64)> = if lane.learned.is_some() {
            (0..=400)
                .map(|k| {
                    let t = seconds * k as f64 / 400.0;
                    let n = ok_times.iter().filter(|&&u| u <= t && u > t - 1.0).count();
                    (t, n as f64)
                })
                .collect()
        } else {
            Vec::new()
        };
        let ymax = match &lane.learned {
            Some(l) => {
                l.samples
                    .iter()
                    .filter_map(|(_, r)| *r)
                    .chain(admitted_rate.iter().map(|(_, n)| *n))
                    .fold(l.true_limit.tokens_per_second(), f64::max)
                    .max(1.0)
                    * 1.15
            }
            None => {
                let envelope_end = if limited {
                    allowed_by(&lane.policies, seconds)
                } else {
                    0.0
                };
                (ok_times.len() as f64).max(envelope_end).max(1.0) * 1.1
            }
        };
        let y = |c: f64| chart_bottom - c / ymax * chart_h;

        // Frame, grid and labels.
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{chart_h}" fill="#f6f8fa" stroke="#d0d7de"/>"##
        );
        let mut t = 0.0;
        while t <= seconds + 1e-9 {
            let _ = writeln!(
                s,
                r##"<path d="M{:.1} {y0}V{}" stroke="#d0d7de" stroke-width="0.5"/>"##,
                x(t),
                strip_top + STRIP - 6.0
            );
            t += step;
        }
        let unit = if lane.learned.is_some() { "/s" } else { "" };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" fill="{GREY}">{:.0}{unit}</text><text x="{}" y="{}" text-anchor="end" fill="{GREY}">0</text>"##,
            LEFT - 4.0,
            y0 + 10.0,
            ymax,
            LEFT - 4.0,
            chart_bottom
        );
        let policy = if lane.policies.is_empty() {
            "unlimited".to_string()
        } else {
            lane.policies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let mut labels = vec![(GREY, policy), (GREEN, format!("ok {}", ok_times.len()))];
        match &lane.learned {
            None => labels.push((
                refusal_colour(violations),
                format!("violations {violations}"),
            )),
            Some(l) => {
                labels[0].1 = if l.learning {
                    "no limit configured: learns".to_string()
                } else {
                    "unlimited, not learning".to_string()
                };
                labels.push((refusal_colour(violations), format!("refused {violations}")));
                if let Some(rate) = l.samples.iter().rev().find_map(|(_, r)| *r) {
                    labels.push((PURPLE, format!("learned {rate:.1}/s")));
                }
                labels.push((RED, format!("unannounced: {}", l.true_limit)));
            }
        }
        let _ = write!(
            s,
            r##"<text x="12" y="{}" font-size="14" font-weight="bold">{}</text>"##,
            y0 + 18.0,
            esc(&lane.name)
        );
        for (k, (colour, text)) in labels.iter().enumerate() {
            let _ = write!(
                s,
                r##"<text x="12" y="{}" fill="{colour}">{}</text>"##,
                y0 + 36.0 + 17.0 * k as f64,
                esc(text)
            );
        }
        s.push('\n');

        if let Some(l) = &lane.learned {
            // The server's limit, then what it admitted, then the rate
            // learned, broken where the controller is off.
            let limit = l.true_limit.tokens_per_second();
            let _ = writeln!(
                s,
                r##"<path d="M{LEFT} {:.1}H{:.1}" stroke="{RED}" stroke-width="1.5" stroke-dasharray="5 3"/>"##,
                y(limit),
                x(seconds)
            );
            let mut d = String::new();
            for (k, (t, n)) in admitted_rate.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1}",
                    if k == 0 { "M" } else { "L" },
                    x(*t),
                    y(*n)
                );
            }
            let _ = writeln!(
                s,
                r##"<path d="{d}" fill="none" stroke="{GREEN}" stroke-width="1" opacity="0.7"/>"##
            );
            let mut d = String::new();
            let mut on = false;
            for (t, rate) in &l.samples {
                match rate {
                    Some(r) if on => {
                        let _ = write!(d, "H{:.1}V{:.1}", x(*t), y(*r));
                    }
                    Some(r) => {
                        let _ = write!(d, "M{:.1} {:.1}", x(*t), y(*r));
                        on = true;
                    }
                    None => on = false,
                }
            }
            if on {
                let _ = write!(d, "H{:.1}", x(seconds));
            }
            if !d.is_empty() {
                let _ = writeln!(
                    s,
                    r##"<path d="{d}" fill="none" stroke="{PURPLE}" stroke-width="2"/>"##
                );
            }
        } else {
            // The envelope, sampled so several limits show their minimum.
            if limited {
                let mut d = String::new();
                for k in 0..=200 {
                    let t = seconds * k as f64 / 200.0;
                    let c = lane
                        .policies
                        .iter()
                        .map(|p| p.capacity() + p.tokens_per_second() * t)
                        .fold(f64::INFINITY, f64::min);
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1}",
                        if k == 0 { "M" } else { "L" },
                        x(t),
                        y(c)
                    );
                }
                let _ = writeln!(
                    s,
                    r##"<path d="{d}" fill="none" stroke="#1f5fbf" stroke-width="1.5" stroke-dasharray="5 3"/>"##
                );
            }

            // Cumulative admitted requests, as a staircase.
            let mut d = format!("M{:.1} {:.1}", x(0.0), y(0.0));
            for (n, t) in ok_times.iter().enumerate() {
                let _ = write!(d, "H{:.1}V{:.1}", x(*t), y(n as f64 + 1.0));
            }
            let _ = write!(d, "H{:.1}", x(seconds));
            let _ = writeln!(
                s,
                r##"<path d="{d}" fill="none" stroke="{GREEN}" stroke-width="2"/>"##
            );
        }

        // Tick strip: admitted above, violations below, one per pixel column.
        for (outcome, color, dy) in [
            (Outcome::Ok, "#1a7f37", 0.0),
            (Outcome::Violation, "#d1242f", 11.0),
        ] {
            let columns: BTreeSet<i64> = lane
                .events
                .iter()
                .filter(|(_, o)| *o == outcome)
                .map(|(t, _)| (x(*t) * 2.0).round() as i64)
                .collect();
            if columns.is_empty() {
                continue;
            }
            let mut d = String::new();
            for c in columns {
                let _ = write!(d, "M{:.1} {:.1}v9", c as f64 / 2.0, strip_top + dy);
            }
            let _ = writeln!(s, r#"<path d="{d}" stroke="{color}" stroke-width="1"/>"#);
        }
    }

    // Time axis.
    let axis_y = height - BOTTOM + 14.0;
    let mut t = 0.0;
    while t <= seconds + 1e-9 {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{axis_y}" text-anchor="middle" fill="#57606a">{t:.0}</text>"##,
            x(t)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#57606a">seconds since the start</text>"##,
        LEFT + plot_w / 2.0,
        axis_y + 18.0
    );
    s.push_str("</svg>\n");
    s
}
