//! What a request is keyed by: the [`KeyExtractor`] trait (the
//! ready-made extractors are in `extract.rs` and `client_ip.rs`).
//!
//! An extractor writes the key into a [`KeyWriter`], which keeps it on the
//! stack (longer keys spill to the heap) in two forms: as written, for the
//! tier lookup, and escaped, which names the key's bucket set (see
//! [the module docs](super#how-keys-become-buckets)). [`composite_key`] and
//! [`key_parts`] write and read the first form of a key of several parts.

use std::borrow::Cow;
use std::fmt;

use http::Request;

/// Chooses the key a request is limited by. Each distinct key gets its own
/// bucket in its tier.
///
/// Implement it for keys of your own; [`KeyFn`](super::KeyFn) takes a
/// closure instead.
///
/// ```
/// use tollgate::server::{KeyExtractor, KeyWriter};
///
/// /// Keys by the tenant named in the first path segment: `/t/acme/...`.
/// #[derive(Clone)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     fn extract<B>(&self, request: &http::Request<B>, key: &mut KeyWriter) -> bool {
///         let mut segments = request.uri().path().split('/').skip(1);
///         match (segments.next(), segments.next()) {
///             (Some("t"), Some(tenant)) if !tenant.is_empty() => {
///                 key.push_str(tenant);
///                 true
///             }
///             _ => false,
///         }
///     }
///
///     fn describe(&self) -> String {
///         "the tenant in the path (`/t/NAME/...`)".into()
///     }
/// }
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// Writes the request's key into `key`; returns `false` when the request
    /// carries none (an empty key counts as none too).
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool;

    /// What the key is, for the answer to a request without one: "the
    /// `x-api-key` header".
    fn describe(&self) -> String {
        "a rate-limit key".into()
    }
}

/// Where an extractor writes its key; see [`KeyExtractor`].
///
/// It keeps two forms. The key as written, which a tier lookup
/// ([`key_tier`](super::GuardBuilder::key_tier),
/// [`tier_by`](super::GuardBuilder::tier_by)) reads: a key of one part is
/// its bytes as they are; the parts of a composite key are joined by `|`,
/// with a `\` before every `|` and `\` inside a part, so that
/// `("a|b", "c")` is `a\|b|c` and `("a", "b|c")` is `a|b\|c`
/// ([`composite_key`] writes such a key, [`key_parts`] reads one). And the
/// same bytes escaped (printable ASCII as it is, `%`, spaces, control bytes
/// and non-ASCII as `%` and two hex digits, parts joined by a space), which
/// names the key's bucket set: ASCII whatever the key's bytes, case kept,
/// and never two keys in one.
///
/// A key is escaped once it has a second part: an extractor that writes one
/// part for some requests and several for others can give both kinds the
/// same form as written (`a|b`), though never the same bucket set.
pub struct KeyWriter {
    /// Only kept for a tier lookup (and not even zeroed otherwise).
    raw: Option<SmallBuf<RAW_INLINE>>,
    /// Whether a second part was started: `|` and `\` are escaped in `raw`.
    composite: bool,
    escaped: SmallBuf<ESCAPED_INLINE>,
}

const RAW_INLINE: usize = 64;
const ESCAPED_INLINE: usize = 96;

/// Whether a key's byte names its bucket set as it is: printable ASCII
/// other than `%`, the escape. A space, a control byte, `%` and anything
/// beyond ASCII become `%` and two hex digits.
#[inline]
fn is_plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'%'
}

impl KeyWriter {
    pub(crate) fn new(keep_raw: bool) -> Self {
        KeyWriter {
            raw: keep_raw.then(SmallBuf::new),
            composite: false,
            escaped: SmallBuf::new(),
        }
    }

