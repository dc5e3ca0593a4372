//! [`ClientIp`]: keys by the client's address, from the connection or
//! from `X-Forwarded-For` behind trusted proxies.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{Extensions, HeaderMap, Request};

use super::key::{KeyExtractor, KeyWriter};

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
/// so a forged header changes nothing (not even bytes that are not text:
/// only the entry needed is read). An entry may carry a port, and IPv6 may
/// be in brackets (`[2001:db8::1]:4711`). A header with fewer than `n`
/// addresses (the request did not pass every proxy) or an unreadable entry
/// falls back to the peer. With no trusted proxy (the default) the header
/// is never read.
///
/// IPv4-mapped IPv6 addresses count as IPv4. An IPv6 client usually holds
/// a whole /64; [`ipv6_prefix`](Self::ipv6_prefix)`(64)` keys by it.
#[derive(Clone, Debug)]
pub struct ClientIp<P = PeerFn> {
    peer: P,
    /// Whether `peer_from` set `peer`, for the hint when no address is found.
    custom_peer: bool,
    trusted_proxies: usize,
    ipv6_prefix: u8,
}

impl ClientIp {
    /// Keys by the peer's address, read from a [`SocketAddr`] in the
    /// request's extensions.
    pub fn peer() -> Self {
        ClientIp {
            peer: socket_addr_peer,
            custom_peer: false,
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
            custom_peer: true,
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
        // Right to left over every line of the header, as bytes: what the
        // client wrote further left may be anything, and must not make the
        // proxies' entries unreadable.
        let mut entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','));
        parse_entry(entries.nth(n - 1)?)
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
        // Said to a request without an address, which with axum almost
        // always means the app was served without `ConnectInfo`.
        const SERVE: &str =
            "serve the app with `app.into_make_service_with_connect_info::<SocketAddr>()`";
        let fix = if self.custom_peer {
            format!(
                "`ClientIp::peer_from` found none in the request's extensions; with axum, \
                 {SERVE}, which inserts the `ConnectInfo<SocketAddr>` it reads"
            )
        } else {
            format!(
                "no `SocketAddr` in the request's extensions; with axum, {SERVE} and read its \
                 `ConnectInfo` with `ClientIp::peer().peer_from(|ext| \
                 ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))`; other servers \
                 insert the connection's `SocketAddr` into the extensions"
            )
        };
        if self.trusted_proxies > 0 {
            format!("the client address (`X-Forwarded-For` or the peer: {fix})")
        } else {
            format!("the peer address ({fix})")
        }
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port, IPv6
/// in brackets or bare (`192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry.trim_ascii()).ok()?;
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return match ip.parse() {
            Ok(IpAddr::V6(v6)) if port_ok => Some(IpAddr::V6(v6)),
            _ => None,
        };
    }
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

/// Dotted decimal, as `Display` writes it, without the formatting
/// machinery (a third of a guarded request's cost otherwise): each octet's
/// digits come from [`OCTETS`], copied four bytes at a time, without a
/// division or a branch per digit.
#[inline]
fn write_ipv4(key: &mut KeyWriter, octets: [u8; 4]) {
    // Four octets of three digits and three dots are 15 bytes; each copy
    // writes four, the last from byte 12.
    let mut buf = [0u8; 16];
    let mut len = 0;
    for o in octets {
        let digits = OCTETS[usize::from(o)];
        buf[len..len + 4].copy_from_slice(&digits);
        len += usize::from(digits[3]);
        buf[len] = b'.';
        len += 1;
    }
    // Digits and dots: nothing to escape.
    key.push_plain(&buf[..len - 1]);
}

/// Each octet's decimal digits, left-aligned, and their count in the last
/// byte (which the next dot or digit overwrites).
static OCTETS: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u8;
        table[i] = if o >= 100 {
            [b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, 3]
        } else if o >= 10 {
            [b'0' + o / 10, b'0' + o % 10, 0, 2]
        } else {
            [b'0' + o, 0, 0, 1]
        };
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::super::key::key_of;
    use super::*;

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
    fn forwarded_entries_with_ports_and_brackets() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        for (entry, want) in [
            (&b" 192.0.2.1 "[..], Some(v4)),
            (b"192.0.2.1:4711", Some(v4)),
            (b"2001:db8::1", Some(v6)),
            (b"[2001:db8::1]", Some(v6)),
            (b"[2001:db8::1]:4711", Some(v6)),
            (b"[2001:db8::1]:", None),
            (b"[2001:db8::1]:99999", None),
            (b"[2001:db8::1]x", None),
            (b"[192.0.2.1]", None),
            (b"[2001:db8::1", None),
            (b"\xff192.0.2.1", None),
            (b"unknown", None),
            (b"", None),
        ] {
            assert_eq!(parse_entry(entry), want, "{}", entry.escape_ascii());
        }
    }

    #[test]
    fn ipv4_is_written_as_display_writes_it() {
        for ip in ["0.0.0.0", "10.0.0.1", "192.168.100.255", "1.20.255.9"] {
            let v4: std::net::Ipv4Addr = ip.parse().unwrap();
            let mut k = KeyWriter::new(true);
            write_ipv4(&mut k, v4.octets());
            assert_eq!(k.raw_str(), Some(ip));
        }
        // Every octet value, in every position.
        for o in 0..=255u8 {
            for octets in [[o, 0, 0, 0], [9, o, 99, 1], [255, 10, o, 7], [1, 2, 3, o]] {
                let mut k = KeyWriter::new(true);
                write_ipv4(&mut k, octets);
                let shown = std::net::Ipv4Addr::from(octets).to_string();
                assert_eq!(k.raw_str(), Some(shown.as_str()));
            }
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
