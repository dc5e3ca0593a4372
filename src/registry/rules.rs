//! Routing: which source a request's host, port and path belong to.
//!
//! Patterns: an exact host (`musicbrainz.org`), a wildcard (`*.example.com`,
//! which matches `a.example.com` and `a.b.example.com` but not `example.com`
//! itself), or `*` (every host); each with an optional port
//! (`example.com:8080`, `[::1]:3000`) and an optional path prefix matched on
//! segment boundaries (`/search` matches `/search` and `/search/x`, not
//! `/searchx`).
//!
//! The most specific rule wins: first the host (exact, then the longest
//! wildcard suffix, then `*`), then a rule with a port over one without, then
//! the longest path prefix. Hosts are normalised on both sides: ASCII
//! lowercase, no trailing dot, no IPv6 brackets, and a missing port is the
//! scheme's default (80 for `http`, 443 for `https`). Internationalised names
//! are written as in the URI, in punycode (`xn--bcher-kva.example`).

use std::borrow::Cow;

use super::buckets::Buckets;
use super::hostkey::{HostKey, HostMap, Whole};
use crate::sync::Arc;

use crate::Error;

/// A request as the router sees it: host, port (explicit or the scheme's
/// default), path, and (for pricing, see [`Price`](super::Price)) its
/// method. Build one with [`Target::new`] or from an `http::Uri` or request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    host: Cow<'a, str>,
    port: Option<u16>,
    path: &'a str,
    method: Option<&'a http::Method>,
    lane: super::Lane,
}

impl<'a> Target<'a> {
    /// A target from its parts; `host` is normalised here.
    pub fn new(host: &'a str, port: Option<u16>, path: &'a str) -> Self {
        Target {
            host: normalize_host(host),
            port,
            path,
            method: None,
            lane: super::Lane::Interactive,
        }
    }

    /// The same target in `lane` (for a source with
    /// [`Lanes`](super::Lanes); others ignore it).
    pub fn with_lane(mut self, lane: super::Lane) -> Self {
        self.lane = lane;
        self
    }

    /// The request's lane (interactive unless set).
    pub fn lane(&self) -> super::Lane {
        self.lane
    }

    /// The same target for a request with `method` (which a source's
    /// [`Price`](super::Price) may weigh).
    pub fn with_method(mut self, method: &'a http::Method) -> Self {
        self.method = Some(method);
        self
    }

    /// The target of a URI: its host, explicit port or the scheme's default,
    /// and path. A URI without a host gives an empty host.
    #[inline]
    pub fn from_uri(uri: &'a http::Uri) -> Self {
        let (host, port) = Self::host_port_of(uri, "");
        Target {
            host,
            port,
            path: uri.path(),
            method: None,
            lane: super::Lane::Interactive,
        }
    }

    /// The target of a request: the URI's authority, else its `Host` header
    /// (with the URI's scheme, if any, for the default port).
    #[inline]
    pub fn from_request<B>(req: &'a http::Request<B>) -> Self {
        Self::from_request_in(req, super::Lane::Interactive)
    }

    /// [`from_request`](Self::from_request) in `lane`, built in one piece:
    /// a target made and then moved through `with_*` is copied in words
    /// that span fields written one by one, each copy a stalled load
    /// (what the tower layer's profile showed).
    #[inline(always)]
    pub(crate) fn from_request_in<B>(req: &'a http::Request<B>, lane: super::Lane) -> Self {
        let uri = req.uri();
        let (host, port) = if uri.authority().is_some() {
            Self::host_port_of(uri, "")
        } else {
            let host_header = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            Self::host_port_of(uri, host_header)
        };
        Target {
            host,
            port,
            path: uri.path(),
            method: Some(req.method()),
            lane,
        }
    }

    /// The normalised host and the port (explicit, else the scheme's
    /// default) of `uri`'s authority, or of `host_header` where the URI
    /// has none.
    #[inline(always)]
    fn host_port_of(uri: &'a http::Uri, host_header: &'a str) -> (Cow<'a, str>, Option<u16>) {
        let (host, port) = match uri.authority() {
            Some(authority) => {
                // One pass over the authority (`[user@]host[:port]`,
                // validated by `http`), rather than `host()` and
                // `port_u16()` each parsing it.
                let (host, port, upper) = split_authority(authority.as_str());
                // The split saw every byte of the host: most are normal
                // already.
                let host = if upper || host.ends_with('.') || host.starts_with('[') {
                    normalize_host(host)
                } else {
                    Cow::Borrowed(host)
                };
                (host, port)
            }
            None => {
                let (host, port) = split_host_port(host_header);
                (normalize_host(host), port)
            }
        };
        (
            host,
            port.or_else(|| uri.scheme_str().and_then(default_port)),
        )
    }

