//! What a request is keyed by: the [`KeyExtractor`] trait and the
//! ready-made extractors beside it ([`HeaderKey`], [`ClientIp`],
//! [`PathKey`], [`KeyFn`], and tuples of them for composite keys).
//!
//! An extractor writes the key into a [`KeyWriter`], which keeps it on the
//! stack (longer keys spill to the heap) in two forms: as written, for the
//! tier lookup, and escaped, which names the key's bucket set (see
//! [the module docs](super#how-keys-become-buckets)).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::HeaderName;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

use crate::Error;

/// Chooses the key a request is limited by. Each distinct key gets its own
/// bucket in its tier.
///
/// Implement it for keys of your own; [`KeyFn`] takes a closure instead.
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

/// Keys by a request header, such as an API key: `HeaderKey::new("x-api-key")?`.
/// A request without the header (or with it empty) has no key; of several
/// values, the first counts.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys by the header `name`; an invalid header name is an error.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        HeaderName::from_bytes(name.as_bytes())
            .map(|name| HeaderKey { name })
            .map_err(|_| {
                Error::config(
                    format!("HeaderKey::new({name:?})"),
                    "not a valid header name; use letters, digits and `-`, like `x-api-key`",
                )
            })
    }

    /// The header read.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl KeyExtractor for HeaderKey {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        match request.headers().get(&self.name) {
            Some(v) if !v.is_empty() => {
                key.push(v.as_bytes());
                true
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        format!("the `{}` header", self.name)
    }
}

/// Keys by the path of the request (the route): every client shares the
/// bucket of a path. A guard added with axum's `Router::layer` sees the
/// full path; with `route_layer`, the path that matched.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathKey;

impl KeyExtractor for PathKey {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        key.push_str(request.uri().path());
        true
    }

    fn describe(&self) -> String {
        "the request path".into()
    }
}

/// How [`ClientIp`] finds the address of the connection's peer.
pub type PeerFn = fn(&Extensions) -> Option<IpAddr>;

fn socket_addr_peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// Keys by the client's IP address.
///
/// The peer's address comes from the request's extensions: by default a
/// plain [`SocketAddr`] the server inserts there. axum stores it as
/// `ConnectInfo<SocketAddr>` (with `into_make_service_with_connect_info`),
/// a type this crate cannot name; point [`peer_from`](Self::peer_from) at
/// it:
///
/// ```
/// use std::net::SocketAddr;
/// use axum::extract::ConnectInfo;
/// use tollgate::server::ClientIp;
///
/// let ip = ClientIp::peer()
///     .peer_from(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
/// # let _ = ip;
/// ```
///
/// Behind reverse proxies, [`trusted_proxies`](Self::trusted_proxies)`(n)`
/// reads `X-Forwarded-For` instead: each proxy appends the address it
/// received the request from, so the client is the `n`th address from the
/// right. Anything further left was written by the client and is ignored,
/// so a forged header changes nothing. A header with fewer than `n`
/// addresses (the request did not pass every proxy) or an unreadable entry
/// falls back to the peer. With no trusted proxy (the default) the header
/// is never read.
///
/// IPv4-mapped IPv6 addresses count as IPv4. An IPv6 client usually holds
/// a whole /64; [`ipv6_prefix`](Self::ipv6_prefix)`(64)` keys by it.
#[derive(Clone, Debug)]
pub struct ClientIp<P = PeerFn> {
    peer: P,
    trusted_proxies: usize,
    ipv6_prefix: u8,
}

impl ClientIp {
    /// Keys by the peer's address, read from a [`SocketAddr`] in the
    /// request's extensions.
    pub fn peer() -> Self {
        ClientIp {
            peer: socket_addr_peer,
            trusted_proxies: 0,
            ipv6_prefix: 128,
        }
    }
}

impl<P> ClientIp<P> {
    /// Reads the peer's address with `peer` instead (for axum's
    /// `ConnectInfo`, or a server that stores it its own way).
    pub fn peer_from<F>(self, peer: F) -> ClientIp<F>
    where
        F: Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        ClientIp {
            peer,
            trusted_proxies: self.trusted_proxies,
            ipv6_prefix: self.ipv6_prefix,
        }
    }

    /// Trusts `n` reverse proxies in front of the server: the client is the
    /// `n`th address from the right of `X-Forwarded-For`. Zero (the
    /// default) never reads the header.
    pub fn trusted_proxies(mut self, n: usize) -> Self {
        self.trusted_proxies = n;
        self
    }

    /// Keys IPv6 clients by their first `bits` bits (at most 128, the
    /// default; larger values count as 128).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    fn forwarded(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let n = self.trusted_proxies;
        if n == 0 {
            return None;
        }
        // Right to left over every line of the header, without allocating.
        let mut entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .map(str::trim);
        let entry = entries.nth(n - 1)?;
        entry
            .parse::<IpAddr>()
            .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
            .ok()
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None if self.ipv6_prefix < 128 => {
                    let bits = u128::from(v6);
                    let mask = u128::MAX.checked_shl(128 - self.ipv6_prefix as u32);
                    IpAddr::V6(Ipv6Addr::from(bits & mask.unwrap_or(0)))
                }
                None => ip,
            },
            v4 => v4,
        }
    }
}

