//! Floods of host names through a per-host source: 1,000,000 distinct
//! hosts, and 100,000 names chosen to collide under a fixed, unseeded hash
//! (the FNV-style hasher per-host tables used before they were seeded: the
//! names share the low 14 bits of its hash, so a table keyed by it would
//! probe one long run). Reports the 99th percentile of one admission per
//! slice of the flood, which stays flat when the table neither grows past
//! its cap nor lets chosen names pile up; and, for contrast, the same
//! colliding names looked up in a map with that fixed hash.
//!
//! `cargo bench -p tollgate-bench --bench flood`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::Duration;

use tollgate::{ManualClock, Policy, Registry, Source, Target};

/// The fixed host hasher of earlier releases (FNV-1a over 8-byte words
/// with a final avalanche), kept here only to choose colliding names.
#[derive(Default, Clone, Copy)]
struct FixedHasher(u64);

impl Hasher for FixedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap());
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
        for &b in chunks.remainder() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

fn fixed_hash(s: &str) -> u64 {
    use std::hash::Hash;
    let mut h = FixedHasher::default();
    s.hash(&mut h);
    h.finish()
}

const MASK: u64 = (1 << 14) - 1;

/// `n` names whose fixed hash has the same low 14 bits.
fn colliding(n: usize) -> Vec<String> {
    let target = fixed_hash("seed.flood.test") & MASK;
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let name = format!("c{i:x}.flood.test");
        if fixed_hash(&name) & MASK == target {
            out.push(name);
        }
        i += 1;
    }
    out
}

/// p99 of one admission per slice of `names`, in nanoseconds.
fn flood(names: impl Iterator<Item = String>, slices: usize, per_slice: usize) -> Vec<u64> {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let registry = Registry::builder()
        .source(
            Source::new("crawl")
                .limit(Policy::per_second(10.0).unwrap())
                .host("*")
                .per_host(),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let timer = quanta::Clock::new();
    let mut lat = Vec::with_capacity(per_slice);
    let mut out = Vec::new();
    for (k, host) in names.enumerate() {
        if k % 1_000 == 999 {
            // Time passes, so earlier sets go idle and sweeps can free room.
            clock.advance(Duration::from_millis(20));
        }
        let a = timer.raw();
        black_box(registry.check(&Target::new(&host, None, "/"), 1.0).is_ok());
        lat.push(timer.delta_as_nanos(a, timer.raw()));
        if lat.len() == per_slice {
            lat.sort_unstable();
            out.push(lat[per_slice * 99 / 100]);
            lat.clear();
            if out.len() == slices {
                break;
            }
        }
    }
    assert!(registry.host_count("crawl").unwrap() <= tollgate::DEFAULT_MAX_HOSTS);
    out
}

fn show(what: &str, p99: &[u64]) {
    let cells: Vec<String> = p99.iter().map(|n| format!("{n}")).collect();
    println!("| {what} | {} |", cells.join(" | "));
}

fn main() {
    println!("p99 of one admission (ns) per tenth of the flood");
    println!("| flood | 1st | 2nd | 3rd | 4th | 5th | 6th | 7th | 8th | 9th | 10th |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let distinct = (0..).map(|i| format!("h{i}.flood.test"));
    show("1,000,000 distinct hosts", &flood(distinct, 10, 100_000));
    let names = colliding(100_000);
    show(
        "100,000 names colliding under a fixed hash",
        &flood(names.clone().into_iter(), 10, 10_000),
    );
    // Contrast: the same names in a table keyed by the fixed hash.
    let timer = quanta::Clock::new();
    let mut map: HashMap<String, u32, BuildHasherDefault<FixedHasher>> = HashMap::default();
    let mut p99 = Vec::new();
    for chunk in names.chunks(10_000) {
        let mut lat: Vec<u64> = chunk
            .iter()
            .map(|n| {
                let a = timer.raw();
                *map.entry(n.clone()).or_default() += 1;
                timer.delta_as_nanos(a, timer.raw())
            })
            .collect();
        lat.sort_unstable();
        p99.push(lat[lat.len() * 99 / 100]);
    }
    show("the same names in a map with the fixed hash", &p99);
}
