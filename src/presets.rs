//! Ready-made [`Source`]s for APIs with published limits.
//!
//! Each preset cites where its number comes from and when it was read; a
//! preset never claims more than its source says. Where a service counts
//! in a moving window, the preset uses [`Policy::window`] so it never sends
//! more than the published number in any such window. Register one source
//! per service: two presets of the same service share a name, and the
//! registry refuses the second.
//!
//! ```
//! use tollgate::{presets, Registry};
//!
//! let registry = Registry::builder()
//!     .source(presets::musicbrainz())
//!     .source(presets::discogs_unauthenticated())
//!     .source(presets::acoustid())
//!     .build()?;
//! assert_eq!(registry.names(), ["musicbrainz", "discogs", "acoustid"]);
//! # Ok::<(), tollgate::Error>(())
//! ```

use std::time::Duration;

use crate::{Error, Policy, Source};

// The texts below are constants checked by the tests of this module; were
// one ever wrong, `Source::try_limit` keeps the error and the registry
// refuses to build, rather than run the source without its limit.
fn policy(text: &str) -> Result<Policy, Error> {
    text.parse()
}

fn window(n: u32, secs: u64) -> Result<Policy, Error> {
    Policy::window(n, Duration::from_secs(secs))
}

/// MusicBrainz: 1 request a second, burst 1, for `musicbrainz.org` and its
/// subdomains.
///
/// Source: musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting, read November
/// 2026: "about 1 request per second" per IP on average; a violation is
/// answered 503, and a request without a User-Agent gets 403.
pub fn musicbrainz() -> Source {
    Source::new("musicbrainz")
        .try_limit(policy("1/s"))
        .host("musicbrainz.org")
        .host("*.musicbrainz.org")
}

/// Discogs, authenticated: at most 60 requests in any 60 s, for
/// `api.discogs.com`.
///
/// Source: discogs.com/developers, rate limiting section, read November 2026:
/// 60/min authenticated, per IP, over a moving 60-second window; 429 with
/// `X-Discogs-Ratelimit*` headers.
pub fn discogs_authenticated() -> Source {
    Source::new("discogs")
        .try_limit(window(60, 60))
        .host("api.discogs.com")
}

/// Discogs, unauthenticated: at most 25 requests in any 60 s.
///
/// Source: as [`discogs_authenticated`]: 25/min unauthenticated.
pub fn discogs_unauthenticated() -> Source {
    Source::new("discogs")
        .try_limit(window(25, 60))
        .host("api.discogs.com")
}

/// AcoustID: at most 3 requests in any second, for `api.acoustid.org`.
///
/// Source: acoustid.org/webservice, read November 2026: "Do not make more
/// than 3 requests per second." A burst of 3 at 3/s could send 5 within one
/// second, so the preset keeps burst 1 (3/s, `Policy::window(3, 1 s)`).
pub fn acoustid() -> Source {
    Source::new("acoustid")
        .try_limit(window(3, 1))
        .host("api.acoustid.org")
}

/// AniList: 90 requests a minute, burst 1, for `graphql.anilist.co`.
///
/// Source: AniList docs, guide/rate-limiting, read November 2026: 90/min,
/// documented as temporarily degraded to 30/min, with a burst limiter too;
/// 429 with `Retry-After`. While degraded, set 30/min with
/// [`Registry::set_policy`](crate::Registry::set_policy), or let the
/// server's `X-RateLimit-*` headers lower it.
pub fn anilist() -> Source {
    Source::new("anilist")
        .try_limit(policy("90/min"))
        .host("graphql.anilist.co")
}

/// Jikan v4: at most 3 requests in any second *and* 60 in any minute, for
/// `api.jikan.moe`. The minute limit keeps a burst of 3 so a fresh client
/// starts at the per-second pace, then settles near one a second.
///
/// Source: the Jikan API description, read November 2026: 3/s and 60/min at
/// once, no daily limit; 429 on violation.
pub fn jikan() -> Source {
    let minute = window(60, 60).and_then(|p| p.burst(3.0));
    Source::new("jikan")
        .try_limit(policy("3/s"))
        .try_limit(minute)
        .host("api.jikan.moe")
}

/// MangaDex: 5 requests a second, for `api.mangadex.org`.
///
/// Source: api.mangadex.org/docs, limitations page, read November 2026:
/// about 5 requests/s per IP (a guaranteed minimum); a real User-Agent is
/// required; 429 on violation.
pub fn mangadex() -> Source {
    Source::new("mangadex")
        .try_limit(policy("5/s"))
        .host("api.mangadex.org")
}

