//! [`HostKey`] and [`HostMap`]: host names as the keys of the router's and
//! the host tables' maps, kept inline and hashed once with a seeded hasher.
//!
//! A lookup hashes the name once, into a [`Probe`]: the host table picks
//! its shard from some bits of that hash and the shard's map its slot from
//! others, where a `std` map would hash the name again (its lookup API takes
//! no hash). A probe's name is compared with an inline key's by two
//! overlapping loads of a fixed width from each (the first and the last 16,
//! 8 or 4 bytes), in registers, not by a call to `memcmp`; nor is the name
//! copied into a key's shape first, which would cost a stall as the copy
//! is read back.

use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;

use hashbrown::HashTable;

/// A map keyed by host names, hashed with a seeded hasher (foldhash's,
/// seeded per map, or per host table for its shards together): per-host
/// tables are filled from request URIs, which an attacker may choose, so an
/// unseeded hash would let them aim every name at one bucket of the table.
///
/// Keys are [`HostKey`]s, which hold a name of up to [`HostKey::INLINE`]
/// bytes in the table's own entry: a lookup compares the name without
/// following a pointer, so a table of a million hosts costs one cache miss
/// less per request than one keyed by `Box<str>`.
pub(crate) struct HostMap<V, E: Slot<V> = Half<V>> {
    table: HashTable<E>,
    hasher: HostHasher,
    _value: PhantomData<V>,
}

/// How a map lays out its entries: aligned to their size, so that a lookup
/// reads one cache line of entries, where entries of 40 bytes (say) would
/// straddle two lines for most names. [`Half`] for a key and a pointer
/// (the host tables: two entries a line), [`Whole`] for a key and more
/// (the router: one entry a line).
pub(crate) trait Slot<V> {
    fn new(key: HostKey, value: V) -> Self;
    fn key(&self) -> &HostKey;
    fn value(&self) -> &V;
    fn value_mut(&mut self) -> &mut V;
}

/// An entry of 32 bytes: a key and a pointer.
#[derive(Clone)]
#[repr(align(32))]
pub(crate) struct Half<V> {
    key: HostKey,
    value: V,
}

/// An entry of 64 bytes, one a cache line.
#[derive(Clone)]
#[repr(align(64))]
pub(crate) struct Whole<V> {
    key: HostKey,
    value: V,
}

macro_rules! slot {
    ($t:ident) => {
        impl<V> Slot<V> for $t<V> {
            #[inline]
            fn new(key: HostKey, value: V) -> Self {
                $t { key, value }
            }
            #[inline]
            fn key(&self) -> &HostKey {
                &self.key
            }
            #[inline]
            fn value(&self) -> &V {
                &self.value
            }
            #[inline]
            fn value_mut(&mut self) -> &mut V {
                &mut self.value
            }
        }
    };
}
slot!(Half);
slot!(Whole);

/// The seeded hasher of host tables.
#[cfg(not(all(test, tollgate_loom)))]
pub(crate) type HostHasher = foldhash::fast::RandomState;

/// Under loom, a fixed seed: a model must run the same way each time it is
/// replayed, and a sweep visits the sets in the map's order.
#[cfg(all(test, tollgate_loom))]
pub(crate) type HostHasher = foldhash::fast::FixedState;

/// A name to look up, hashed: see the [module docs](self).
pub(crate) struct Probe<'a> {
    hash: u64,
    bytes: &'a [u8],
}

impl<'a> Probe<'a> {
    /// `host` hashed with `hasher` (the one of the maps it is looked up in).
    #[inline]
    pub(crate) fn new(host: &'a str, hasher: &HostHasher) -> Self {
        let bytes = host.as_bytes();
        Probe {
            hash: hasher.hash_one(bytes),
            bytes,
        }
    }

    /// The name's hash: a host table picks a shard from its high bits.
    #[inline]
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }
}

/// A name of at most [`HostKey::INLINE`] bytes, padded with zeros.
#[derive(Clone, Copy)]
struct Inline {
    len: u8,
    bytes: [u8; HostKey::INLINE],
}

