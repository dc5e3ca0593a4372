//! The bucket contract, written once and run against every store: the local
//! `TokenBucket` (and a registry source for several limits) and the Redis
//! store. A store implements [`Store`], [`Bucket`] and [`Limits`]; a test
//! file runs every case with [`conformance_suite!`].
//!
//! Expected answers come from a small model of GCRA fed with the times the
//! store itself reports (its admissions and slots). Where a store reports
//! no time (a refusal, a deferral), the case reads the store's clock just
//! before and just after the call and accepts exactly the answers between:
//! on a frozen local clock that is the one exact answer, on Redis an
//! interval of one round trip (its `TIME` has microsecond resolution),
//! and a refusal may end later than that by the store's [`Bucket::LATE`]
//! (never earlier).
#![allow(dead_code, async_fn_in_trait)]

use std::time::Duration;

use tollgate::{Error, ErrorKind, Policy};

/// A store that makes fresh buckets.
pub trait Store {
    /// A bucket of one limit, with every operation.
    type One: Bucket;
    /// A bucket of several limits: taken together.
    type Many: Limits;
    /// A fresh, full bucket.
    async fn one(&self, policy: Policy) -> Self::One;
    /// A fresh, full bucket of several limits.
    async fn many(&self, policies: &[Policy]) -> Self::Many;
}

