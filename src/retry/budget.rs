//! [`RetryBudget`]: a cap on retries per source (or per host), so that
//! retries cannot multiply the load on a host that is failing.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{Mutex, MutexGuard};
use crate::{Error, Registry, Target, DEFAULT_MAX_HOSTS};

/// The window is kept as this many slots, so it slides in steps of a tenth.
const SLOTS: u64 = 10;
/// Spare windows for keys beyond `max_keys`, each held by one key at a time.
const SPARE_WINDOWS: usize = 64;
/// Ratios are kept in millionths, so that the bound is integer arithmetic:
/// 10 % of 10 requests is exactly one retry, not 0.999….
const PPM: u128 = 1_000_000;

/// At most `ratio` retries per request, plus `min_per_second` retries a
/// second, in any sliding `window`: each request deposits one, each retry
/// withdraws one, and a retry that would overdraw is not made (the caller
/// gets the last answer). The idea of tower's `retry::budget::TpsBudget`,
/// kept per key.
///
/// The key is the source a request routes to when the budget is built with
/// [`per_source`](Self::per_source), else the request's host and port. At
/// most [`max_keys`](Self::max_keys) keys are kept (default 10,000): keys
/// whose window holds nothing are dropped (an empty window equals a fresh
/// one). While every kept key is live, a further key takes one of 64 spare
/// windows (chosen by a hash of the key), which it holds until that window
/// empties; a key whose spare window another key holds counts nothing and
/// gets no retry. So a key never spends what other keys deposited: beyond
/// `max_keys` the budget is stricter, never looser.
///
/// Clones share the budget (an `Arc` inside), so one budget can serve the
/// tower [`RetryPolicy`](crate::tower::RetryPolicy), the reqwest
/// `RetryMiddleware` and every clone of them. Time is tokio's, so
/// `tokio::time::pause()` drives it in tests.
///
/// ```
/// use std::time::Duration;
/// use tollgate::retry::RetryBudget;
/// use tollgate::Target;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tollgate::Error> {
/// // One retry for every ten requests, and no free retries.
/// let budget = RetryBudget::new(0.1, 0.0, Duration::from_secs(60))?;
/// let host = Target::new("api.example.com", Some(443), "/");
/// for _ in 0..10 {
///     budget.deposit(&host);
/// }
/// assert!(budget.try_withdraw(&host));
/// assert!(!budget.try_withdraw(&host));
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ratio_ppm: u64,
    reserve_ppm: u64,
    slot_nanos: u64,
    epoch: Instant,
    registry: Option<Registry>,
    max_keys: usize,
    /// Picks a key's spare window; seeded per budget, so that no one can
    /// choose host names that take each other's.
    spare_hasher: foldhash::fast::RandomState,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    keys: HashMap<Box<str>, Window>,
    /// Empty until every kept key is live; then `SPARE_WINDOWS` of them.
    spare: Vec<Spare>,
    /// The slot of the last sweep that freed nothing: no sweep again in it.
    swept_at: Option<u64>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    index: u64,
    deposits: u32,
    withdrawals: u32,
}

/// A spare window and the hash of the key that holds it.
#[derive(Clone, Copy, Default)]
struct Spare {
    holder: u64,
    window: Window,
}

#[derive(Clone, Copy, Default)]
struct Window {
    slots: [Slot; SLOTS as usize],
}

impl Window {
    fn slot(&mut self, now: u64) -> &mut Slot {
        let slot = &mut self.slots[(now % SLOTS) as usize];
        if slot.index != now {
            *slot = Slot {
                index: now,
                ..Slot::default()
            };
        }
        slot
    }

    fn live(&self, now: u64) -> impl Iterator<Item = &Slot> {
        self.slots
            .iter()
            .filter(move |s| s.index + SLOTS > now && (s.deposits | s.withdrawals) != 0)
    }

    fn sums(&self, now: u64) -> (u128, u128) {
        self.live(now).fold((0, 0), |(d, w), s| {
            (d + u128::from(s.deposits), w + u128::from(s.withdrawals))
        })
    }
}

impl Default for RetryBudget {
    /// 20 % of requests plus 10 retries a second, over 10 seconds (tower's
    /// defaults), per host.
    fn default() -> Self {
        Self::new(0.2, 10.0, Duration::from_secs(10)).expect("valid defaults")
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("RetryBudget")
            .field("ratio", &(i.ratio_ppm as f64 / PPM as f64))
            .field("reserve", &(i.reserve_ppm as f64 / PPM as f64))
            .field("window", &Duration::from_nanos(i.slot_nanos * SLOTS))
            .field("per_source", &i.registry.is_some())
            .field("max_keys", &i.max_keys)
            .finish_non_exhaustive()
    }
}

