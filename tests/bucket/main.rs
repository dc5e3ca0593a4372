//! The token bucket: the window bound under threads, tasks and property
//! tests, clocks that misbehave, bad input, and regressions of the default
//! clock.
//!
//! One test binary for the area, a module per file (`cargo test --all-features
//! --test bucket NAME` runs one file's tests by its module name).

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod clock_faults;
mod concurrency;
mod regression_default_clock_paused;
mod regression_multi_limit_real_clock;
mod window_bound;
mod window_bound_multi;
