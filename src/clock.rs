//! Where time comes from, and how to wait for it.
//!
//! A [`Clock`] owns both reading the time and sleeping until a time, because
//! the two must agree: a bucket that reads one clock while its waiters sleep
//! on another computes nonsense (under `tokio::time::pause()` the tokio clock
//! stands still while the system clock runs on).
//!
//! | clock | reads | sleeps | for |
//! |---|---|---|---|
//! | [`FastClock`] (the default) | the CPU's time-stamp counter, calibrated (via `quanta`); tokio's time once it sees it paused | tokio timers / `thread::sleep` | production, and tests with paused time |
//! | [`MonotonicClock`] | `std::time::Instant` | tokio timers / `thread::sleep` | production, without the TSC |
//! | [`TokioClock`] | `tokio::time::Instant` | `tokio::time::sleep_until` | tests with paused time |
//! | [`ManualClock`] | a counter you move | until you move it past the deadline | unit tests |
//!
//! Reading the clock is most of the cost of a check, so the default was
//! chosen by measurement (`cargo bench -p tollgate-bench --bench bucket`, group `clock now`,
//! figures in `BENCHMARKS.md`): the time-stamp counter read through `quanta`
//! costs about half of `std::time::Instant::now()`. On a CPU without an
//! invariant TSC, `quanta` falls back to the OS monotonic clock.
//!
//! Real-time clocks sleep on tokio's timer for the remaining duration and
//! check again on waking, so a waiter never runs before its slot on the
//! clock that computed it.

use std::fmt;
use std::future::Future;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A point in time: whole nanoseconds since its clock's epoch.
///
/// Only meaningful for the clock that produced it (see [`Clock::now`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is, or zero if it is not later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Saturates at `u64::MAX` nanoseconds (about 584 years after the epoch).
impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }
}

/// Saturates at the epoch.
impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_nanos(d)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Duration::from_nanos(self.0))
    }
}

/// A duration in nanoseconds, saturated to 64 bits.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A sleep returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Reads the time and sleeps until a time, on one and the same timeline.
///
/// The sleep is boxed so that `Arc<dyn Clock>` works; it is only created when
/// a caller actually has to wait, never on the fast path.
pub trait Clock: Send + Sync + 'static {
    /// The time now. Must never go backwards.
    fn now(&self) -> Timestamp;

    /// A future that completes once [`now`](Self::now) has reached `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;

    /// Blocks the calling thread until [`now`](Self::now) has reached `deadline`.
    fn sleep_until_blocking(&self, deadline: Timestamp);
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        (**self).sleep_until(deadline)
    }
    fn sleep_until_blocking(&self, deadline: Timestamp) {
        (**self).sleep_until_blocking(deadline)
    }
}

/// The default clock: the CPU's time-stamp counter scaled to nanoseconds
/// (through `quanta`, calibrated once a process), since a process-wide epoch.
/// Sleeps on tokio's timer (inside a runtime) or the thread.
///
/// # Under tokio's paused time
///
/// In a test with `#[tokio::test(start_paused = true)]` (or after
/// `tokio::time::pause()`), tokio's time stands still until every task
/// sleeps and then jumps to the next timer, while the counter runs on. A
/// clock that read the counter there would see a 200 ms sleep end 200 ms of
/// virtual time later but a few microseconds of its own, and sleep again and
/// again. So this clock follows tokio's time from the moment it sees it
/// paused: when it is created inside a runtime whose time is paused, or when
/// one of its sleeps ends and tokio's time stood still. From then on (for it
/// and its clones) it reads tokio's clock, never going backwards, and waits
/// take their own length of virtual time. Outside paused time it never
/// switches. For exact virtual-time tests that build a bucket before
/// pausing, choose [`TokioClock`].
#[derive(Clone)]
pub struct FastClock {
    // Held by value, not behind a global: `now()` is then one counter read
    // and one multiply.
    clock: quanta::Clock,
    epoch: u64,
    follow: Arc<Follow>,
}

/// Whether any [`FastClock`] of the process follows tokio's paused time:
/// a static, so that in production (where none does) `now()` checks one
/// always-cached flag and no per-clock state.
static ANY_FOLLOWS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a [`FastClock`] follows tokio's paused time, and from where.
#[derive(Default)]
struct Follow {
    on: std::sync::atomic::AtomicBool,
    /// The reading when it switched, and tokio's instant then.
    anchor: OnceLock<(u64, tokio::time::Instant)>,
    /// The latest reading, so the time never goes backwards.
    last: AtomicU64,
}