    /// The request's method, when the target was made from a request or
    /// given one.
    pub fn method(&self) -> Option<&http::Method> {
        self.method
    }

    /// The normalised host (empty when the request named none).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path.
    pub fn path(&self) -> &str {
        self.path
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host, port).
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h, port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (s, None),
    }
}

/// `[user@]host[:port]` split as [`split_host_port`] splits what follows
/// the `@`; also says whether the host part has an uppercase letter.
///
/// Authorities are short, and most are a bare name: one pass that only
/// counts (uppercase letters, colons, `@`s) without branching on each byte,
/// which the compiler turns into vector operations, then a search for a
/// colon or an `@` only where there is one.
#[inline]
fn split_authority(a: &str) -> (&str, Option<u16>, bool) {
    let b = a.as_bytes();
    let (upper, colons, ats) = b.iter().fold((0u32, 0u32, 0u32), |(u, c, at), &x| {
        (
            u + u32::from(x.is_ascii_uppercase()),
            c + u32::from(x == b':'),
            at + u32::from(x == b'@'),
        )
    });
    if ats != 0 {
        // User information: the host is what follows the last `@`.
        let start = b.iter().rposition(|&x| x == b'@').map_or(0, |i| i + 1);
        let (host, port, _) = split_authority(&a[start..]);
        return (host, port, host.bytes().any(|x| x.is_ascii_uppercase()));
    }
    let upper = upper != 0;
    if a.starts_with('[') {
        let (host, port) = split_host_port(a);
        return (host, port, upper);
    }
    match colons {
        0 => (a, None, upper),
        1 => match a.split_once(':') {
            Some((host, port)) => (host, port.parse().ok(), upper),
            None => (a, None, upper),
        },
        // A bare IPv6 address (several colons): no port.
        _ => (a, None, upper),
    }
}

/// Lowercase, no trailing dot, no IPv6 brackets; borrows when already so.
pub(crate) fn normalize_host(host: &str) -> Cow<'_, str> {
    let mut h = host;
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        h = inner;
    }
    if let Some(stripped) = h.strip_suffix('.') {
        h = stripped;
    }
    // A fold without early exit vectorises; hosts are short.
    if h.bytes()
        .fold(false, |upper, b| upper | b.is_ascii_uppercase())
    {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// A parsed host pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Exact(Box<str>),
    /// The suffix after `*.`.
    Wildcard(Box<str>),
    Any,
}

/// Parses `host`, `*.suffix`, `*`, each with an optional `:port`.
pub(crate) fn parse_pattern(pattern: &str) -> Result<(HostPattern, Option<u16>), Error> {
    let bad = |reason: &str| Err(Error::config(format!("host rule `{pattern}`"), reason));
    let trimmed = pattern.trim();
    if trimmed.is_empty() {
        return bad("the host is empty; write a name like `api.example.com` or `*.example.com`");
    }
    if trimmed.contains('/') {
        return bad("a host rule has no scheme or path; give the path with `.path(..)`");
    }
    if !trimmed.is_ascii() {
        return bad(
            "write internationalised names in punycode, as they appear in URIs (`xn--...`)",
        );
    }
    let port_err = "the port is not a number from 0 to 65535";
    let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return bad("an IPv6 address opened with `[` needs its closing `]`");
        };
        match after {
            "" => (h, None),
            a => match a.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
                Some(p) => (h, Some(p)),
                None => return bad(port_err),
            },
        }
    } else if let Some((h, p)) = trimmed.split_once(':').filter(|(_, p)| !p.contains(':')) {
        match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return bad(port_err),
        }
    } else {
        // No port, or a bare IPv6 address.
        (trimmed, None)
    };
    let host = normalize_host(host);
    let pattern = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return bad("a wildcard is `*.` followed by a domain, like `*.example.com`");
        }
        HostPattern::Wildcard(suffix.into())
    } else if host.contains('*') {
        return bad("`*` may only stand alone or as the first label (`*.example.com`)");
    } else if host.is_empty() {
        return bad("the host is empty");
    } else {
        HostPattern::Exact(host.as_ref().into())
    };
    Ok((pattern, port))
}