impl<P> KeyExtractor for ClientIp<P>
where
    P: Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
{
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        let ip = self
            .forwarded(request.headers())
            .or_else(|| (self.peer)(request.extensions()));
        match ip.map(|ip| self.masked(ip)) {
            Some(IpAddr::V4(v4)) => {
                write_ipv4(key, v4.octets());
                true
            }
            Some(ip) => {
                let _ = fmt::Write::write_fmt(key, format_args!("{ip}"));
                true
            }
            None => false,
        }
    }

    fn describe(&self) -> String {
        if self.trusted_proxies > 0 {
            "the client address (`X-Forwarded-For` or the peer)".into()
        } else {
            "the peer address (insert the connection's `SocketAddr` into the request's \
             extensions, or set `ClientIp::peer_from`)"
                .into()
        }
    }
}

/// Dotted decimal, as `Display` writes it, without the formatting
/// machinery (a third of a guarded request's cost otherwise).
#[inline]
fn write_ipv4(key: &mut KeyWriter, octets: [u8; 4]) {
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if o >= 100 {
            buf[len] = b'0' + o / 100;
            len += 1;
        }
        if o >= 10 {
            buf[len] = b'0' + o / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + o % 10;
        len += 1;
    }
    key.push(&buf[..len]);
}

/// A request's head as a [`KeyFn`] sees it.
#[derive(Debug)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (where servers put connection data).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

/// Keys by a closure: `KeyFn::new(|head, key| ...)` writes the key and
/// returns whether the request has one.
///
/// ```
/// use tollgate::server::{ClientIp, KeyFn};
///
/// // `/login?user=NAME`, per user and client address.
/// let user = KeyFn::new(|head, key| {
///     let query = head.uri.query().unwrap_or("");
///     match query.split('&').find_map(|kv| kv.strip_prefix("user=")) {
///         Some(name) if !name.is_empty() => { key.push_str(name); true }
///         _ => false,
///     }
/// })
/// .describe("the `user` query parameter");
/// let per_user_and_ip = (user, ClientIp::peer());
/// # let _ = per_user_and_ip;
/// ```
#[derive(Clone)]
pub struct KeyFn<F> {
    f: F,
    what: String,
}

