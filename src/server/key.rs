//! What a request is keyed by: the [`KeyExtractor`] trait (the
//! ready-made extractors are in `extract.rs` and `client_ip.rs`).
//!
//! An extractor writes the key into a [`KeyWriter`], which keeps it on the
//! stack (longer keys spill to the heap) in two forms: as written, for the
//! tier lookup, and escaped, which names the key's bucket set (see
//! [the module docs](super#how-keys-become-buckets)).

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
/// It keeps two forms: the bytes as written (parts of a composite key
/// joined by `|`), which a tier lookup reads, and the same bytes escaped
/// (printable ASCII as it is, `%`, spaces, control bytes and non-ASCII as
/// `%` and two hex digits, parts joined by a space), which names the key's
/// bucket set: ASCII whatever the key's bytes, case kept, and never two
/// keys in one.
pub struct KeyWriter {
    /// Only kept for a tier lookup (and not even zeroed otherwise).
    raw: Option<SmallBuf<RAW_INLINE>>,
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
            escaped: SmallBuf::new(),
        }
    }

    /// Appends bytes to the key.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        if let Some(raw) = &mut self.raw {
            raw.extend(bytes);
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

    /// Appends text to the key.
    #[inline]
    pub fn push_str(&mut self, s: &str) {
        self.push(s.as_bytes());
    }

    /// Starts the next part of a composite key: `("alice", "10.0.0.1")` and
    /// `("alice1", "0.0.0.1")` stay two keys.
    pub fn next_part(&mut self) {
        if let Some(raw) = &mut self.raw {
            raw.push(b'|');
        }
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
            .finish()
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