/// Normalises a path prefix: a leading `/`, no trailing `/` (but `/` itself).
pub(crate) fn parse_path(prefix: &str) -> Result<Box<str>, Error> {
    if prefix.contains(['?', '#']) || prefix.contains(char::is_whitespace) {
        return Err(Error::config(
            format!("path prefix `{prefix}`"),
            "a path prefix is a plain path like `/search`, without query, fragment or spaces",
        ));
    }
    let mut p = prefix.trim_end_matches('/').to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    Ok(p.into())
}

/// Whether `path` lies under `prefix` on a segment boundary.
fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let path = if path.is_empty() { "/" } else { path };
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Where a rule sends a request.
#[derive(Clone)]
pub(crate) struct Route {
    port: Option<u16>,
    /// The source's index (sources are counted in `u32`).
    source: u32,
    /// A thin pointer (8 bytes, where a `Box<str>` takes 16), so that a
    /// route with its set fits the table's entry in one cache line.
    #[allow(clippy::box_collection, clippy::redundant_allocation)]
    path: Option<Box<Box<str>>>,
    /// The source's one bucket set, when it has no per-host sets: a request
    /// routed here reaches its set without reading the source's state.
    set: Option<Arc<Buckets>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("port", &self.port)
            .field("source", &self.source)
            .field("path", &self.path)
            .field("set", &self.set.is_some())
            .finish()
    }
}

impl Route {
    /// Whether `target` is under this rule's port and path (its host
    /// matched already).
    #[inline]
    fn matches(&self, target: &Target<'_>) -> bool {
        (self.port.is_none() || self.port == target.port)
            && self
                .path
                .as_ref()
                .is_none_or(|p| path_matches(p, target.path))
    }

    /// The index of the source the rule belongs to.
    #[inline]
    pub(crate) fn source(&self) -> usize {
        self.source as usize
    }

    /// The source's one bucket set, when it has no per-host sets.
    #[inline]
    pub(crate) fn set(&self) -> Option<&Arc<Buckets>> {
        self.set.as_ref()
    }
}

/// The routes of one host pattern; the first inline, so that a lookup
/// follows no pointer beyond the table's own entry.
#[derive(Clone, Debug)]
struct Routes {
    first: Route,
    /// Rare: the same host under other ports or paths (boxed, so that the
    /// table entry stays within a cache line).
    // A thin pointer (8 bytes) where a `Vec` would take 24.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Route>>>,
}

impl Routes {
    fn iter(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.first).chain(self.more.iter().flat_map(|m| m.iter()))
    }

    /// The most specific of these routes that matches `target`; the one
    /// route of most hosts checked in place.
    #[inline]
    fn best(&self, target: &Target<'_>) -> Option<&Route> {
        match &self.more {
            None => self.first.matches(target).then_some(&self.first),
            Some(_) => best(self.iter(), target),
        }
    }
}

/// The rule table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Router {
    exact: HostMap<Routes, Whole<Routes>>,
    wildcard: HostMap<Routes, Whole<Routes>>,
    any: Vec<Route>,
}

impl Router {
    pub(crate) fn add(
        &mut self,
        pattern: &str,
        path: Option<&str>,
        source: usize,
    ) -> Result<(), Error> {
        let (host, port) = parse_pattern(pattern)?;
        let path = path.map(parse_path).transpose()?;
        let source = u32::try_from(source)
            .map_err(|_| Error::config("sources", "more than 4,294,967,295 sources; merge some"))?;
        let route = Route {
            port,
            path: path.map(Box::new),
            source,
            set: None,
        };
        let same = |r: &Route| r.port == route.port && r.path == route.path;
        let taken = match &host {
            HostPattern::Exact(h) => self
                .exact
                .get(&self.exact.probe(h))
                .and_then(|l| l.iter().find(|r| same(r)).cloned()),
            HostPattern::Wildcard(h) => self
                .wildcard
                .get(&self.wildcard.probe(h))
                .and_then(|l| l.iter().find(|r| same(r)).cloned()),
            HostPattern::Any => self.any.iter().find(|r| same(r)).cloned(),
        };
        if let Some(other) = taken {
            return Err(Error::config(
                format!("host rule `{pattern}`"),
                format!(
                    "the same host, port and path are already routed (source #{})",
                    other.source + 1
                ),
            ));
        }
        let map = match host {
            HostPattern::Exact(h) => (&mut self.exact, h),
            HostPattern::Wildcard(h) => (&mut self.wildcard, h),
            HostPattern::Any => {
                self.any.push(route);
                return Ok(());
            }
        };
        let (table, host) = map;
        let probe = table.probe(&host);
        match table.get_mut(&probe) {
            Some(routes) => routes.more.get_or_insert_with(Box::default).push(route),
            None => {
                let routes = Routes {
                    first: route,
                    more: None,
                };
                table.insert_new(&probe, HostKey::from(&*host), routes);
            }
        }
        Ok(())
    }