impl FastClock {
    /// The process's fast clock (calibrated on first use, about 10 ms once).
    /// Created inside a runtime whose time is paused, it follows tokio's time.
    pub fn new() -> Self {
        static CLOCK: OnceLock<(quanta::Clock, u64)> = OnceLock::new();
        let (clock, epoch) = CLOCK.get_or_init(|| {
            let clock = quanta::Clock::new();
            let epoch = clock.raw();
            (clock, epoch)
        });
        let fast = FastClock {
            clock: clock.clone(),
            epoch: *epoch,
            follow: Arc::default(),
        };
        if tokio_time_paused() {
            fast.follow_tokio(fast.counter());
        }
        fast
    }

    /// Whether the clock follows tokio's paused time (see the type's docs).
    pub fn follows_tokio(&self) -> bool {
        self.follow.on.load(Ordering::Acquire)
    }

    #[inline]
    fn counter(&self) -> u64 {
        self.clock.delta_as_nanos(self.epoch, self.clock.raw())
    }

    /// Switches to tokio's time, reading `from` now (once: later calls keep
    /// the first anchor).
    fn follow_tokio(&self, from: u64) {
        self.follow
            .anchor
            .get_or_init(|| (from, tokio::time::Instant::now()));
        self.follow.on.store(true, Ordering::Release);
        ANY_FOLLOWS.store(true, Ordering::Release);
    }

    /// `now()` once some clock of the process follows tokio: this one may not.
    #[cold]
    #[inline(never)]
    fn now_when_any_follows(&self) -> u64 {
        if self.follow.on.load(Ordering::Acquire) {
            self.tokio_now()
        } else {
            self.counter()
        }
    }

    fn tokio_now(&self) -> u64 {
        let Some(&(base, at)) = self.follow.anchor.get() else {
            return self.counter();
        };
        let t = base.saturating_add(duration_nanos(
            tokio::time::Instant::now().saturating_duration_since(at),
        ));
        self.follow.last.fetch_max(t, Ordering::AcqRel).max(t)
    }
}

impl fmt::Debug for FastClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastClock")
            .field("follows_tokio", &self.follows_tokio())
            .finish_non_exhaustive()
    }
}

/// Whether tokio's time stands still here: paused, inside a runtime with
/// `test-util`. Outside a runtime, or with time running, tokio's clock is
/// the OS clock and two readings differ.
fn tokio_time_paused() -> bool {
    let t0 = tokio::time::Instant::now();
    if tokio::time::Instant::now() != t0 {
        return false;
    }
    // Equal readings: paused, or a coarse OS clock. Let real time pass.
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == t0
}

impl Default for FastClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FastClock {
    #[inline]
    fn now(&self) -> Timestamp {
        if ANY_FOLLOWS.load(Ordering::Relaxed) {
            return Timestamp(self.now_when_any_follows());
        }
        Timestamp(self.counter())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        if let (true, Some(&(base, at))) = (self.follows_tokio(), self.follow.anchor.get()) {
            let since = Duration::from_nanos(deadline.as_nanos().saturating_sub(base));
            return Box::pin(tokio::time::sleep_until(at + since));
        }
        let clock = self.clone();
        Box::pin(async move {
            if !sleep_real_time(clock.clone(), deadline).await {
                // tokio's time ran on while ours stood: follow tokio from
                // here, where its timer says the deadline has come.
                clock.follow_tokio(deadline.as_nanos().max(clock.counter()));
            }
        })
    }

    fn sleep_until_blocking(&self, deadline: Timestamp) {
        if self.follows_tokio() {
            // Paused time cannot pass on a blocking thread: sleep its length.
            std::thread::sleep(deadline.saturating_duration_since(self.now()));
            return;
        }
        sleep_real_time_blocking(self, deadline)
    }
}

/// `std::time::Instant` since a process-wide epoch; sleeps on tokio's timer
/// (inside a runtime) or the thread.
///
/// It does not follow `tokio::time::pause()`; use [`TokioClock`] there. (A
/// sleep under paused time ends after its length of virtual time, once,
/// rather than sleeping on while the OS clock catches up.)
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

fn process_epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Timestamp {
        let since = std::time::Instant::now().saturating_duration_since(process_epoch());
        // Seconds and nanoseconds directly: cheaper than `as_nanos()` (u128).
        Timestamp(
            since
                .as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(since.subsec_nanos() as u64),
        )
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let clock = *self;
        Box::pin(async move {
            sleep_real_time(clock, deadline).await;
        })
    }

    fn sleep_until_blocking(&self, deadline: Timestamp) {
        sleep_real_time_blocking(self, deadline)
    }
}