/// One limit. Times are nanoseconds on the store's clock.
pub trait Bucket {
    /// A reservation.
    type Res<'a>
    where
        Self: 'a;
    /// How much later than the interval read around it a refusal may end
    /// (nanoseconds): none for a store whose refusals are computed at the
    /// call. A Redis bucket repeats a refusal it learned without a round
    /// trip, counting the wait on the local timer from the answer's
    /// arrival, so the answer's travel (and the scheduling of the task that
    /// read it) makes the wait that much longer, never shorter.
    const LATE: u64 = 0;
    /// The store's clock now.
    async fn now(&self) -> u64;
    /// Takes now, returning the time of admission.
    async fn try_acquire(&self, tokens: f64) -> Result<u64, Error>;
    /// Reserves within `max_wait`.
    async fn reserve<'a>(&'a self, tokens: f64, max_wait: Duration)
        -> Result<Self::Res<'a>, Error>;
    /// The reservation's slot.
    fn slot(r: &Self::Res<'_>) -> u64;
    /// The store's time when it was taken.
    fn issued(r: &Self::Res<'_>) -> u64;
    /// Keeps the tokens.
    fn commit(r: Self::Res<'_>);
    /// Gives them back; returns how many came back.
    async fn cancel(r: Self::Res<'_>) -> f64;
    /// Waits for the slot.
    async fn wait(r: Self::Res<'_>);
    async fn defer_for(&self, wait: Duration);
    async fn set_policy(&self, policy: Policy);
    async fn available(&self) -> f64;
}

/// Several limits of one source.
pub trait Limits {
    /// As [`Bucket::LATE`].
    const LATE: u64 = 0;
    async fn now(&self) -> u64;
    /// Takes from every limit now or from none; the time of admission.
    async fn try_acquire(&self, tokens: f64) -> Result<u64, Error>;
    /// Waits for the latest slot among the limits; the time of admission.
    async fn acquire(&self, tokens: f64) -> u64;
    async fn available(&self) -> f64;
}

/// GCRA on one number per limit, fed with the store's times.
pub struct Model {
    limits: Vec<(u64, u64, u64)>, // (tat, interval, tau)
}

impl Model {
    pub fn new(policies: &[Policy]) -> Model {
        Model {
            limits: policies
                .iter()
                .map(|p| (0, p.interval_nanos(), p.tolerance_nanos()))
                .collect(),
        }
    }

    fn cost(interval: u64, tau: u64, tokens: f64) -> u64 {
        ((tokens * interval as f64).ceil() as u64).min(tau)
    }

    /// The slot `tokens` would get arriving at `now` (the latest among limits).
    pub fn slot(&self, tokens: f64, now: u64) -> u64 {
        self.limits
            .iter()
            .map(|&(tat, t, tau)| (tat.max(now) + Self::cost(t, tau, tokens)).saturating_sub(tau))
            .fold(now, u64::max)
    }

    /// Takes `tokens` at `slot` from every limit.
    pub fn take_at(&mut self, tokens: f64, slot: u64) {
        for (tat, t, tau) in &mut self.limits {
            *tat = (*tat).max(slot) + Self::cost(*t, *tau, tokens);
        }
    }

    /// A take at `now` admitted at once (the store said so).
    pub fn admit(&mut self, tokens: f64, now: u64) {
        assert_eq!(
            self.slot(tokens, now),
            now,
            "the model would not admit at {now}"
        );
        self.take_at(tokens, now);
    }
}

fn retry_after(e: Error) -> u64 {
    match e.retry_after() {
        Some(after) => after.as_nanos() as u64,
        None => panic!("expected a refusal, got {e:?}"),
    }
}

#[track_caller]
fn refusal<T>(r: Result<T, Error>) -> Error {
    match r {
        Ok(_) => panic!("expected a refusal, got an admission"),
        Err(e) => e,
    }
}

/// Asserts that `wait`, answered between store times `before` and `after`,
/// is exactly the wait until `slot` at some instant of that interval.
#[track_caller]
pub fn assert_wait_until(wait: u64, slot: u64, before: u64, after: u64, late: u64) {
    let (lo, hi) = (
        slot.saturating_sub(after),
        slot.saturating_sub(before) + late,
    );
    assert!(
        (lo..=hi).contains(&wait),
        "waited {wait} ns; the slot {slot} asked for {lo}..={hi} (store clock {before}..={after})"
    );
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// A burst is admitted, then the next request is refused with the exact
/// wait, and the refusal takes nothing.
pub async fn burst_then_refusal_with_exact_wait<S: Store>(store: &S) {
    let p = Policy::new(3.0, 1.0).unwrap();
    let b = store.one(p).await;
    let mut model = Model::new(&[p]);
    for _ in 0..3 {
        let at = b.try_acquire(1.0).await.unwrap();
        model.admit(1.0, at);
    }
    for _ in 0..2 {
        let before = b.now().await;
        let wait = retry_after(b.try_acquire(1.0).await.unwrap_err());
        let after = b.now().await;
        assert_wait_until(wait, model.slot(1.0, before), before, after, S::One::LATE);
    }
    // At the slot the request goes (past the store's `LATE`, which a
    // refusal it repeated without asking again may last beyond the slot).
    let before = b.now().await;
    let slot = model.slot(1.0, before);
    tokio::time::sleep(Duration::from_nanos(
        slot.saturating_sub(before) + S::One::LATE,
    ))
    .await;
    let at = b.try_acquire(1.0).await.unwrap();
    assert!(at >= slot);
    model.admit(1.0, at);
}

/// A reservation is granted within its longest wait, in FIFO order, and
/// refused beyond it with the exact wait, taking nothing.
pub async fn reserve_within_and_over_max_wait<S: Store>(store: &S) {
    let b = store.one(Policy::new(1.0, 1.0).unwrap()).await;
    let r0 = b.reserve(1.0, Duration::ZERO).await.unwrap();
    let t0 = S::One::slot(&r0);
    assert_eq!(t0, S::One::issued(&r0), "a full bucket grants at once");
    let r1 = b.reserve(1.0, Duration::from_secs(1)).await.unwrap();
    let r2 = b.reserve(1.0, Duration::from_secs(2)).await.unwrap();
    assert_eq!(S::One::slot(&r1), t0 + SEC);
    assert_eq!(S::One::slot(&r2), t0 + 2 * SEC);
    for r in [&r1, &r2] {
        assert!(S::One::issued(r) >= t0 && S::One::issued(r) < S::One::slot(r));
    }
    let before = b.now().await;
    let wait = retry_after(refusal(b.reserve(1.0, Duration::from_millis(2500)).await));
    let after = b.now().await;
    assert_wait_until(wait, t0 + 3 * SEC, before, after, S::One::LATE);
    let r3 = b.reserve(1.0, Duration::from_secs(4)).await.unwrap();
    assert_eq!(S::One::slot(&r3), t0 + 3 * SEC, "the refusal took nothing");
    for r in [r0, r1, r2, r3] {
        S::One::commit(r);
    }
}

/// Only the last reservation gives its tokens back (`tat` is a stack), and
/// nothing comes back once the slot has come.
pub async fn refund_of_the_last_reservation_only<S: Store>(store: &S) {
    let p = Policy::new(1.0, 1.0).unwrap();
    let b = store.one(p).await;
    let t0 = b.try_acquire(1.0).await.unwrap();
    let a = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    let r = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(S::One::slot(&a), t0 + SEC);
    assert_eq!(S::One::slot(&r), t0 + 2 * SEC);
    assert_eq!(
        S::One::cancel(a).await,
        0.0,
        "a later reservation depends on it"
    );
    let c = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        S::One::slot(&c),
        t0 + 3 * SEC,
        "the first one gave nothing back"
    );
    assert_eq!(S::One::cancel(c).await, 1.0, "the last one comes back");
    assert_eq!(
        S::One::cancel(r).await,
        1.0,
        "then the one before it is the last"
    );
    let d = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(S::One::slot(&d), t0 + 2 * SEC);
    S::One::commit(d);

    // Once the slot has come, the tokens are in use.
    let p = Policy::per_second(5.0).unwrap();
    let fast = store.one(p).await;
    let mut model = Model::new(&[p]);
    let at = fast.try_acquire(1.0).await.unwrap();
    model.admit(1.0, at);
    let late = fast.reserve(1.0, Duration::from_secs(1)).await.unwrap();
    model.take_at(1.0, S::One::slot(&late));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(S::One::cancel(late).await, 0.0);
    let before = fast.now().await;
    let got = fast.try_acquire(1.0).await;
    let after = fast.now().await;
    match got {
        Ok(at) => model.admit(1.0, at),
        Err(e) => assert_wait_until(
            retry_after(e),
            model.slot(1.0, before),
            before,
            after,
            S::One::LATE,
        ),
    }
}

/// A deferral admits one request at its deadline, then refills at the
/// rate; a shorter deferral never moves it earlier.
pub async fn defer_floor_never_moves_earlier<S: Store>(store: &S) {
    let p = Policy::new(5.0, 10.0).unwrap();
    let b = store.one(p).await;
    let d0 = b.now().await;
    b.defer_for(Duration::from_secs(3)).await;
    let d1 = b.now().await;
    for shorter in [None, Some(Duration::from_secs(1)), Some(Duration::ZERO)] {
        if let Some(d) = shorter {
            b.defer_for(d).await;
        }
        let before = b.now().await;
        let wait = retry_after(b.try_acquire(1.0).await.unwrap_err());
        let after = b.now().await;
        // The deadline lies in [d0 + 3 s, d1 + 3 s]; the wait ends there.
        let (lo, hi) = (
            (d0 + 3 * SEC).saturating_sub(after),
            (d1 + 3 * SEC) - before,
        );
        assert!(
            (lo..=hi).contains(&wait),
            "waited {wait}, expected {lo}..={hi}"
        );
    }
    let first = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    let deadline = S::One::slot(&first);
    assert!(
        (d0 + 3 * SEC..=d1 + 3 * SEC).contains(&deadline),
        "admitted at the deadline"
    );
    let second = b.reserve(1.0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        S::One::slot(&second),
        deadline + 100 * MS,
        "then at the rate"
    );
    S::One::commit(first);
    S::One::commit(second);
}

/// A policy change keeps the token count, clamped to the new capacity.
pub async fn set_policy_keeps_the_level<S: Store>(store: &S) {
    let p = Policy::new(10.0, 1.0).unwrap();
    let b = store.one(p).await;
    let t0 = b.try_acquire(4.0).await.unwrap();
    b.set_policy(Policy::new(20.0, 1.0).unwrap()).await;
    let before = b.now().await;
    let tokens = b.available().await;
    let after = b.now().await;
    // Six left, plus what refilled since (one a second).
    let (lo, hi) = (
        6.0 + (before - t0) as f64 / 1e9,
        6.0 + (after - t0) as f64 / 1e9,
    );
    assert!(
        tokens >= lo - 1e-9 && tokens <= hi + 1e-9,
        "{tokens} not in {lo}..={hi}"
    );

    let q = Policy::new(3.0, 2.0).unwrap();
    b.set_policy(q).await;
    assert_eq!(b.available().await, 3.0, "clamped to the new capacity");
    let mut model = Model::new(&[q]);
    let at = b.try_acquire(3.0).await.unwrap();
    model.admit(3.0, at);
    let before = b.now().await;
    let wait = retry_after(b.try_acquire(1.0).await.unwrap_err());
    let after = b.now().await;
    assert_wait_until(wait, model.slot(1.0, before), before, after, S::One::LATE);
}

/// Several limits: a request takes from all or from none, at the latest
/// slot among them.
pub async fn multi_limit_all_or_none<S: Store>(store: &S) {
    let fast = Policy::new(2.0, 2.0).unwrap();
    let slow = Policy::new(5.0, 0.2).unwrap();
    let b = store.many(&[fast, slow]).await;
    let mut model = Model::new(&[fast, slow]);
    for _ in 0..2 {
        let at = b.try_acquire(1.0).await.unwrap();
        model.admit(1.0, at);
    }
    // The fast limit refuses: the slow one must not be charged.
    for _ in 0..3 {
        let before = b.now().await;
        let wait = retry_after(b.try_acquire(1.0).await.unwrap_err());
        let after = b.now().await;
        assert_wait_until(wait, model.slot(1.0, before), before, after, S::Many::LATE);
    }
    // Waiting takes from both, at the latest slot.
    for _ in 0..2 {
        let before = b.now().await;
        let slot = model.slot(1.0, before);
        let at = b.acquire(1.0).await;
        if slot > before {
            assert_eq!(at, slot, "admitted at the latest slot");
        } else {
            assert!(at >= before);
        }
        model.take_at(1.0, at);
    }
    // The slow limit has its fifth token left: the refusals took nothing
    // from it, or this would be refused for seconds.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let at = b.try_acquire(1.0).await.unwrap();
    model.admit(1.0, at);
    // Now the slow limit is empty and the tightest: its wait is the answer.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let before = b.now().await;
    let wait = retry_after(b.try_acquire(1.0).await.unwrap_err());
    let after = b.now().await;
    assert!(wait > SEC, "the slow limit refuses for long: {wait} ns");
    assert_wait_until(wait, model.slot(1.0, before), before, after, S::Many::LATE);
    let tokens = b.available().await;
    assert!(tokens < 1.0, "{tokens}");
}

/// Bad token counts and counts over the capacity are typed errors that
/// take nothing.
pub async fn invalid_tokens_and_over_capacity<S: Store>(store: &S) {
    let b = store.one(Policy::new(2.0, 2.0).unwrap()).await;
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(
            matches!(b.try_acquire(t).await, Err(e) if e.kind() == ErrorKind::InvalidTokens),
            "{t}"
        );
    }
    assert!(matches!(
        b.try_acquire(2.5).await,
        Err(e) if e.kind() == ErrorKind::InsufficientCapacity
    ));
    assert!(matches!(
        b.reserve(3.0, Duration::MAX).await,
        Err(e) if e.kind() == ErrorKind::InsufficientCapacity
    ));
    b.try_acquire(2.0).await.unwrap();

    let m = store
        .many(&[
            Policy::new(2.0, 2.0).unwrap(),
            Policy::new(5.0, 1.0).unwrap(),
        ])
        .await;
    assert!(matches!(
        m.try_acquire(3.0).await,
        Err(e) if e.kind() == ErrorKind::InsufficientCapacity
    ));
    assert!(matches!(
        m.try_acquire(f64::NAN).await,
        Err(e) if e.kind() == ErrorKind::InvalidTokens
    ));
    m.try_acquire(2.0).await.unwrap();
}

/// Runs every case as a test: `conformance_suite!(#[tokio::test] => store_expr)`
/// (one attribute),
/// where `store_expr` is an `Option` of a [`Store`] (`None` skips).
#[macro_export]
macro_rules! conformance_suite {
    (#[$attr:meta] => $store:expr) => {
        $crate::conformance_suite!(@cases #[$attr] $store;
            burst_then_refusal_with_exact_wait,
            reserve_within_and_over_max_wait,
            refund_of_the_last_reservation_only,
            defer_floor_never_moves_earlier,
            set_policy_keeps_the_level,
            multi_limit_all_or_none,
            invalid_tokens_and_over_capacity,
        );
    };
    (@cases #[$attr:meta] $store:expr; $($case:ident,)*) => {
        $(
            #[$attr]
            async fn $case() {
                let Some(store) = $store else { return };
                conformance::$case(&store).await;
            }
        )*
    };
}