    /// Appends bytes to the key.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        if let Some(raw) = &mut self.raw {
            if self.composite {
                escape_part(raw, bytes);
            } else {
                raw.extend(bytes);
            }
        }
        // Runs of printable bytes are copied whole; the rest is escaped.
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| !is_plain(b)) {
            let b = rest[at];
            self.escaped.extend(&rest[..at]);
            const HEX: &[u8; 16] = b"0123456789abcdef";
            self.escaped
                .extend(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            rest = &rest[at + 1..];
        }
        self.escaped.extend(rest);
    }

    /// [`push`](Self::push) for bytes that are all plain and none special
    /// (a written address: digits, dots): nothing to scan for.
    #[inline]
    pub(crate) fn push_plain(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.iter().all(|&b| is_plain(b) && !is_special(b)));
        if let Some(raw) = &mut self.raw {
            raw.extend(bytes);
        }
        self.escaped.extend(bytes);
    }

    /// Appends text to the key.
    #[inline]
    pub fn push_str(&mut self, s: &str) {
        self.push(s.as_bytes());
    }

    /// Starts the next part of a composite key: `("alice", "10.0.0.1")` and
    /// `("alice1", "0.0.0.1")` stay two keys, and so do `("a|b", "c")` and
    /// `("a", "b|c")`.
    pub fn next_part(&mut self) {
        if let Some(raw) = &mut self.raw {
            if !self.composite && raw.as_slice().iter().any(|&b| is_special(b)) {
                // The first part was written as it is; now that the key has
                // parts, it is escaped like the others (rare: most keys
                // hold no `|` or `\`).
                let first = raw.as_slice().to_vec();
                raw.clear();
                escape_part(raw, &first);
            }
            raw.push(b'|');
        }
        self.composite = true;
        // A space: data never leaves one unescaped.
        self.escaped.push(b' ');
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.escaped.as_slice().is_empty()
    }

    /// The key as written, when it is UTF-8 (and kept: only a guard that
    /// maps keys to tiers keeps it).
    pub(crate) fn raw_str(&self) -> Option<&str> {
        std::str::from_utf8(self.raw.as_ref()?.as_slice()).ok()
    }

    /// The escaped key: what names its bucket set in a tier.
    pub(crate) fn escaped(&self) -> &str {
        // Escaped keys are ASCII by construction.
        std::str::from_utf8(self.escaped.as_slice()).unwrap_or("")
    }
}

/// Whether a byte of a part is escaped in a composite key as written.
#[inline]
fn is_special(b: u8) -> bool {
    b == b'|' || b == b'\\'
}

/// Appends one part of a composite key, `\` before each `|` and `\`.
fn escape_part<const N: usize>(out: &mut SmallBuf<N>, part: &[u8]) {
    let mut rest = part;
    while let Some(at) = rest.iter().position(|&b| is_special(b)) {
        out.extend(&rest[..at]);
        out.extend(&[b'\\', rest[at]]);
        rest = &rest[at + 1..];
    }
    out.extend(rest);
}

/// A composite key as written, from its parts: what
/// [`key_tier`](super::GuardBuilder::key_tier) takes for a key of several
/// parts, and what [`tier_by`](super::GuardBuilder::tier_by) is given. The
/// parts are joined by `|`, with a `\` before each `|` and `\` inside a
/// part (see [`KeyWriter`]).
///
/// ```
/// use tollgate::server::{composite_key, key_parts};
///
/// assert_eq!(composite_key(["alice", "10.0.0.1"]), "alice|10.0.0.1");
/// assert_eq!(composite_key(["a|b", "c"]), r"a\|b|c");
/// let parts: Vec<_> = key_parts(r"a\|b|c").collect();
/// assert_eq!(parts, ["a|b", "c"]);
/// ```
pub fn composite_key<I>(parts: I) -> String
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        for c in part.as_ref().chars() {
            if c == '|' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// The parts of a composite key as written, unescaped: `a\|b|c` is
/// `"a|b"` and `"c"` (see [`composite_key`]). Meant for the key a
/// [`tier_by`](super::GuardBuilder::tier_by) function is given when the
/// guard's extractor has several parts; a key of one part is not escaped,
/// so split it only if it has parts.
pub fn key_parts(key: &str) -> KeyParts<'_> {
    KeyParts { rest: Some(key) }
}

