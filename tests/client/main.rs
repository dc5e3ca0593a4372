//! The client adapters: the tower layer and its readiness, the retry policies
//! and budgets, reqwest end to end, and streams.
//!
//! One test binary for the area, a module per file (`cargo test --all-features
//! --test client NAME` runs one file's tests by its module name).

mod regression_tower_readiness;
mod reject_through_retry;
mod reqwest_e2e;
mod retry;
mod retry_budget;
mod retry_e2e;
mod retry_matrix;
mod stream;
mod tower_layer;