impl RetryBudget {
    /// Up to `ratio` retries per request (0.1: one per ten requests, kept
    /// to a millionth) plus `min_per_second` retries a second, counted over
    /// a sliding `window` (it slides in steps of a tenth of the window).
    ///
    /// An `InvalidConfig` error when `ratio` or `min_per_second` is
    /// negative, NaN or infinite, or `window` is under 10 ms.
    pub fn new(ratio: f64, min_per_second: f64, window: Duration) -> Result<Self, Error> {
        let bad = |reason: String| Err(Error::config("retry budget", reason));
        if !(0.0..=1e6).contains(&ratio) {
            return bad(format!(
                "ratio {ratio} is not a number of retries per request: give a number \
                 from 0 (no retries but the minimum) to 1000000, such as 0.2"
            ));
        }
        if !(0.0..=1e9).contains(&min_per_second) {
            return bad(format!(
                "min_per_second {min_per_second} is not a rate: give a number of \
                 retries a second from 0 to 10⁹, such as 10"
            ));
        }
        if window < Duration::from_millis(10) {
            return bad(format!(
                "window {window:?} is too short to count in: give at least 10 ms, such as 10 s"
            ));
        }
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                ratio_ppm: (ratio * PPM as f64).round() as u64,
                reserve_ppm: (min_per_second * window.as_secs_f64() * PPM as f64) as u64,
                slot_nanos: window_nanos / SLOTS,
                epoch: Instant::now(),
                registry: None,
                max_keys: DEFAULT_MAX_HOSTS,
                spare_hasher: Default::default(),
                table: Mutex::default(),
            }),
        })
    }

    /// Keys requests by the source `registry` routes them to (a source's
    /// hosts share one budget); hosts no source claims keep one each.
    /// A setting for building: the result is a new, empty budget, shared
    /// only by its own clones.
    pub fn per_source(self, registry: Registry) -> Self {
        self.rebuild(|i| i.registry = Some(registry))
    }

    /// How many keys are kept at most (default 10,000; at least 1). Like
    /// [`per_source`](Self::per_source), this gives a new, empty budget.
    pub fn max_keys(self, n: usize) -> Self {
        self.rebuild(|i| i.max_keys = n.max(1))
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let i = &self.inner;
        let mut inner = Inner {
            ratio_ppm: i.ratio_ppm,
            reserve_ppm: i.reserve_ppm,
            slot_nanos: i.slot_nanos,
            epoch: i.epoch,
            registry: i.registry.clone(),
            max_keys: i.max_keys,
            spare_hasher: Default::default(),
            table: Mutex::default(),
        };
        change(&mut inner);
        RetryBudget {
            inner: Arc::new(inner),
        }
    }

    /// Counts one request to `target`.
    pub fn deposit(&self, target: &Target<'_>) {
        self.with_window(target, |w, now| {
            if let Some(w) = w {
                let s = w.slot(now);
                s.deposits = s.deposits.saturating_add(1);
            }
        });
    }

    /// Takes one retry for `target` if the budget allows it, and says
    /// whether it did.
    pub fn try_withdraw(&self, target: &Target<'_>) -> bool {
        let (ratio, reserve) = (
            u128::from(self.inner.ratio_ppm),
            u128::from(self.inner.reserve_ppm),
        );
        self.with_window(target, |w, now| {
            let Some(w) = w else {
                return false; // no window of its own: nothing it may spend
            };
            let (deposits, withdrawals) = w.sums(now);
            let allowed = (withdrawals + 1) * PPM <= ratio * deposits + reserve;
            if allowed {
                let s = w.slot(now);
                s.withdrawals = s.withdrawals.saturating_add(1);
            }
            allowed
        })
    }

    /// The number of keys kept now (for tests and metrics).
    pub fn key_count(&self) -> usize {
        self.lock().keys.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock()
    }

    fn key(&self, target: &Target<'_>) -> String {
        let source = self
            .inner
            .registry
            .as_ref()
            .and_then(|r| r.source_for(target).ok().flatten());
        match (source, target.port()) {
            // `source:` cannot be a host, so names and hosts never collide.
            (Some(name), _) => format!("source:{name}"),
            (None, Some(port)) => format!("{}:{port}", target.host()),
            (None, None) => target.host().to_string(),
        }
    }

    /// Runs `f` on `target`'s window, or on `None` when the key has none
    /// (beyond `max_keys`, with its spare window held by another key).
    fn with_window<R>(
        &self,
        target: &Target<'_>,
        f: impl FnOnce(Option<&mut Window>, u64) -> R,
    ) -> R {
        let key = self.key(target);
        let elapsed = Instant::now().saturating_duration_since(self.inner.epoch);
        let now = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX) / self.inner.slot_nanos;
        let mut table = self.lock();
        let table = &mut *table;
        if !table.keys.contains_key(key.as_str()) && table.keys.len() >= self.inner.max_keys {
            if table.swept_at != Some(now) {
                table.keys.retain(|_, w| w.live(now).next().is_some());
                table.swept_at = Some(now);
            }
            if table.keys.len() >= self.inner.max_keys {
                return f(self.spare(table, &key, now), now);
            }
        }
        let window = table.keys.entry(key.into_boxed_str()).or_default();
        f(Some(window), now)
    }

    /// The spare window of `key`, if no other live key holds it: a shared
    /// one would let a failing host spend what healthy hosts deposited.
    fn spare<'t>(&self, table: &'t mut Table, key: &str, now: u64) -> Option<&'t mut Window> {
        if table.spare.is_empty() {
            table.spare = vec![Spare::default(); SPARE_WINDOWS];
        }
        let hash = self.inner.spare_hasher.hash_one(key);
        let spare = &mut table.spare[(hash % SPARE_WINDOWS as u64) as usize];
        if spare.holder != hash {
            if spare.window.live(now).next().is_some() {
                return None;
            }
            *spare = Spare {
                holder: hash,
                window: Window::default(),
            };
        }
        Some(&mut spare.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn host(name: &str) -> Target<'_> {
        Target::new(name, Some(443), "/")
    }

    #[tokio::test(start_paused = true)]
    async fn ten_percent_of_a_hundred_is_ten_and_the_window_slides() {
        let budget = RetryBudget::new(0.1, 0.0, Duration::from_secs(10)).unwrap();
        let h = host("a.test");
        let mut retries = 0;
        for _ in 0..100 {
            budget.deposit(&h);
            while budget.try_withdraw(&h) {
                retries += 1;
            }
        }
        assert_eq!(retries, 10);
        // Ten seconds later the deposits have left the window.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!budget.try_withdraw(&h));
        budget.deposit(&h);
        assert!(
            !budget.try_withdraw(&h),
            "one deposit is a tenth of a retry"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_minimum_is_per_second_of_the_window() {
        let budget = RetryBudget::new(0.0, 2.0, Duration::from_secs(5)).unwrap();
        let h = host("a.test");
        let free = std::iter::from_fn(|| budget.try_withdraw(&h).then_some(()))
            .take(100)
            .count();
        assert_eq!(free, 10, "2 a second over 5 s");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(budget.try_withdraw(&h), "the window slid");
    }

    #[tokio::test(start_paused = true)]
    async fn hosts_and_sources_keep_their_own_budgets() {
        let budget = RetryBudget::new(1.0, 0.0, Duration::from_secs(10)).unwrap();
        budget.deposit(&host("a.test"));
        assert!(!budget.try_withdraw(&host("b.test")));
        assert!(budget.try_withdraw(&host("a.test")));

        let registry = Registry::builder()
            .source(
                crate::Source::new("api")
                    .limit(crate::Policy::unlimited())
                    .host("*.api.test"),
            )
            .build()
            .unwrap();
        let budget = budget.per_source(registry);
        budget.deposit(&host("one.api.test"));
        assert!(budget.try_withdraw(&host("two.api.test")), "one source");
        assert_eq!(budget.key_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_and_idle_keys_are_dropped() {
        let budget = RetryBudget::new(1.0, 0.0, Duration::from_secs(1))
            .unwrap()
            .max_keys(100);
        let names: Vec<String> = (0..1000).map(|i| format!("h{i}.test")).collect();
        for n in &names {
            budget.deposit(&host(n));
        }
        assert_eq!(budget.key_count(), 100);
        // The extra hosts never share a window: at most one per spare window
        // has a deposit to spend, and none spends another's.
        let spent = names[100..]
            .iter()
            .filter(|n| budget.try_withdraw(&host(n)))
            .count();
        assert!((1..=SPARE_WINDOWS).contains(&spent), "{spent}");
        assert!(!budget.try_withdraw(&host("never-paid.test")));
        tokio::time::advance(Duration::from_secs(1)).await;
        budget.deposit(&host("fresh.test"));
        assert_eq!(budget.key_count(), 1, "the idle keys were swept");
    }

    #[test]
    fn bad_settings_say_what_to_change() {
        for (ratio, min, window) in [
            (-0.1, 1.0, Duration::from_secs(1)),
            (f64::NAN, 1.0, Duration::from_secs(1)),
            (0.1, f64::INFINITY, Duration::from_secs(1)),
            (0.1, 1.0, Duration::ZERO),
        ] {
            let err = RetryBudget::new(ratio, min, window).unwrap_err();
            assert!(
                err.kind() == ErrorKind::InvalidConfig && err.to_string().contains("give"),
                "{err}"
            );
        }
    }
}
