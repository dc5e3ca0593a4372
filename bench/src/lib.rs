//! tollgate's benchmarks and its tonic example live in this package, apart
//! from the crate, so that a user's first `cargo run --example demo` and the
//! crate's tests compile none of criterion, governor, leaky-bucket,
//! tower_governor or tonic. See `benches/` and `BENCHMARKS.md` at the
//! repository's root.