impl<F> KeyFn<F>
where
    F: Fn(&RequestHead<'_>, &mut KeyWriter) -> bool + Send + Sync + 'static,
{
    /// Keys by `f`.
    pub fn new(f: F) -> Self {
        KeyFn {
            f,
            what: "a rate-limit key".into(),
        }
    }

    /// What the key is, for the answer to a request without one.
    pub fn describe(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").field("what", &self.what).finish()
    }
}

impl<F> KeyExtractor for KeyFn<F>
where
    F: Fn(&RequestHead<'_>, &mut KeyWriter) -> bool + Send + Sync + 'static,
{
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        (self.f)(&RequestHead::of(request), key)
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// A composite key: every part must be present.
impl<A: KeyExtractor, B2: KeyExtractor> KeyExtractor for (A, B2) {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        if !self.0.extract(request, key) {
            return false;
        }
        key.next_part();
        self.1.extract(request, key)
    }

    fn describe(&self) -> String {
        format!("{} and {}", self.0.describe(), self.1.describe())
    }
}

/// A composite key: every part must be present.
impl<A: KeyExtractor, B2: KeyExtractor, C: KeyExtractor> KeyExtractor for (A, B2, C) {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        if !self.0.extract(request, key) {
            return false;
        }
        key.next_part();
        if !self.1.extract(request, key) {
            return false;
        }
        key.next_part();
        self.2.extract(request, key)
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} and {}",
            self.0.describe(),
            self.1.describe(),
            self.2.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key_of(x: &impl KeyExtractor, req: &Request<()>) -> Option<(String, String)> {
        let mut k = KeyWriter::new(true);
        if !x.extract(req, &mut k) || k.is_empty() {
            return None;
        }
        let raw = k.raw_str().unwrap_or("(not UTF-8)").to_string();
        Some((raw, k.escaped().to_string()))
    }

    #[test]
    fn escaping_keeps_case_and_never_merges_keys() {
        let h = HeaderKey::new("x-api-key").unwrap();
        let req = |v: &str| Request::builder().header("x-api-key", v).body(()).unwrap();
        let (raw, esc) = key_of(&h, &req("AbC-1.z%")).unwrap();
        assert_eq!(raw, "AbC-1.z%");
        assert_eq!(esc, "AbC-1.z%25");
        let odd = HeaderValue::from_bytes(b"a b\xff").unwrap();
        let req_odd = Request::builder()
            .header("x-api-key", odd)
            .body(())
            .unwrap();
        assert_eq!(key_of(&h, &req_odd).unwrap().1, "a%20b%ff");
        assert_ne!(key_of(&h, &req("abc")), key_of(&h, &req("ABC")));
        assert_eq!(key_of(&h, &req("")), None);
        assert_eq!(key_of(&h, &Request::new(())), None);
    }

    #[test]
    fn composite_parts_stay_apart() {
        let a = KeyFn::new(|h, k| {
            k.push_str(h.uri.path());
            true
        });
        let b = HeaderKey::new("x-b").unwrap();
        let req = |p: &str, v: &str| Request::builder().uri(p).header("x-b", v).body(()).unwrap();
        let one = key_of(&(a.clone(), b.clone()), &req("/ab", "c")).unwrap();
        let two = key_of(&(a, b), &req("/a", "bc")).unwrap();
        assert_ne!(one.1, two.1);
        assert_eq!(one.0, "/ab|c");
    }

    #[test]
    fn long_keys_spill_to_the_heap() {
        let h = HeaderKey::new("x-api-key").unwrap();
        let long = "K".repeat(500);
        let req = Request::builder()
            .header("x-api-key", &long)
            .body(())
            .unwrap();
        let (raw, esc) = key_of(&h, &req).unwrap();
        assert_eq!(raw, long);
        assert_eq!(esc, long);
        let spaced = " ".repeat(100);
        let req = Request::builder()
            .header("x-api-key", format!("a{spaced}b"))
            .body(())
            .unwrap();
        assert_eq!(
            key_of(&h, &req).unwrap().1,
            format!("a{}b", "%20".repeat(100))
        );
    }

    #[test]
    fn forwarded_for_takes_the_nth_from_the_right() {
        let peer: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let req = |xff: &[&str]| {
            let mut b = Request::builder();
            for v in xff {
                b = b.header("x-forwarded-for", *v);
            }
            let mut r = b.body(()).unwrap();
            r.extensions_mut().insert(peer);
            r
        };
        let ip = |x: &ClientIp, r: &Request<()>| key_of(x, r).map(|k| k.0);
        let direct = ClientIp::peer();
        assert_eq!(ip(&direct, &req(&["6.6.6.6"])).unwrap(), "192.0.2.9");
        let one = ClientIp::peer().trusted_proxies(1);
        assert_eq!(ip(&one, &req(&["6.6.6.6, 10.0.0.1"])).unwrap(), "10.0.0.1");
        let two = ClientIp::peer().trusted_proxies(2);
        assert_eq!(
            ip(&two, &req(&["6.6.6.6, 10.0.0.1", "10.0.0.2"])).unwrap(),
            "10.0.0.1"
        );
        // Fewer entries than proxies, or garbage: the peer.
        assert_eq!(ip(&two, &req(&["10.0.0.2"])).unwrap(), "192.0.2.9");
        assert_eq!(ip(&one, &req(&["unknown"])).unwrap(), "192.0.2.9");
        assert_eq!(ip(&direct, &Request::new(())), None);
    }

    #[test]
    fn ipv4_is_written_as_display_writes_it() {
        for ip in ["0.0.0.0", "10.0.0.1", "192.168.100.255", "1.20.255.9"] {
            let v4: std::net::Ipv4Addr = ip.parse().unwrap();
            let mut k = KeyWriter::new(true);
            write_ipv4(&mut k, v4.octets());
            assert_eq!(k.raw_str(), Some(ip));
        }
    }

    #[test]
    fn ipv6_prefixes_and_mapped_addresses() {
        let x = ClientIp::peer().ipv6_prefix(64);
        assert_eq!(
            x.masked("2001:db8:1:2:3:4:5:6".parse().unwrap())
                .to_string(),
            "2001:db8:1:2::"
        );
        assert_eq!(
            x.masked("::ffff:1.2.3.4".parse().unwrap()).to_string(),
            "1.2.3.4"
        );
        let none = ClientIp::peer().ipv6_prefix(0);
        assert_eq!(
            none.masked("2001:db8::1".parse().unwrap()).to_string(),
            "::"
        );
    }
}
