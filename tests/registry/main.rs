//! The registry: routing, configuration, prices, lanes, runtime changes, many
//! waiters, and regressions of deferrals, limits and the lock order.
//!
//! One test binary for the area, a module per file (`cargo test --all-features
//! --test registry NAME` runs one file's tests by its module name).

#[path = "../common/mod.rs"]
mod common;

mod config;
mod lanes;
mod many_waiters;
mod price;
mod registry;
mod regression_deferral_kept;
mod regression_limits_never_looser;
mod regression_lock_order;
mod routing;
mod stress_control;
