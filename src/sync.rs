//! The synchronisation primitives the bucket's state is made of: std's in
//! every build, loom's in the crate's own tests under `--cfg tollgate_loom`,
//! so that the loom model (`bucket::loom_model`) explores the very code that
//! ships. (Only the lib's test build can see loom, a dev-dependency.)

#[cfg(not(all(test, tollgate_loom)))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(all(test, tollgate_loom)))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(all(test, tollgate_loom)))]
pub(crate) use std::sync::Mutex;

// A loom spin yields to the scheduler; std's would spin the model forever.
#[cfg(all(test, tollgate_loom))]
pub(crate) use loom::hint::spin_loop;
#[cfg(all(test, tollgate_loom))]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(all(test, tollgate_loom))]
pub(crate) use loom::sync::Mutex;
