//! The server guard: tiers and keys, a client against it, and floods.
//!
//! One test binary for the area, a module per file (`cargo test --all-features
//! --test server NAME` runs one file's tests by its module name).

mod guard_future;
mod server;
mod server_client;
mod server_flood;
