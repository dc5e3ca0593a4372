//! The built-in table of header families: the shapes servers invented
//! before (and beside) the IETF fields, one row each. A row is data (the
//! header names, the reset's unit and kind, the window), read by the one
//! reader in `family.rs`; the shapes no row names are left to the generic
//! rules (`generic.rs`).

use std::borrow::Cow;
use std::time::Duration;

use super::family::{HeaderFamily, ResetKind, Unit};
use super::Dialect;

const fn name(n: Option<&'static str>) -> Option<Cow<'static, str>> {
    match n {
        Some(n) => Some(Cow::Borrowed(n)),
        None => None,
    }
}

/// The names a row reads; `None` where it has no such header.
struct Row {
    limit: &'static str,
    remaining: Option<&'static str>,
    used: Option<&'static str>,
    reset: Option<&'static str>,
    /// A delta, in seconds, that wins over `reset` (Discord's `Reset-After`).
    reset_after: Option<&'static str>,
}

const fn family(r: Row, kind: ResetKind, window: Option<Duration>) -> HeaderFamily {
    HeaderFamily {
        limit: name(Some(r.limit)),
        remaining: name(r.remaining),
        used: name(r.used),
        reset: name(r.reset),
        retry_after: None,
        reset_unit: Unit::Seconds,
        reset_kind: kind,
        window,
        reset_after: name(r.reset_after),
    }
}

/// The built-in families, in the order read. Sources (read November 2026)
/// are in the [module docs](super#dialects).
pub(super) static TABLE: &[(Dialect, HeaderFamily)] = &[
    // `RateLimit-Limit`, `-Remaining`, `-Reset`: drafts -00 to -06, also
    // Twitch, GitLab, Heroku, Kong and Docker Hub.
    (
        Dialect::IetfLegacy,
        family(
            Row {
                limit: "ratelimit-limit",
                remaining: Some("ratelimit-remaining"),
                used: None,
                reset: Some("ratelimit-reset"),
                reset_after: None,
            },
            ResetKind::BySize,
            None,
        ),
    ),
    // `X-RateLimit-*`: GitHub, Reddit, Discord, Envoy, Mastodon and many
    // more; Discord's `Reset-After` (a delta) wins over `Reset`.
    (
        Dialect::XRateLimit,
        family(
            Row {
                limit: "x-ratelimit-limit",
                remaining: Some("x-ratelimit-remaining"),
                used: Some("x-ratelimit-used"),
                reset: Some("x-ratelimit-reset"),
                reset_after: Some("x-ratelimit-reset-after"),
            },
            ResetKind::BySize,
            None,
        ),
    ),
    // `X-Rate-Limit-*`: X (Twitter), Okta, Zendesk, with the extra hyphen.
    (
        Dialect::XRateLimit,
        family(
            Row {
                limit: "x-rate-limit-limit",
                remaining: Some("x-rate-limit-remaining"),
                used: None,
                reset: Some("x-rate-limit-reset"),
                reset_after: Some("x-rate-limit-reset-after"),
            },
            ResetKind::BySize,
            None,
        ),
    ),
    // OpenAI's request headers; the `-tokens` twins count tokens, not
    // requests, and are not read.
    (
        Dialect::OpenAi,
        family(
            Row {
                limit: "x-ratelimit-limit-requests",
                remaining: Some("x-ratelimit-remaining-requests"),
                used: None,
                reset: Some("x-ratelimit-reset-requests"),
                reset_after: None,
            },
            ResetKind::GoDuration,
            None,
        ),
    ),
    // Anthropic's request headers; the token headers are not read.
    (
        Dialect::Anthropic,
        family(
            Row {
                limit: "anthropic-ratelimit-requests-limit",
                remaining: Some("anthropic-ratelimit-requests-remaining"),
                used: None,
                reset: Some("anthropic-ratelimit-requests-reset"),
                reset_after: None,
            },
            ResetKind::Timestamp,
            None,
        ),
    ),
    // Discogs: a moving minute (its docs say the window is 60 s), with
    // `-Remaining`, or `-Used` to count down from.
    (
        Dialect::Discogs,
        family(
            Row {
                limit: "x-discogs-ratelimit",
                remaining: Some("x-discogs-ratelimit-remaining"),
                used: Some("x-discogs-ratelimit-used"),
                reset: None,
                reset_after: None,
            },
            ResetKind::BySize,
            Some(Duration::from_secs(60)),
        ),
    ),
];

/// The dialect of a header name that a table row reads, or of the IETF
/// fields and `Retry-After`.
pub(super) fn dialect_of(name: &str) -> Option<Dialect> {
    match name {
        "retry-after" => return Some(Dialect::RetryAfter),
        "ratelimit" | "ratelimit-policy" => return Some(Dialect::Ietf),
        _ => {}
    }
    TABLE
        .iter()
        .find(|(_, f)| f.names().any(|n| n == name))
        .map(|(d, _)| *d)
}
