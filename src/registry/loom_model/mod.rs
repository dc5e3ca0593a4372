//! Loom models of the registry's shared state beyond the bucket: the lane
//! queues (`lanes.rs`) and the per-host table (`hosts.rs`), in every
//! interleaving up to a preemption bound (2 unless `LOOM_MAX_PREEMPTIONS`
//! says otherwise), on clocks that stand still.
//!
//! Built only with `--cfg tollgate_loom`, which swaps the locks, atomics
//! and `Arc`s of the code that ships for loom's (see `crate::sync`); run
//! beside the bucket's model by the same command:
//!
//! ```text
//! RUSTFLAGS="--cfg tollgate_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --lib loom_model
//! ```
//!
//! Timers and tokio's wakers cannot run under loom, so the models drive
//! the plain synchronisation under them: the lane queues with loom threads
//! that park until a waker unparks them (a wake that never comes is a
//! deadlock loom reports), and the host table through the registry's own
//! calls on a [`ManualClock`](crate::ManualClock) that nobody moves.

mod hosts;
mod lanes;