/// The iterator of [`key_parts`].
#[derive(Clone, Debug)]
pub struct KeyParts<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for KeyParts<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        let mut escaped = false;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b'|' => break,
                _ => i += 1,
            }
        }
        let end = i.min(bytes.len());
        self.rest = rest.get(end + 1..).filter(|_| end < bytes.len());
        let part = &rest[..end];
        if !escaped {
            return Some(Cow::Borrowed(part));
        }
        let mut out = String::with_capacity(part.len());
        let mut chars = part.chars();
        while let Some(c) = chars.next() {
            // A `\` takes the next character as it is (a lone one at the
            // end is kept).
            out.push(if c == '\\' {
                chars.next().unwrap_or(c)
            } else {
                c
            });
        }
        Some(Cow::Owned(out))
    }
}

impl fmt::Write for KeyWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl fmt::Debug for KeyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWriter")
            .field("escaped", &String::from_utf8_lossy(self.escaped.as_slice()))
            .finish_non_exhaustive()
    }
}

/// Bytes on the stack up to `N`, then on the heap: most keys are short, and
/// a request should not allocate for its key.
struct SmallBuf<const N: usize> {
    len: usize,
    inline: [u8; N],
    heap: Option<Vec<u8>>,
}

impl<const N: usize> SmallBuf<N> {
    fn new() -> Self {
        SmallBuf {
            len: 0,
            inline: [0; N],
            heap: None,
        }
    }

    #[inline]
    fn push(&mut self, b: u8) {
        match &mut self.heap {
            None if self.len < N => {
                self.inline[self.len] = b;
                self.len += 1;
            }
            _ => self.extend(&[b]),
        }
    }

    #[inline]
    fn extend(&mut self, bytes: &[u8]) {
        if let Some(heap) = &mut self.heap {
            heap.extend_from_slice(bytes);
        } else if self.len + bytes.len() <= N {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut heap = Vec::with_capacity((self.len + bytes.len()) * 2);
            heap.extend_from_slice(&self.inline[..self.len]);
            heap.extend_from_slice(bytes);
            self.heap = Some(heap);
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.heap = None;
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => &self.inline[..self.len],
        }
    }
}

#[cfg(test)]
pub(super) fn key_of<X: KeyExtractor>(x: &X, req: &Request<()>) -> Option<(String, String)> {
    let mut k = KeyWriter::new(true);
    if !x.extract(req, &mut k) || k.is_empty() {
        return None;
    }
    let raw = k.raw_str().unwrap_or("(not UTF-8)").to_string();
    Some((raw, k.escaped().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(parts: &[&[u8]]) -> String {
        let mut k = KeyWriter::new(true);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.next_part();
            }
            k.push(p);
        }
        k.raw_str().unwrap().to_string()
    }

    #[test]
    fn parts_round_trip_and_never_meet() {
        let cases: [&[&str]; 8] = [
            &["a|b", "c"],
            &["a", "b|c"],
            &["a\\", "b"],
            &["a", "\\b"],
            &["a\\|", "|b\\"],
            &["", ""],
            &["é|ü", "\\é"],
            &["a", "b", "c|"],
        ];
        let mut seen = std::collections::HashSet::new();
        for parts in cases {
            let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
            let written = raw(&bytes);
            assert_eq!(written, composite_key(parts), "{parts:?}");
            let back: Vec<_> = key_parts(&written).collect();
            assert_eq!(back, parts, "{written}");
            assert!(seen.insert(written), "{parts:?}");
        }
        // One part is kept as it is.
        assert_eq!(raw(&[b"a|b\\"]), "a|b\\");
        assert_eq!(key_parts("a\\").collect::<Vec<_>>(), ["a\\"]);
    }
}
