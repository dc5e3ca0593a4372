//! What servers say: the signal parser, the header shapes seen in the wild,
//! and declared header families.
//!
//! One test binary for the area, a module per file (`cargo test --all-features
//! --test signals NAME` runs one file's tests by its module name).

mod signal_families;
mod signal_shapes;
mod signals;
