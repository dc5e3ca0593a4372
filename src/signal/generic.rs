//! The generic rules: families found by the shape of their header names,
//! for the many vendors that copy a common pattern under their own prefix.
//! Each name the rules accept joins the family of its prefix (and of the
//! window its name gives); the families are then read like table rows, with
//! the reset decided by size. Names are borrowed from the response, and the
//! families kept in fixed arrays, so finding them allocates nothing.
//!
//! | shape | example |
//! |---|---|
//! | `<p>ratelimit-{limit,max,remaining,used,reset,reset-after}`, `<p>rate-limit-…` for any prefix `<p>` | `x-sentry-rate-limit-reset`, `fastly-ratelimit-remaining` |
//! | the same with a `requests-` infix | `x-ratelimit-requests-reset` (Linear) |
//! | `<p>ratelimit` alone: a limit | `x-rate-limit` (Zendesk) |
//! | `<p>ratelimit-interval-milliseconds`: the window, in ms | HubSpot |
//! | `<p>ratelimit-<role>-<window>`: a family per window | `x-ratelimit-remaining-minute` (Kong) |
//! | `<p>ratelimit-<window>` (a limit), `<p>ratelimit-<window>-<role>` | `x-hubspot-ratelimit-secondly-remaining` |
//! | `x-limit-per-<window>`, `x-remaining-this-<window>`, `x-remaining-today` | Etsy |
//! | `<anything>-retry-after`: read as `Retry-After`, below it | `x-ratelimit-retry-after` |
//!
//! Windows: `second(ly)`, `minute(ly)`, `hour(ly)`, `day`/`daily`,
//! `month(ly)` (read as 31 days) and `year(ly)` (366 days): the longer
//! reading of a calendar window errs towards waiting. Names with any other
//! word (`-tokens`, `-complexity-`, `-concurrentlimit`) are not requests
//! and are not read.

use std::time::Duration;

use super::family::Names;

/// Families one response can hold; more are ignored.
const FAMILIES: usize = 8;
/// Prefixed retry-after headers one response can hold; more are ignored.
const RETRY_AFTERS: usize = 4;

/// Whether a header name could belong to any family, built-in or generic:
/// the cheap look every response header gets. It allocates nothing and
/// leaves most names at their first bytes.
pub(super) fn candidate(name: &str) -> bool {
    name.ends_with("retry-after")
        || name.starts_with("x-limit-per-")
        || name.starts_with("x-remaining-")
        || rate_limit_word(name).is_some()
}

/// Where `ratelimit` or `rate-limit` sits in `name`: its end.
fn rate_limit_word(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    let mut from = 0;
    while let Some(i) = b[from..].iter().position(|c| *c == b'r') {
        let at = from + i;
        let rest = &b[at..];
        if rest.starts_with(b"ratelimit") {
            return Some(at + 9);
        }
        if rest.starts_with(b"rate-limit") {
            return Some(at + 10);
        }
        from = at + 1;
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Limit,
    Remaining,
    Used,
    Reset,
    ResetAfter,
    WindowMs,
    RetryAfter,
}

fn role(word: &str) -> Option<Role> {
    Some(match word {
        "limit" | "max" => Role::Limit,
        "remaining" => Role::Remaining,
        "used" => Role::Used,
        "reset" => Role::Reset,
        "reset-after" => Role::ResetAfter,
        _ => return None,
    })
}

fn window(word: &str) -> Option<Duration> {
    const DAY: u64 = 86_400;
    Some(Duration::from_secs(match word {
        "second" | "secondly" => 1,
        "minute" | "minutely" => 60,
        "hour" | "hourly" => 3600,
        "day" | "daily" | "today" => DAY,
        "month" | "monthly" => 31 * DAY,
        "year" | "yearly" => 366 * DAY,
        _ => return None,
    }))
}

/// A name's family (its prefix, without a trailing hyphen, and window) and
/// role in it.
#[derive(Debug, PartialEq)]
struct Hit<'h> {
    prefix: &'h str,
    window: Option<Duration>,
    role: Role,
}

fn classify(name: &str) -> Option<Hit<'_>> {
    if name != "retry-after" && name.ends_with("-retry-after") {
        let role = Role::RetryAfter;
        return Some(Hit {
            prefix: name,
            window: None,
            role,
        });
    }
    let etsy = |w: Option<Duration>, role| {
        let window = Some(w?);
        Some(Hit {
            prefix: "x-",
            window,
            role,
        })
    };
    if let Some(w) = name.strip_prefix("x-limit-per-") {
        return etsy(window(w), Role::Limit);
    }
    if let Some(w) = name.strip_prefix("x-remaining-") {
        return etsy(
            window(w.strip_prefix("this-").unwrap_or(w)),
            Role::Remaining,
        );
    }
    let end = rate_limit_word(name)?;
    let Some(tail) = name[end..].strip_prefix('-') else {
        let role = Role::Limit; // `x-rate-limit` alone
        return name[end..].is_empty().then_some(Hit {
            prefix: name,
            window: None,
            role,
        });
    };
    let (prefix, tail) = match tail.strip_prefix("requests-") {
        Some(t) => (&name[..end + 9], t),
        None => (&name[..end], tail),
    };
    let hit = |role, window| {
        Some(Hit {
            prefix,
            window,
            role,
        })
    };
    if tail == "interval-milliseconds" {
        return hit(Role::WindowMs, None);
    }
    if let Some(r) = role(tail) {
        return hit(r, None);
    }
    if let Some(w) = window(tail) {
        return hit(Role::Limit, Some(w));
    }
    let (a, b) = tail.rsplit_once('-')?;
    match (role(a), window(b), window(a), role(b)) {
        (Some(r), Some(w), _, _) | (_, _, Some(w), Some(r)) => hit(r, Some(w)),
        _ => None,
    }
}

