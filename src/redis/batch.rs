//! [`Batch`]: the takes of one bucket set that arrive while a call for it is
//! on the way to Redis wait here, in their order, and go together in the
//! next call (`takes` in `gcra.lua`), which serves each exactly as it would
//! have been served alone at that call's now. One call per round trip
//! instead of one per request; when nothing is on the way, a take makes its
//! own call at once.
//!
//! This file owns the queue and whose turn it is; the calls themselves are
//! [`RedisBucket`](super::RedisBucket)'s.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::script::{LimitSet, TakeRequest};
use super::RedisReservation;
use crate::sync::{Mutex, MutexGuard};
use crate::Error;

/// What a waiting take hears: its reservation or refusal, or `None` when
/// Redis did not answer (the bucket's fallback decides).
pub(super) type Answer = Option<Result<RedisReservation, Error>>;

/// The takes of one bucket set waiting for a call.
#[derive(Default)]
pub(super) struct Batch {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A call for the set is on the way (alone, or a batch's).
    busy: bool,
    waiting: Vec<Waiting>,
}

/// A take waiting for the next call.
pub(super) struct Waiting {
    /// The limits it was costed under.
    pub set: Arc<LimitSet>,
    pub request: TakeRequest,
    pub answer: oneshot::Sender<Answer>,
}

/// Whose turn a take is.
pub(super) enum Turn {
    /// Nothing is on the way: call Redis now, then [`Batch::done`].
    Alone,
    /// A call is on the way: the answer comes with the next one.
    Wait(oneshot::Receiver<Answer>),
}

impl Batch {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Takes a turn for `request`, costed under `set`.
    pub(super) fn join(&self, set: &Arc<LimitSet>, request: &TakeRequest) -> Turn {
        let mut state = self.state();
        if !state.busy {
            state.busy = true;
            return Turn::Alone;
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.push(Waiting {
            set: set.clone(),
            request: request.clone(),
            answer: tx,
        });
        Turn::Wait(rx)
    }

    /// The call on the way has ended: whether takes wait for the next one
    /// (then the set stays busy, and its caller must serve them with
    /// [`next`](Self::next) until that says none are left).
    pub(super) fn done(&self) -> bool {
        let mut state = self.state();
        if state.waiting.is_empty() {
            state.busy = false;
            false
        } else {
            true
        }
    }

    /// The next takes to send together: the longest run of the oldest ones
    /// costed under one set (a policy change between them starts a new
    /// run). `None` when none wait: the set is idle again.
    pub(super) fn next(&self) -> Option<Vec<Waiting>> {
        let mut state = self.state();
        let Some(first) = state.waiting.first() else {
            state.busy = false;
            return None;
        };
        let run = state
            .waiting
            .iter()
            .take_while(|w| Arc::ptr_eq(&w.set, &first.set))
            .count();
        Some(state.waiting.drain(..run).collect())
    }

    /// The caller serving the waiting takes went away (its task was
    /// dropped): they are told nothing (each then calls alone), and the set
    /// is idle again.
    pub(super) fn abandon(&self) {
        let mut state = self.state();
        state.waiting.clear();
        state.busy = false;
    }
}
