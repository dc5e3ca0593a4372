//! [`ManualClock`]: a clock moved by hand, for deterministic tests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::{Clock, Sleep, Timestamp};

/// A clock that moves only when told to: for deterministic unit tests.
///
/// Sleeps, async or blocking, complete when [`advance`](Self::advance) or
/// [`set`](Self::set) moves the time to or past their deadline. Clones share
/// the same time.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{ManualClock, Policy, TokenBucket};
///
/// let clock = ManualClock::new();
/// let bucket = TokenBucket::with_clock(Policy::new(2.0, 10.0)?, clock.clone());
/// bucket.try_acquire(2.0)?;
/// assert!(bucket.try_acquire(1.0).is_err());
/// clock.advance(Duration::from_millis(100));
/// bucket.try_acquire(1.0)?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Default)]
struct ManualInner {
    now: AtomicU64,
    waiters: Mutex<Vec<(Timestamp, Waker)>>,
    moved: Condvar,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

impl ManualClock {
    /// A clock at its epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the time forward by `d` and wakes every sleep that is now due.
    pub fn advance(&self, d: Duration) {
        let now = self.now() + d;
        self.set(now);
    }

    /// Moves the time to `t` (never backwards: an earlier `t` is ignored).
    pub fn set(&self, t: Timestamp) {
        self.inner.now.fetch_max(t.as_nanos(), Ordering::SeqCst);
        let now = self.now();
        let due: Vec<Waker> = {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let (due, pending): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(d, _)| *d <= now);
            *waiters = pending;
            due.into_iter().map(|(_, w)| w).collect()
        };
        due.into_iter().for_each(Waker::wake);
        self.inner.moved.notify_all();
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(self.inner.now.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline,
        })
    }

    fn sleep_until_blocking(&self, deadline: Timestamp) {
        let mut guard = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
        while self.now() < deadline {
            guard = self
                .inner
                .moved
                .wait(guard)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct ManualSleep {
    clock: ManualClock,
    deadline: Timestamp,
}

impl Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        let mut waiters = self
            .clock
            .inner
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: `set` drains under the same lock.
        if self.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        waiters.push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}