    /// Gives every rule of a source without per-host sets that source's
    /// one set (`set_of(i)` for source `i`), for [`Route::set`].
    pub(crate) fn attach(&mut self, set_of: impl Fn(usize) -> Option<Arc<Buckets>>) {
        let tables = self.exact.values_mut().chain(self.wildcard.values_mut());
        let routes = tables
            .flat_map(|r| {
                std::iter::once(&mut r.first).chain(r.more.iter_mut().flat_map(|m| m.iter_mut()))
            })
            .chain(self.any.iter_mut());
        for r in routes {
            r.set = set_of(r.source());
        }
    }

    /// The most specific rule matching `target`.
    #[inline]
    pub(crate) fn route(&self, target: &Target<'_>) -> Option<&Route> {
        let host = target.host();
        if !self.exact.is_empty() {
            if let Some(routes) = self.exact.get(&self.exact.probe(host)) {
                if let Some(s) = routes.best(target) {
                    return Some(s);
                }
            }
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(s) = self
                    .wildcard
                    .get(&self.wildcard.probe(rest))
                    .and_then(|r| r.best(target))
                {
                    return Some(s);
                }
            }
        }
        best(self.any.iter(), target)
    }
}

#[inline]
fn best<'r>(routes: impl Iterator<Item = &'r Route>, target: &Target<'_>) -> Option<&'r Route> {
    let mut found: Option<(&Route, (bool, usize))> = None;
    for r in routes.filter(|r| r.matches(target)) {
        let rank = (r.port.is_some(), r.path.as_ref().map_or(0, |p| p.len()));
        if found.is_none_or(|(_, best)| rank > best) {
            found = Some((r, rank));
        }
    }
    found.map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_entry_fits_one_cache_line() {
        // The key, and the first route with its set: a lookup reads one line.
        assert_eq!(std::mem::size_of::<Whole<Routes>>(), 64);
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("a.com:80"), ("a.com", Some(80)));
        assert_eq!(split_host_port("[::1]:3000"), ("::1", Some(3000)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("a.com"), ("a.com", None));
    }

    /// What `from_uri` did before `split_authority`: the part after the
    /// last `@`, split by `split_host_port`.
    fn two_passes(a: &str) -> (&str, Option<u16>) {
        split_host_port(a.rsplit_once('@').map_or(a, |(_, h)| h))
    }

    #[test]
    fn authority_splitting_matches_the_two_pass_split() {
        for a in [
            "",
            "a.com",
            "a.com:80",
            "a.com:",
            "a.com:99999",
            "user@a.com:8080",
            "user:pw@a.com",
            "user:pw@a.com:1",
            "u@v@a.com:2",
            "[::1]:3000",
            "u@[::1]",
            "::1",
            "@",
            ":",
            "@:5",
        ] {
            let (h, p, _) = split_authority(a);
            assert_eq!((h, p), two_passes(a), "{a:?}");
        }
        proptest::proptest!(|(a in "[a-zA-Z@:\\[\\]0-9.]{0,24}")| {
            let (h, p, upper) = split_authority(&a);
            proptest::prop_assert_eq!((h, p), two_passes(&a));
            // Whatever it says of case, the target's host is normalised.
            if !upper {
                proptest::prop_assert!(!h.bytes().any(|b| b.is_ascii_uppercase()));
            }
        });
    }

    #[test]
    fn path_boundaries() {
        assert!(path_matches("/search", "/search"));
        assert!(path_matches("/search", "/search/x"));
        assert!(!path_matches("/search", "/searchx"));
        assert!(!path_matches("/search", "/"));
        assert!(path_matches("/", ""));
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        for (p, hint) in [
            ("", "empty"),
            ("https://a.com", "no scheme or path"),
            ("a.*.com", "first label"),
            ("*.*.com", "followed by a domain"),
            ("bücher.example", "punycode"),
            ("a.com:http", "port"),
            ("a.com:99999", "port"),
        ] {
            let e = parse_pattern(p).unwrap_err().to_string();
            assert!(e.contains(hint), "{p}: {e}");
        }
    }
}
