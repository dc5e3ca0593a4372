//! [`Reservation`]: tokens taken for a slot that may lie in the future.

use std::fmt;
use std::time::Duration;

use super::TokenBucket;
use crate::clock::{Clock, Timestamp};

/// What a reservation took: its slot, the `tat` it left, its cost in
/// nanoseconds, and the policy version it was computed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub slot: u64,
    pub tat_after: u64,
    /// What the reservation found: a refund restores it.
    pub tat_before: u64,
    pub cost: u64,
    pub seq: u64,
}

impl Ticket {
    pub(crate) fn slot(&self) -> Timestamp {
        Timestamp::from_nanos(self.slot)
    }
}

/// Tokens taken from a [`TokenBucket`] for a slot, maybe in the future.
///
/// Keep the tokens by waiting for the slot ([`wait`](Self::wait),
/// [`wait_blocking`](Self::wait_blocking)) or by [`commit`](Self::commit)ting.
/// Dropping it, or calling [`cancel`](Self::cancel), before its slot gives
/// the tokens back if no reservation was made after it; once a later one
/// is queued behind it, nothing comes back (see
/// [Refunds](super#refunds)).
#[must_use = "a Reservation dropped before its slot refunds its tokens: `.wait().await` for the slot, or `.commit()` to keep them"]
pub struct Reservation<'a, C: Clock> {
    bucket: &'a TokenBucket<C>,
    ticket: Ticket,
    armed: bool,
}

impl<'a, C: Clock> Reservation<'a, C> {
    pub(crate) fn new(bucket: &'a TokenBucket<C>, ticket: Ticket) -> Self {
        Reservation {
            bucket,
            ticket,
            armed: true,
        }
    }

    /// The slot: when the request may go.
    pub fn ready_at(&self) -> Timestamp {
        self.ticket.slot()
    }

    /// How long from now until the slot (zero if it has come).
    pub fn delay(&self) -> Duration {
        self.ticket
            .slot()
            .saturating_duration_since(self.bucket.clock().now())
    }

    /// Sleeps until the slot and keeps the tokens. If this future is dropped
    /// before the slot, the tokens are refunded.
    pub async fn wait(mut self) {
        let slot = self.ticket.slot();
        if self.bucket.clock().now() < slot {
            self.bucket.clock().sleep_until(slot).await;
        }
        self.armed = false;
    }

    /// Blocks the thread until the slot and keeps the tokens.
    pub fn wait_blocking(mut self) {
        let slot = self.ticket.slot();
        if self.bucket.clock().now() < slot {
            self.bucket.clock().sleep_until_blocking(slot);
        }
        self.armed = false;
    }

    /// Keeps the tokens without waiting: the caller promises to send no
    /// earlier than [`ready_at`](Self::ready_at).
    pub fn commit(mut self) {
        self.armed = false;
    }

    /// Gives the tokens back now (what dropping does), returning how many
    /// came back: all of them if nothing was reserved after this one, none
    /// if a later reservation was made or once the slot has come.
    pub fn cancel(mut self) -> f64 {
        self.armed = false;
        self.bucket.cancel_ticket(&self.ticket)
    }
}

impl<C: Clock> Drop for Reservation<'_, C> {
    fn drop(&mut self) {
        if self.armed {
            self.bucket.cancel_ticket(&self.ticket);
        }
    }
}

impl<C: Clock> fmt::Debug for Reservation<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("ready_at", &self.ready_at())
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}
