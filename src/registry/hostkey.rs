//! [`HostKey`] and [`HostMap`]: host names as the keys of the router's and
//! the host tables' maps, kept inline and hashed with a seeded hasher.

use std::collections::HashMap;
use std::fmt;

/// A map keyed by host names, hashed with a seeded hasher (foldhash's,
/// seeded per map): per-host tables are filled from request URIs, which an
/// attacker may choose, so an unseeded hash would let them aim every name at
/// one bucket of the table.
///
/// Keys are [`HostKey`]s, which hold a name of up to [`HostKey::INLINE`]
/// bytes in the table's own entry: a lookup compares the name without
/// following a pointer, so a table of a million hosts costs one cache miss
/// less per request than one keyed by `Box<str>`.
pub(crate) type HostMap<V> = HashMap<HostKey, V, HostHasher>;

/// The seeded hasher of host tables.
#[cfg(not(all(test, tollgate_loom)))]
pub(crate) type HostHasher = foldhash::fast::RandomState;

/// Under loom, a fixed seed: a model must run the same way each time it is
/// replayed, and a sweep visits the sets in the map's order.
#[cfg(all(test, tollgate_loom))]
pub(crate) type HostHasher = foldhash::fast::FixedState;

/// A host name as a table key: inline when short (almost every host name),
/// boxed otherwise. Hashes and compares as the bytes it holds, so a table
/// is looked up with `host.as_bytes()`.
#[derive(Clone)]
pub(crate) struct HostKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline {
        len: u8,
        bytes: [u8; HostKey::INLINE],
    },
    Heap(Box<str>),
}

impl HostKey {
    /// The longest name kept inline: the key is then 32 bytes, and an
    /// entry of the router's table (key and routes) 64.
    pub(crate) const INLINE: usize = 30;

    /// The name's bytes: what the key hashes and compares.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyRepr::Heap(s) => s.as_bytes(),
        }
    }

    /// The name (only ever filled from a `&str`, whole).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl From<&str> for HostKey {
    fn from(s: &str) -> Self {
        if s.len() <= HostKey::INLINE {
            let mut bytes = [0u8; HostKey::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            HostKey(KeyRepr::Inline {
                // At most INLINE (38), so it fits.
                len: s.len() as u8,
                bytes,
            })
        } else {
            HostKey(KeyRepr::Heap(s.into()))
        }
    }
}

impl From<Box<str>> for HostKey {
    fn from(s: Box<str>) -> Self {
        if s.len() <= HostKey::INLINE {
            HostKey::from(&*s)
        } else {
            HostKey(KeyRepr::Heap(s))
        }
    }
}

/// Tables are looked up with `host.as_bytes()`: the bytes, not the `str`,
/// so that a comparison never checks UTF-8 again.
impl std::borrow::Borrow<[u8]> for HostKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for HostKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HostKey {}

impl std::hash::Hash for HostKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, so that `Borrow<[u8]>` lookups agree.
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