/// GitHub REST, authenticated: 5,000 requests an hour, and the secondary
/// limit's 900 points a minute (a GET costs 1 point, a write 5, through a
/// [`Price`](crate::Price)), for `api.github.com`.
///
/// Source: docs.github.com, REST rate limits, read November 2026: 5,000/h
/// authenticated (15,000/h on Enterprise Cloud, 1,000/h per repository for
/// `GITHUB_TOKEN`); 403 or 429 with `retry-after` or `x-ratelimit-reset`.
pub fn github() -> Source {
    Source::new("github")
        .try_limit(policy("5000/h"))
        .try_priced_limit(github_points())
        .price(github_price())
        .host("api.github.com")
}

/// GitHub's secondary limit on REST: at most 900 points in any minute,
/// where a GET (or HEAD, OPTIONS) costs 1 point and a write 5. The burst of
/// 5 lets one write through; with it, the bound of any minute is 900
/// points (the window bound is strict, and points are whole numbers).
///
/// Source: docs.github.com, REST secondary rate limits, read November 2026.
fn github_points() -> Result<Policy, Error> {
    window(900, 60).and_then(|p| p.burst(5.0))
}

/// Points per request under GitHub's secondary limit (the hourly quota
/// counts requests).
fn github_price() -> crate::Price {
    crate::Price::new().writes(5.0)
}

/// GitHub REST, unauthenticated: 60 requests an hour, per IP.
///
/// Source: as [`github`].
pub fn github_unauthenticated() -> Source {
    Source::new("github")
        .try_limit(policy("60/h"))
        .host("api.github.com")
}

/// GitHub search, authenticated: 30 requests a minute, for
/// `api.github.com/search`. Register it beside [`github`]: the longer path
/// rule wins for search requests.
///
/// Source: docs.github.com, search rate limits, read November 2026: 30/min
/// authenticated (10/min unauthenticated), `x-ratelimit-resource: search`.
pub fn github_search() -> Source {
    Source::new("github-search")
        .try_limit(policy("30/min"))
        .host("api.github.com")
        .path("/search")
}

/// GitHub search, unauthenticated: 10 requests a minute.
///
/// Source: as [`github_search`].
pub fn github_search_unauthenticated() -> Source {
    Source::new("github-search")
        .try_limit(policy("10/min"))
        .host("api.github.com")
        .path("/search")
}

/// Every preset above, for tests and for listing.
pub fn all() -> Vec<Source> {
    vec![
        musicbrainz(),
        discogs_authenticated(),
        discogs_unauthenticated(),
        acoustid(),
        anilist(),
        jikan(),
        mangadex(),
        github(),
        github_unauthenticated(),
        github_search(),
        github_search_unauthenticated(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_limited_and_routed() {
        for s in all() {
            assert!(!s.limits().is_empty(), "{}", s.name());
            for p in s.limits() {
                assert!(
                    !p.is_unlimited(),
                    "{}: a preset text failed to parse",
                    s.name()
                );
            }
            assert!(!s.hosts.is_empty(), "{}", s.name());
        }
    }

    #[test]
    fn numbers_match_their_sources() {
        let minute = Duration::from_secs(60);
        assert_eq!(musicbrainz().limits(), [Policy::per_second(1.0).unwrap()]);
        assert_eq!(
            discogs_authenticated().limits()[0].max_in_window(minute),
            60.0
        );
        assert_eq!(
            discogs_unauthenticated().limits()[0].max_in_window(minute),
            25.0
        );
        assert_eq!(
            acoustid().limits()[0].max_in_window(Duration::from_secs(1)),
            3.0
        );
        assert_eq!(acoustid().limits()[0].tokens_per_second(), 3.0);
        assert_eq!(anilist().limits()[0].max_in_window(minute), 90.0);
        assert_eq!(jikan().limits().len(), 2);
        assert_eq!(
            jikan().limits()[0].max_in_window(Duration::from_secs(1)),
            3.0
        );
        assert_eq!(jikan().limits()[1].max_in_window(minute), 60.0);
        assert_eq!(mangadex().limits()[0].tokens_per_second(), 5.0);
        assert_eq!(
            github().limits()[0].max_in_window(Duration::from_secs(3600)),
            5000.0
        );
        assert_eq!(
            github_unauthenticated().limits()[0].max_in_window(Duration::from_secs(3600)),
            60.0
        );
        assert_eq!(github_search().limits()[0].max_in_window(minute), 30.0);
        assert_eq!(
            github_search_unauthenticated().limits()[0].max_in_window(minute),
            10.0
        );
    }
}
