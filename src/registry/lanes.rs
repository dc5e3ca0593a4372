//! Priority lanes: requests of one source that wait are served
//! [`Lane::Interactive`] first, [`Lane::Batch`] after, with a guaranteed
//! minimum share for batch work so that it is never starved.
//!
//! A source with lanes ([`Source::lanes`](crate::Source::lanes)) keeps a
//! queue per lane in each bucket set. A request that cannot go at once
//! joins its lane's queue instead of reserving a slot ahead: only the
//! request at the head of the queue the scheduler picks waits for the
//! bucket, and it takes its tokens when they are there (with
//! `try_acquire`), so a later interactive request is served before batch
//! requests that came earlier. Every admission is an ordinary take from
//! the bucket, so the window bound is unchanged.
//!
//! **The scheduler.** When both lanes have requests waiting, the next
//! slot goes to the interactive lane, unless batch work got less than its
//! share ([`Lanes::batch_share`], default 10 %) of the last 64 slots taken
//! through the queues; then it goes to batch. So batch work gets at least
//! its share of a saturated source, and an interactive request waits at
//! most for the slot in progress plus, rarely, one slot owed to batch.

use std::collections::VecDeque;
use std::task::Waker;

use crate::sync::{Mutex, MutexGuard};
use crate::Error;

/// A request's lane on a source with [`Lanes`]. Set it per request in the
/// request's extensions (`http::Extensions`; the tower layer and the
/// reqwest middleware read it), or with the header `x-tollgate-lane:
/// batch`, which the tower layer removes before the request is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lane {
    /// Served first (the default).
    #[default]
    Interactive,
    /// Served when no interactive request waits, and at least its share.
    Batch,
}

impl Lane {
    /// The lane a header value names (`interactive` or `batch`, any case).
    pub fn from_header(value: &http::HeaderValue) -> Option<Lane> {
        let v = value.to_str().ok()?.trim();
        if v.eq_ignore_ascii_case("batch") {
            Some(Lane::Batch)
        } else if v.eq_ignore_ascii_case("interactive") {
            Some(Lane::Interactive)
        } else {
            None
        }
    }

    fn index(self) -> usize {
        match self {
            Lane::Interactive => 0,
            Lane::Batch => 1,
        }
    }
}

/// The header that names a request's lane (removed by the tower layer and
/// the reqwest middleware).
pub const LANE_HEADER: &str = "x-tollgate-lane";

impl super::Registry {
    /// The lane of an outgoing request, for the client adapters: `chosen`
    /// (a [`Lane`] in the request's extensions), else the [`LANE_HEADER`],
    /// else interactive. The header is for the adapter, not for the server,
    /// and is removed. A registry without lanes looks at neither: every
    /// request is interactive, and the header, which nothing reads, goes as
    /// it came.
    #[cfg_attr(not(any(feature = "tower", feature = "reqwest")), allow(dead_code))]
    #[inline]
    pub(crate) fn take_lane(&self, headers: &mut http::HeaderMap, chosen: Option<Lane>) -> Lane {
        if !self.has_lanes() {
            return Lane::Interactive;
        }
        let header = headers.remove(LANE_HEADER);
        chosen
            .or_else(|| header.as_ref().and_then(Lane::from_header))
            .unwrap_or_default()
    }

    /// [`take_lane`](Self::take_lane) for an `http::Request` (the tower
    /// layer's): its [`Lane`] extension, else the header. A registry
    /// without lanes reads neither, not even the extensions.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn take_request_lane<B>(&self, request: &mut http::Request<B>) -> Lane {
        if !self.has_lanes() {
            return Lane::Interactive;
        }
        let chosen = request.extensions().get::<Lane>().copied();
        self.take_lane(request.headers_mut(), chosen)
    }
}

/// Lanes for a source: see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Lanes {
    batch_share: f64,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes { batch_share: 0.1 }
    }
}

impl Lanes {
    /// Two lanes, batch guaranteed 10 % of a saturated source.
    pub fn new() -> Self {
        Self::default()
    }

    /// The least share of slots batch work gets while it waits, in
    /// `[0, 1)`; 0 serves batch only when no interactive request waits.
    pub fn batch_share(mut self, share: f64) -> Self {
        self.batch_share = share;
        self
    }

