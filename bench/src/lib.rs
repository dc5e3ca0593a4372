//! tollgate's benchmarks and its tonic example live in this package, apart
//! from the crate, so that a user's first `cargo run --example demo` and the
//! crate's tests compile none of criterion, governor, leaky-bucket,
//! tower_governor or tonic. See `benches/` and `BENCHMARKS.md` at the
//! repository's root.
//!
//! What several benches share lives here: an allocator that counts the
//! bytes live, and a service that does nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll, Waker};

use http::{Request, Response, Uri};
use tower_service::Service;

/// The system allocator, counting the bytes live: a bench installs it with
/// `#[global_allocator] static ALLOC: Counting = Counting;` and reads
/// [`live`] around what it holds.
#[derive(Debug)]
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counter
// only adds up the sizes it was given.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The bytes live now (under [`Counting`]).
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// A service that answers every request at once and does nothing else: the
/// inner service of the layer benches.
#[derive(Clone, Debug)]
pub struct Noop;

impl Service<Request<()>> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// One request to `uri` through `svc`: ready, call, the response future
/// polled once. Whether it was answered then.
pub fn call_once<S: Service<Request<()>>>(svc: &mut S, uri: &Uri) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    if !matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))) {
        return false;
    }
    let req = Request::get(uri.clone()).body(()).unwrap();
    let fut = pin!(svc.call(req));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
}