impl Inline {
    #[inline]
    fn new(name: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; HostKey::INLINE];
        bytes.get_mut(..name.len())?.copy_from_slice(name);
        // At most INLINE (22), so it fits.
        Some(Inline {
            len: name.len() as u8,
            bytes,
        })
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A host name as a table key: inline when short (almost every host name),
/// boxed otherwise.
#[derive(Clone)]
pub(crate) struct HostKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline(Inline),
    Heap(Box<str>),
}

impl HostKey {
    /// The longest name kept inline (most hosts' names are shorter): the
    /// key is then 24 bytes, an entry of a host table (key and set) 32,
    /// and one of the router's (key and routes) 64.
    pub(crate) const INLINE: usize = 22;

    /// The name's bytes: what the key hashes and compares.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline(i) => i.as_bytes(),
            KeyRepr::Heap(s) => s.as_bytes(),
        }
    }

    /// The name (only ever filled from a `&str`, whole).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Whether this is the probe's name.
    #[inline]
    fn matches(&self, probe: &Probe<'_>) -> bool {
        match &self.0 {
            KeyRepr::Inline(a) => same_short(a.as_bytes(), probe.bytes),
            KeyRepr::Heap(s) => s.as_bytes() == probe.bytes,
        }
    }
}

/// `a == b` for an `a` of at most 32 bytes: the first and the last word of
/// a width that covers the length (two loads that overlap when it is not a
/// multiple of it), instead of a call to `memcmp`.
#[inline]
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        16..=32 => {
            let w = |s: &[u8], i: usize| s[i..i + 16].try_into().ok().map(u128::from_ne_bytes);
            w(a, 0) == w(b, 0) && w(a, n - 16) == w(b, n - 16)
        }
        8..=15 => {
            let w = |s: &[u8], i: usize| s[i..i + 8].try_into().ok().map(u64::from_ne_bytes);
            w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8)
        }
        4..=7 => {
            let w = |s: &[u8], i: usize| s[i..i + 4].try_into().ok().map(u32::from_ne_bytes);
            w(a, 0) == w(b, 0) && w(a, n - 4) == w(b, n - 4)
        }
        _ => a == b,
    }
}

impl From<&str> for HostKey {
    fn from(s: &str) -> Self {
        match Inline::new(s.as_bytes()) {
            Some(i) => HostKey(KeyRepr::Inline(i)),
            None => HostKey(KeyRepr::Heap(s.into())),
        }
    }
}

impl From<Box<str>> for HostKey {
    fn from(s: Box<str>) -> Self {
        match Inline::new(s.as_bytes()) {
            Some(i) => HostKey(KeyRepr::Inline(i)),
            None => HostKey(KeyRepr::Heap(s)),
        }
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<V, E: Slot<V>> Default for HostMap<V, E> {
    fn default() -> Self {
        Self::with_hasher(HostHasher::default())
    }
}

impl<V, E: Slot<V> + Clone> Clone for HostMap<V, E> {
    fn clone(&self) -> Self {
        HostMap {
            table: self.table.clone(),
            hasher: self.hasher.clone(),
            _value: PhantomData,
        }
    }
}

impl<V: fmt::Debug, E: Slot<V>> fmt::Debug for HostMap<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.table.iter().map(|e| (e.key(), e.value())))
            .finish()
    }
}

impl<V, E: Slot<V>> HostMap<V, E> {
    /// An empty map hashing with `hasher` (a host table gives its shards
    /// one, so that one hash picks the shard and the slot).
    pub(crate) fn with_hasher(hasher: HostHasher) -> Self {
        HostMap {
            table: HashTable::new(),
            hasher,
            _value: PhantomData,
        }
    }

