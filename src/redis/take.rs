//! How a take reaches Redis once what is known ([`Refusals`](super::refusals))
//! did not refuse it: in a call of its own when nothing is on the way, or
//! with the takes that waited for the call on the way
//! ([`Batch`](super::batch)); and what each answer teaches the refusals to
//! come. [`RedisBucket::reserve_weighted`] decides which.

use std::sync::Arc;
use std::time::Duration;

use super::batch::{Batch, Waiting};
use super::refusals::Epoch;
use super::reservation::RedisReservation;
use super::script::{self, LimitSet, Op, TakeRequest, Taken, MAX_WAIT};
use super::RedisBucket;
use crate::{Error, RateLimited};

impl RedisBucket {
    /// One take in its own script call; `None` when Redis did not answer.
    pub(super) async fn take_alone(
        &self,
        set: Arc<LimitSet>,
        request: &TakeRequest,
    ) -> Option<Result<RedisReservation, Error>> {
        let inner = &self.inner;
        let epoch = inner.refusals.epoch();
        let op = Op::Take {
            max_wait: request.max_wait,
            costs: &request.costs,
        };
        let store = &inner.store;
        let taken = self
            .on_redis(|| async {
                let reply = store.eval(&set.keys, &set.limits, &op).await?;
                script::taken(&reply, &request.costs)
            })
            .await?;
        let arrived = tokio::time::Instant::now();
        Some(self.answer(&set, epoch, arrived, &request.costs, taken))
    }

    /// Sends the takes that waited, run by run, until none wait; in a task
    /// of its own, spawned when the call they waited for ended.
    async fn take_waiting(self) {
        let batch = &self.inner.batch;
        let mut serving = Serving { batch, armed: true };
        while let Some(run) = batch.next() {
            self.take_together(run).await;
            // The takes just answered run before the next run is cut: most
            // come back at once for their next slot, and join this call
            // rather than wait for the one after it.
            tokio::task::yield_now().await;
        }
        serving.armed = false;
    }

    /// One script call for a run of waiting takes, all costed under one
    /// set; each hears its own answer.
    async fn take_together(&self, run: Vec<Waiting>) {
        let inner = &self.inner;
        let set = run[0].set.clone();
        // The call they waited for may have taught a refusal (a grant that
        // emptied the bucket, a refusal of as much): the takes at the head
        // of the run that it refuses are refused here, with the wait they
        // would hear alone. From the first take that goes to Redis on, the
        // rest go too: their waits depend on what it takes.
        let mut run = run.into_iter().peekable();
        while let Some(w) = run.peek() {
            let max_wait = Duration::from_nanos(w.request.max_wait);
            let Some(wait) = inner.refusals.refuses(&set, &w.request.costs, max_wait) else {
                break;
            };
            let w = run.next().expect("peeked");
            let _ = w
                .answer
                .send(Some(Err(Error::from(RateLimited::new(wait)))));
        }
        // A take that went away meanwhile asks for nothing.
        let run: Vec<Waiting> = run.filter(|w| !w.answer.is_closed()).collect();
        if run.is_empty() {
            return;
        }
        let requests: Vec<TakeRequest> = run.iter().map(|w| w.request.clone()).collect();
        let epoch = inner.refusals.epoch();
        let op = Op::Takes {
            requests: &requests,
        };
        let store = &inner.store;
        let taken = self
            .on_redis(|| async {
                let reply = store.eval(&set.keys, &set.limits, &op).await?;
                script::takens(&reply, &requests)
            })
            .await;
        let arrived = tokio::time::Instant::now();
        match taken {
            Some(taken) => {
                for (w, t) in run.into_iter().zip(taken) {
                    let answer = self.answer(&set, epoch, arrived, &w.request.costs, t);
                    // A take that went away gives back what it was granted
                    // (its reservation's drop refunds it).
                    let _ = w.answer.send(Some(answer));
                }
            }
            None => {
                for w in run {
                    let _ = w.answer.send(None);
                }
            }
        }
    }

    /// What Redis answered a take of `costs` (asked under `epoch`, arrived
    /// at `arrived`), remembered for the refusals to come.
    fn answer(
        &self,
        set: &Arc<LimitSet>,
        epoch: Epoch,
        arrived: tokio::time::Instant,
        costs: &[u64],
        taken: Taken,
    ) -> Result<RedisReservation, Error> {
        let inner = &self.inner;
        match taken {
            Taken::Granted { now, slot, tickets } => {
                inner.refusals.granted(epoch, arrived, now, &tickets);
                Ok(RedisReservation::remote(
                    inner.store.clone(),
                    inner.name.clone(),
                    set.clone(),
                    inner.refusals.clone(),
                    now,
                    slot,
                    tickets,
                ))
            }
            Taken::Refused { now, slot } => {
                let wait = slot.saturating_duration_since(now);
                // A reply that did not decode refuses for the longest wait;
                // only a slot Redis computed is worth remembering.
                if wait < MAX_WAIT {
                    inner.refusals.refused(epoch, arrived, now, slot, costs);
                }
                Err(Error::from(RateLimited::new(wait)))
            }
        }
    }
}

/// A take's own call: when it ends (or its future is dropped), the takes
/// that waited for it go to Redis together, in a task.
pub(super) struct Alone<'a>(pub(super) &'a RedisBucket);

impl Drop for Alone<'_> {
    fn drop(&mut self) {
        let bucket = self.0;
        if !bucket.inner.batch.done() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(bucket.clone().take_waiting());
            }
            // No runtime to call from: each waiting take calls alone.
            Err(_) => bucket.inner.batch.abandon(),
        }
    }
}

/// The task sending waiting takes; if it is dropped midway, the takes
/// still waiting call alone, and the set is idle again.
struct Serving<'a> {
    batch: &'a Batch,
    armed: bool,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.batch.abandon();
        }
    }
}