/// Sleeps on tokio's timer until `clock` reads `deadline`, checking again on
/// each wake-up (the timer and the clock may differ by a little). Returns
/// `false` when tokio's time is paused and the timer has run its length
/// while `clock` has not: the caller's clock is not tokio's, and sleeping
/// again would only push virtual time further.
async fn sleep_real_time<C: Clock>(clock: C, deadline: Timestamp) -> bool {
    loop {
        let wait = deadline.saturating_duration_since(clock.now());
        if wait.is_zero() {
            return true;
        }
        tokio::time::sleep(wait).await;
        let left = deadline.saturating_duration_since(clock.now());
        if left.is_zero() {
            return true;
        }
        if left <= SPIN_BELOW {
            // Woken by a timer whose clock runs a few microseconds apart from
            // this one: spin them out rather than pay another timer tick (a
            // millisecond) and another wake-up.
            spin_until(&clock, deadline);
            return true;
        }
        if tokio_time_paused() {
            return false;
        }
    }
}

/// What is left of a wait after the timer fired is spun out when at most
/// this: tokio's timer ticks in milliseconds, and the counter behind
/// [`FastClock`] runs a few microseconds apart from the OS clock that
/// tokio's timer reads.
const SPIN_BELOW: Duration = Duration::from_micros(20);

fn spin_until<C: Clock>(clock: &C, deadline: Timestamp) {
    let started = std::time::Instant::now();
    // Bounded by real time too, should `clock` stand still.
    while clock.now() < deadline && started.elapsed() <= SPIN_BELOW {
        std::hint::spin_loop();
    }
}

fn sleep_real_time_blocking<C: Clock>(clock: &C, deadline: Timestamp) {
    loop {
        let wait = deadline.saturating_duration_since(clock.now());
        if wait.is_zero() {
            return;
        }
        std::thread::sleep(wait);
        let left = deadline.saturating_duration_since(clock.now());
        if !left.is_zero() && left <= SPIN_BELOW {
            spin_until(clock, deadline);
        }
    }
}

/// tokio's clock: honours `tokio::time::pause()` and `advance()`, so tests on
/// paused time are exact and instant.
///
/// Its epoch is the moment it was created; clones share it.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{Clock, Policy, TokenBucket, TokioClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tollgate::Error> {
/// let bucket = TokenBucket::with_clock(Policy::per_second(10.0)?, TokioClock::new());
/// let start = tokio::time::Instant::now();
/// for _ in 0..11 {
///     bucket.acquire(1.0).await?;
/// }
/// assert_eq!(start.elapsed(), Duration::from_secs(1)); // exact, on paused time
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose epoch is tokio's now.
    pub fn new() -> Self {
        TokioClock {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The tokio instant of a timestamp of this clock.
    pub fn instant(&self, t: Timestamp) -> tokio::time::Instant {
        self.epoch + Duration::from_nanos(t.as_nanos())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(duration_nanos(
            tokio::time::Instant::now().saturating_duration_since(self.epoch),
        ))
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.instant(deadline)))
    }

    /// Paused tokio time cannot be waited on from a blocking thread; this
    /// sleeps the thread for the remaining time as tokio reports it.
    fn sleep_until_blocking(&self, deadline: Timestamp) {
        sleep_real_time_blocking(self, deadline)
    }
}

/// The clock a [`Registry`](crate::Registry) shares between its buckets:
/// any [`Clock`], with the default [`FastClock`] called directly rather than
/// through a virtual call (it is read on every request).
#[derive(Clone)]
pub struct SharedClock(SharedKind);

#[derive(Clone)]
enum SharedKind {
    Fast(FastClock),
    Dyn(Arc<dyn Clock>),
}

impl SharedClock {
    /// Shares `clock`.
    pub fn new<C: Clock>(clock: C) -> Self {
        let any: &dyn std::any::Any = &clock;
        match any.downcast_ref::<FastClock>() {
            Some(fast) => SharedClock(SharedKind::Fast(fast.clone())),
            None => SharedClock(SharedKind::Dyn(Arc::new(clock))),
        }
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        SharedClock(SharedKind::Fast(FastClock::new()))
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SharedKind::Fast(_) => f.write_str("SharedClock(FastClock)"),
            SharedKind::Dyn(_) => f.write_str("SharedClock(dyn Clock)"),
        }
    }
}

impl Clock for SharedClock {
    #[inline]
    fn now(&self) -> Timestamp {
        match &self.0 {
            SharedKind::Fast(c) => c.now(),
            SharedKind::Dyn(c) => c.now(),
        }
    }
    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        match &self.0 {
            SharedKind::Fast(c) => c.sleep_until(deadline),
            SharedKind::Dyn(c) => c.sleep_until(deadline),
        }
    }
    fn sleep_until_blocking(&self, deadline: Timestamp) {
        match &self.0 {
            SharedKind::Fast(c) => c.sleep_until_blocking(deadline),
            SharedKind::Dyn(c) => c.sleep_until_blocking(deadline),
        }
    }
}

mod manual;
pub use manual::ManualClock;

#[cfg(test)]
mod tests;
