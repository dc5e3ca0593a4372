//! The lane queues under loom: requests join, wait to be the head the
//! scheduler picks, take their slot and leave, or give up, from three
//! threads.
//!
//! What every interleaving must keep:
//! * no lost wakeup: a request that is not the head keeps its waker, and
//!   whoever makes it the head (a request served, or one that gives up at
//!   the head) wakes it, so every request is served; a request that waits
//!   for a wake that never comes stays parked and loom reports a deadlock;
//! * FIFO within a lane: a lane's requests are served in the order they
//!   joined;
//! * the batch share: with both lanes waiting, batch work that got less
//!   than its share of the recent slots goes next, and interactive work
//!   goes first otherwise.
//!
//! A request here does what the `Acquire` future does in its lane, with a
//! bucket that always has a token: it polls until it is the head (parking
//! between polls, as a task waits for its waker), then is served.

use std::task::{Wake, Waker};

use loom::thread;

use crate::registry::lanes::{Lane, Lanes, Queues};
use crate::sync::{model, Arc, Mutex};

/// A waker that unparks a loom thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// The requests served, in order: (lane, place).
type Served = Arc<Mutex<Vec<(Lane, u64)>>>;

/// Waits as a queued request does until place `id` is the head, then
/// takes its slot and records it. The record is made before the queue
/// hears of it, while the request is still the head of its lane, so two
/// requests of one lane are recorded in the order they were served.
fn wait_turn(queues: &Queues, lane: Lane, id: u64, served: &Served) {
    let waker = Waker::from(std::sync::Arc::new(Unpark(thread::current())));
    while !queues.is_head(lane, id, &waker) {
        thread::park();
    }
    served.lock().push((lane, id));
    queues.served(lane, id);
}

/// Joins `lane` and waits for its turn.
fn request(queues: &Queues, lane: Lane, served: &Served) {
    let id = queues.join(lane);
    wait_turn(queues, lane, id, served);
}

/// Each lane's places were served in increasing order (the order joined).
fn assert_fifo(served: &[(Lane, u64)]) {
    for lane in [Lane::Interactive, Lane::Batch] {
        let ids: Vec<u64> = served
            .iter()
            .filter(|(l, _)| *l == lane)
            .map(|(_, id)| *id)
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{lane:?} served out of order: {served:?}"
        );
    }
}

fn queues(share: f64) -> Arc<Queues> {
    Arc::new(Queues::new(Lanes::new().batch_share(share)))
}

/// Five requests from three threads, two of which send one of each lane
/// in turn, join and wait while others are served: every one is woken and
/// served, each lane in the order it joined.
#[test]
fn loom_model_lanes_no_lost_wakeup() {
    use Lane::{Batch, Interactive};
    model("lanes_no_lost_wakeup", || {
        let q = queues(0.5);
        let served = Served::default();
        let threads: Vec<_> = [[Interactive, Batch], [Batch, Interactive]]
            .into_iter()
            .map(|lanes| {
                let (q, served) = (q.clone(), served.clone());
                thread::spawn(move || {
                    for lane in lanes {
                        request(&q, lane, &served);
                    }
                })
            })
            .collect();
        request(&q, Interactive, &served);
        for t in threads {
            t.join().unwrap();
        }
        let served = served.lock().clone();
        assert_eq!(served.len(), 5, "{served:?}");
        assert_fifo(&served);
        assert!(q.is_empty());
    });
}

/// A request gives up (its future dropped) after it may have become the
/// head, while two others wait: the next head is woken all the same.
#[test]
fn loom_model_lanes_a_request_gives_up() {
    model("lanes_a_request_gives_up", || {
        let q = queues(0.1);
        let served = Served::default();
        let quitter = {
            let q = q.clone();
            thread::spawn(move || {
                let id = q.join(Lane::Interactive);
                let waker = Waker::from(std::sync::Arc::new(Unpark(thread::current())));
                let _ = q.is_head(Lane::Interactive, id, &waker);
                q.leave(Lane::Interactive, id);
            })
        };
        let other = {
            let (q, served) = (q.clone(), served.clone());
            thread::spawn(move || request(&q, Lane::Interactive, &served))
        };
        request(&q, Lane::Batch, &served);
        quitter.join().unwrap();
        other.join().unwrap();
        let served = served.lock().clone();
        assert_eq!(served.len(), 2, "{served:?}");
        assert_fifo(&served);
        assert!(q.is_empty());
    });
}

/// The batch share: after one interactive slot, with a share of 1/2 and
/// two interactive requests and one batch request waiting, batch is owed
/// the next slot, then interactive goes first; with a share of 0, batch
/// goes last. Whatever order the three wake and poll in.
fn share_model(share: f64, expected: [(Lane, u64); 3]) {
    let q = queues(share);
    // One interactive slot already taken through the queues.
    let first = q.join(Lane::Interactive);
    q.served(Lane::Interactive, first);
    let i1 = q.join(Lane::Interactive);
    let i2 = q.join(Lane::Interactive);
    let b1 = q.join(Lane::Batch);
    assert_eq!((i1, i2, b1), (1, 2, 3));
    let served = Served::default();
    let threads: Vec<_> = [(Lane::Interactive, i1), (Lane::Batch, b1)]
        .into_iter()
        .map(|(lane, id)| {
            let (q, served) = (q.clone(), served.clone());
            thread::spawn(move || wait_turn(&q, lane, id, &served))
        })
        .collect();
    wait_turn(&q, Lane::Interactive, i2, &served);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*served.lock(), expected);
}

#[test]
fn loom_model_lanes_batch_share() {
    use Lane::{Batch, Interactive};
    model("lanes_batch_share", || {
        share_model(0.5, [(Batch, 3), (Interactive, 1), (Interactive, 2)])
    });
}

#[test]
fn loom_model_lanes_batch_share_zero() {
    use Lane::{Batch, Interactive};
    model("lanes_batch_share_zero", || {
        share_model(0.0, [(Interactive, 1), (Interactive, 2), (Batch, 3)])
    });
}