    /// The share set.
    pub fn share(&self) -> f64 {
        self.batch_share
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.batch_share >= 0.0 && self.batch_share < 1.0) {
            return Err(format!(
                "a batch share of {}: give a number from 0 up to (not including) 1",
                self.batch_share
            ));
        }
        Ok(())
    }
}

/// The queues of one bucket set.
pub(crate) struct Queues {
    lanes: Lanes,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: [VecDeque<(u64, Option<Waker>)>; 2],
    next_id: u64,
    /// The last 64 slots taken through the queues: a bit set for batch.
    recent: u64,
    recent_len: u32,
}

impl State {
    /// The lane whose head goes next.
    fn pick(&self, lanes: &Lanes) -> Option<usize> {
        let [interactive, batch] = &self.waiting;
        match (interactive.is_empty(), batch.is_empty()) {
            (true, true) => None,
            (false, true) => Some(0),
            (true, false) => Some(1),
            (false, false) => {
                let seen = self.recent_len.min(64);
                let batch_got = self.recent.count_ones();
                let owed = (lanes.batch_share * f64::from(seen)).ceil() as u32;
                Some(if batch_got < owed { 1 } else { 0 })
            }
        }
    }

    fn head(&self, lanes: &Lanes) -> Option<u64> {
        self.pick(lanes)
            .and_then(|l| self.waiting[l].front().map(|(id, _)| *id))
    }

    /// The waker of the head the scheduler picks, taken to be woken once
    /// the queue's lock is released (a waker is foreign code).
    fn head_waker(&mut self, lanes: &Lanes) -> Option<Waker> {
        let l = self.pick(lanes)?;
        self.waiting[l].front_mut().and_then(|(_, w)| w.take())
    }
}

impl Queues {
    pub(crate) fn new(lanes: Lanes) -> Self {
        Queues {
            lanes,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Whether no request waits in any lane (then a request may try at once).
    pub(crate) fn is_empty(&self) -> bool {
        let s = self.state();
        s.waiting.iter().all(VecDeque::is_empty)
    }

    /// Joins `lane`'s queue; returns its place (an id in the queue).
    pub(crate) fn join(&self, lane: Lane) -> u64 {
        let mut s = self.state();
        let id = s.next_id;
        s.next_id += 1;
        s.waiting[lane.index()].push_back((id, None));
        id
    }

    /// Whether place `id` is the head the scheduler picks; if not, its
    /// waker is kept to be woken when it is.
    pub(crate) fn is_head(&self, lane: Lane, id: u64, waker: &Waker) -> bool {
        let mut s = self.state();
        if s.head(&self.lanes) == Some(id) {
            return true;
        }
        if let Some(entry) = s.waiting[lane.index()].iter_mut().find(|(i, _)| *i == id) {
            entry.1 = Some(waker.clone());
        }
        false
    }

    /// Place `id` took its slot: it leaves, the slot is counted for its
    /// lane, and the next head is woken.
    pub(crate) fn served(&self, lane: Lane, id: u64) {
        let next = {
            let mut s = self.state();
            s.waiting[lane.index()].retain(|(i, _)| *i != id);
            s.recent = (s.recent << 1) | u64::from(lane == Lane::Batch);
            s.recent_len = s.recent_len.saturating_add(1);
            s.head_waker(&self.lanes)
        };
        if let Some(w) = next {
            w.wake();
        }
    }

    /// Place `id` gave up (its future was dropped, or refused): it leaves,
    /// and the next head is woken if it was the head.
    pub(crate) fn leave(&self, lane: Lane, id: u64) {
        let next = {
            let mut s = self.state();
            let was_head = s.head(&self.lanes) == Some(id);
            s.waiting[lane.index()].retain(|(i, _)| *i != id);
            if was_head {
                s.head_waker(&self.lanes)
            } else {
                None
            }
        };
        if let Some(w) = next {
            w.wake();
        }
    }
}

/// Checks a source's lanes when the registry is built.
pub(crate) fn check(lanes: &Lanes) -> Result<(), Error> {
    lanes
        .check()
        .map_err(|reason| Error::config("lanes", reason))
}
