//! The header families servers invented before (and beside) the IETF
//! fields: `RateLimit-Limit/-Remaining/-Reset` of the early drafts,
//! `X-RateLimit-*` (GitHub, Reddit, Discord, Envoy), `X-Rate-Limit-*` (X),
//! OpenAI's, Anthropic's and Discogs'.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::values::{count, delta, go_duration, reset, rfc3339, until};
use super::{combined, single, Reading, ServerQuota};

/// How a family writes the time its quota is restored.
#[derive(Clone, Copy)]
enum ResetForm {
    /// Seconds, as an epoch or a delta by size.
    Number,
    /// A Go duration (OpenAI).
    GoDuration,
    /// An RFC 3339 date-time (Anthropic).
    Rfc3339,
}

/// One family's header names, spelled out so that looking them up
/// allocates nothing.
pub(super) struct Family {
    limit: &'static str,
    /// Whether the limit may be a list with windows (drafts, Envoy).
    limit_list: bool,
    remaining: &'static str,
    reset: &'static str,
    form: ResetForm,
    /// A delta that wins over `reset` (Discord's `Reset-After`).
    reset_after: Option<&'static str>,
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset`: drafts -00 to -06.
pub(super) const DRAFT: Family = Family {
    limit: "ratelimit-limit",
    limit_list: true,
    remaining: "ratelimit-remaining",
    reset: "ratelimit-reset",
    form: ResetForm::Number,
    reset_after: None,
};

/// `X-RateLimit-*`: GitHub, Reddit, Discord, Envoy and many more.
pub(super) const X: Family = Family {
    limit: "x-ratelimit-limit",
    limit_list: true,
    remaining: "x-ratelimit-remaining",
    reset: "x-ratelimit-reset",
    form: ResetForm::Number,
    reset_after: Some("x-ratelimit-reset-after"),
};

/// `X-Rate-Limit-*`: X (Twitter), with its extra hyphen.
pub(super) const X_HYPHEN: Family = Family {
    limit: "x-rate-limit-limit",
    limit_list: true,
    remaining: "x-rate-limit-remaining",
    reset: "x-rate-limit-reset",
    form: ResetForm::Number,
    reset_after: Some("x-rate-limit-reset-after"),
};

/// OpenAI's request headers; its `-tokens` twins count tokens, not
/// requests, and are not read.
pub(super) const OPENAI: Family = Family {
    limit: "x-ratelimit-limit-requests",
    limit_list: false,
    remaining: "x-ratelimit-remaining-requests",
    reset: "x-ratelimit-reset-requests",
    form: ResetForm::GoDuration,
    reset_after: None,
};

/// Anthropic's request headers; its `-tokens`, `-input-tokens` and
/// `-output-tokens` twins are not read.
pub(super) const ANTHROPIC: Family = Family {
    limit: "anthropic-ratelimit-requests-limit",
    limit_list: false,
    remaining: "anthropic-ratelimit-requests-remaining",
    reset: "anthropic-ratelimit-requests-reset",
    form: ResetForm::Rfc3339,
    reset_after: None,
};

/// Reads one family; `None` when it said nothing readable.
pub(super) fn family(
    headers: &HeaderMap,
    f: &Family,
    now: SystemTime,
    quotas: &mut Vec<ServerQuota>,
) -> Option<Reading> {
    let limit = if f.limit_list {
        combined(headers, f.limit)
            .and_then(|v| super::ietf::limit_list(&v))
            .map(|(limit, q)| {
                quotas.extend(q);
                limit
            })
    } else {
        single(headers, f.limit).and_then(count)
    };
    let after = f
        .reset_after
        .and_then(|n| single(headers, n))
        .and_then(delta);
    let reset_after = after.or_else(|| {
        let v = single(headers, f.reset)?;
        match f.form {
            ResetForm::Number => reset(v, now),
            ResetForm::GoDuration => go_duration(v),
            ResetForm::Rfc3339 => rfc3339(v).map(|at| until(Some(at), now)),
        }
    });
    let reading = Reading {
        remaining: single(headers, f.remaining).and_then(count),
        limit,
        reset_after,
    };
    (!reading.is_empty()).then_some(reading)
}

/// Discogs: `X-Discogs-Ratelimit` requests per moving minute (its docs say
/// the window is 60 s), with `-Remaining`, or `-Used` to count down from.
pub(super) fn discogs(headers: &HeaderMap, quotas: &mut Vec<ServerQuota>) -> Option<Reading> {
    let limit = single(headers, "x-discogs-ratelimit").and_then(count)?;
    quotas.extend(ServerQuota::checked(limit, Duration::from_secs(60)));
    let remaining = single(headers, "x-discogs-ratelimit-remaining")
        .and_then(count)
        .or_else(|| {
            let used = single(headers, "x-discogs-ratelimit-used").and_then(count)?;
            Some((limit - used).max(0.0))
        });
    Some(Reading {
        remaining,
        limit: Some(limit),
        reset_after: None,
    })
}