/// The families and prefixed retry-afters found in one response.
#[derive(Default)]
pub(super) struct Found<'h> {
    families: [Option<(&'h str, Names<'h>)>; FAMILIES],
    retry_afters: [Option<&'h str>; RETRY_AFTERS],
}

impl<'h> Found<'h> {
    /// Files `name` under its family; whether the rules accepted it.
    pub(super) fn add(&mut self, name: &'h str) -> bool {
        let Some(hit) = classify(name) else {
            return false;
        };
        if hit.role == Role::RetryAfter {
            if let Some(slot) = self.retry_afters.iter_mut().find(|s| s.is_none()) {
                *slot = Some(name);
            }
            return true;
        }
        let same = |(p, n): &(&str, Names<'_>)| {
            p.trim_end_matches('-') == hit.prefix.trim_end_matches('-') && n.window == hit.window
        };
        let slot = match self
            .families
            .iter()
            .position(|s| s.as_ref().is_some_and(same))
        {
            Some(i) => &mut self.families[i],
            None => match self.families.iter_mut().find(|s| s.is_none()) {
                Some(free) => free,
                None => return true,
            },
        };
        let (_, names) = slot.get_or_insert((
            hit.prefix,
            Names {
                window: hit.window,
                ..Names::default()
            },
        ));
        let field = match hit.role {
            Role::Limit => &mut names.limit,
            Role::Remaining => &mut names.remaining,
            Role::Used => &mut names.used,
            Role::Reset => &mut names.reset,
            Role::ResetAfter => &mut names.reset_after,
            Role::WindowMs => &mut names.window_ms,
            Role::RetryAfter => unreachable!("filed above"),
        };
        // The first name of a role wins (`-limit` over `-max`).
        field.get_or_insert(name);
        true
    }

    /// The families found.
    pub(super) fn families(&self) -> impl Iterator<Item = &Names<'h>> {
        self.families.iter().flatten().map(|(_, n)| n)
    }

    /// The prefixed retry-after names found.
    pub(super) fn retry_afters(&self) -> impl Iterator<Item = &'h str> + '_ {
        self.retry_afters.iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_shape() {
        let secs = |n| Some(Duration::from_secs(n));
        let cases = [
            (
                "x-ratelimit-requests-reset",
                "x-ratelimit-requests",
                None,
                Role::Reset,
            ),
            (
                "x-sentry-rate-limit-limit",
                "x-sentry-rate-limit",
                None,
                Role::Limit,
            ),
            (
                "fastly-ratelimit-remaining",
                "fastly-ratelimit",
                None,
                Role::Remaining,
            ),
            ("x-rate-limit", "x-rate-limit", None, Role::Limit),
            (
                "x-hubspot-ratelimit-max",
                "x-hubspot-ratelimit",
                None,
                Role::Limit,
            ),
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                "x-hubspot-ratelimit",
                None,
                Role::WindowMs,
            ),
            (
                "x-hubspot-ratelimit-daily",
                "x-hubspot-ratelimit",
                secs(86_400),
                Role::Limit,
            ),
            (
                "x-hubspot-ratelimit-secondly-remaining",
                "x-hubspot-ratelimit",
                secs(1),
                Role::Remaining,
            ),
            (
                "x-ratelimit-remaining-minute",
                "x-ratelimit",
                secs(60),
                Role::Remaining,
            ),
            (
                "x-ratelimit-limit-hour",
                "x-ratelimit",
                secs(3600),
                Role::Limit,
            ),
            ("x-limit-per-second", "x-", secs(1), Role::Limit),
            ("x-remaining-this-second", "x-", secs(1), Role::Remaining),
            ("x-remaining-today", "x-", secs(86_400), Role::Remaining),
            (
                "x-foo-retry-after",
                "x-foo-retry-after",
                None,
                Role::RetryAfter,
            ),
        ];
        for (name, prefix, window, role) in cases {
            let want = Hit {
                prefix,
                window,
                role,
            };
            assert_eq!(classify(name), Some(want), "{name}");
            assert!(candidate(name), "{name}");
        }
        for name in [
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-complexity-remaining",
            "anthropic-ratelimit-tokens-limit",
            "x-sentry-rate-limit-concurrentlimit",
            "x-ratelimit-resource",
            "x-ratelimit-nearlimit",
            "x-ms-ratelimit-remaining-subscription-reads",
            "x-remaining-cats",
            "retry-after",
            "x-generated-by",
            "content-type",
        ] {
            assert_eq!(classify(name), None, "{name}");
        }
        assert!(!candidate("x-generated-by") && !candidate("content-type"));
    }

    #[test]
    fn families_group_by_prefix_and_window() {
        let mut found = Found::default();
        for name in [
            "x-ratelimit-limit-second",
            "x-ratelimit-remaining-second",
            "x-ratelimit-limit-minute",
            "x-ratelimit-remaining-minute",
            "x-rate-limit",
            "x-foo-retry-after",
        ] {
            assert!(found.add(name), "{name}");
        }
        let families: Vec<_> = found.families().collect();
        assert_eq!(families.len(), 3);
        assert_eq!(families[0].limit, Some("x-ratelimit-limit-second"));
        assert_eq!(families[0].remaining, Some("x-ratelimit-remaining-second"));
        assert_eq!(families[1].window, Some(Duration::from_secs(60)));
        assert_eq!(families[2].limit, Some("x-rate-limit"));
        assert_eq!(
            found.retry_afters().collect::<Vec<_>>(),
            ["x-foo-retry-after"]
        );
    }
}