    /// `host` hashed for this map.
    #[inline]
    pub(crate) fn probe<'a>(&self, host: &'a str) -> Probe<'a> {
        Probe::new(host, &self.hasher)
    }

    /// The value for the probe's name. The probe was hashed with this map's
    /// hasher.
    #[inline]
    pub(crate) fn get(&self, probe: &Probe<'_>) -> Option<&V> {
        self.table
            .find(probe.hash, |e| e.key().matches(probe))
            .map(|e| e.value())
    }

    /// The value for the probe's name, mutably.
    pub(crate) fn get_mut(&mut self, probe: &Probe<'_>) -> Option<&mut V> {
        self.table
            .find_mut(probe.hash, |e| e.key().matches(probe))
            .map(|e| e.value_mut())
    }

    /// Adds `value` for the probe's name, which the map does not hold.
    pub(crate) fn insert_new(&mut self, probe: &Probe<'_>, key: HostKey, value: V) {
        debug_assert!(key.matches(probe));
        let hasher = &self.hasher;
        self.table
            .insert_unique(probe.hash, E::new(key, value), |e| {
                hasher.hash_one(e.key().as_bytes())
            });
    }

    /// Keeps the entries for which `keep` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.table.retain(|e| keep(e.value_mut()));
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.table.iter().map(|e| e.value())
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.table.iter_mut().map(|e| e.value_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_found_and_told_apart() {
        let mut map: HostMap<usize> = HostMap::default();
        let long = "a-name-longer-than-thirty-bytes.example.com";
        for (i, name) in ["a.example", "a.example.", long, ""].iter().enumerate() {
            let p = map.probe(name);
            assert!(map.get(&p).is_none(), "{name} before it is added");
            map.insert_new(&p, HostKey::from(*name), i);
        }
        for (i, name) in ["a.example", "a.example.", long, ""].iter().enumerate() {
            assert_eq!(map.get(&map.probe(name)), Some(&i), "{name}");
        }
        // Prefixes of a long name: inline, and one byte past the inline size.
        assert!(map.get(&map.probe(&long[..HostKey::INLINE])).is_none());
        assert!(map.get(&map.probe(&long[..HostKey::INLINE + 1])).is_none());
        assert!(map.get(&map.probe("b.example")).is_none());
        map.retain(|v| *v != 0);
        assert!(map.get(&map.probe("a.example")).is_none());
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn entries_fill_a_half_or_a_whole_cache_line() {
        use crate::sync::Arc;
        assert_eq!(std::mem::size_of::<HostKey>(), 24);
        assert_eq!(std::mem::size_of::<Half<Arc<()>>>(), 32);
        assert_eq!(std::mem::align_of::<Half<Arc<()>>>(), 32);
        assert_eq!(std::mem::align_of::<Whole<()>>(), 64);
    }

    #[test]
    fn short_names_compare_as_bytes_do_at_every_length() {
        let name = b"abcdefghijklmnopqrstuvwxyz012345";
        for n in 0..=32 {
            let a = &name[..n];
            assert!(same_short(a, a), "{n}");
            for i in 0..n {
                // One byte changed, anywhere: the middle of a long name is
                // covered by the overlapping words.
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!same_short(a, &b), "{n} bytes, byte {i} changed");
            }
            if n > 0 {
                assert!(!same_short(a, &a[..n - 1]), "{n} and one shorter");
            }
        }
    }

    #[test]
    fn maps_of_one_hasher_agree_on_a_probe() {
        let hasher = HostHasher::default();
        let (mut a, mut b): (HostMap<i32>, HostMap<i32>) = (
            HostMap::with_hasher(hasher.clone()),
            HostMap::with_hasher(hasher.clone()),
        );
        let p = Probe::new("api.example.com", &hasher);
        a.insert_new(&p, HostKey::from("api.example.com"), 1);
        b.insert_new(&p, HostKey::from("api.example.com"), 2);
        for i in 0..1000 {
            // Enough entries to grow the tables, rehashing what they hold.
            let name = format!("h{i}.example");
            let q = a.probe(&name);
            a.insert_new(&q, HostKey::from(name.as_str()), 0);
        }
        assert_eq!(a.get(&p), Some(&1));
        assert_eq!(b.get(&p), Some(&2));
    }
}
