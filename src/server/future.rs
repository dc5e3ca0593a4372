//! The guard's response future: an explicit state machine.
//!
//! ```text
//! Waiting ──slot, inner ready, no deferral──▶ Calling ──response──▶ Done
//!                                                ▲
//! admitted at call, with a permit ───────────────┘
//! admitted at call, no permit ──▶ Passing (the inner future, polled through)
//! refused at call ──▶ Answered ──▶ Done
//! ```
//!
//! * **Passing** holds only the inner future, for a request admitted
//!   without a permit (nothing to hold, nothing to announce): its poll is
//!   the inner future's, whose output is returned where it is written
//!   rather than copied through this future's frame. A poll after the
//!   response is the inner future's to answer, as with tower's own
//!   pass-through futures.
//! * **Calling** holds the inner future and the [`Permit`] until the
//!   response, then adds the success headers.
//! * **Answered** holds a response made at `call` (a 429, a request
//!   without a key): the inner service is never called.
//! * **Waiting** only exists for a tier that waits (`OnLimit::Wait` with a
//!   `max_wait`): the machine the client layer's future shares
//!   ([`crate::tower::wait`]), which acquires the slot with an unready
//!   clone of the inner service, then readies the clone with the permit
//!   kept (and acquires again after a deferral set meanwhile); a wait past
//!   `max_wait` ends in a 429.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::response::{self, TierInfo};
use crate::tower::wait::{self, Failed};
use crate::{Acquire, Permit};

/// The tier whose headers an admitted response gets.
pub(crate) struct Announce {
    pub tier: Arc<TierInfo>,
    pub with_policy: bool,
}

/// A request that waits, with the tier that answers a refusal and the
/// headers its response gets.
pub(crate) struct Waiting<S, B> {
    wait: wait::Waiting<S, Request<B>>,
    tier: Arc<TierInfo>,
    announce: Option<Announce>,
}

pin_project! {
    /// The future of [`Guard`](super::Guard).
    pub struct GuardFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Passing {
            #[pin]
            call: S::Future,
        },
        Calling {
            #[pin]
            call: S::Future,
            permit: Option<Permit>,
            announce: Option<Announce>,
        },
        Waiting {
            waiting: Box<Waiting<S, B>>,
        },
        Answered {
            response: Option<S::Response>,
        },
        Done,
    }
}

impl<S: Service<Request<B>>, B> GuardFuture<S, B> {
    #[inline]
    pub(crate) fn calling(call: S::Future, permit: Permit, announce: Option<Announce>) -> Self {
        GuardFuture {
            state: State::Calling {
                call,
                permit: Some(permit),
                announce,
            },
        }
    }

    /// Admitted without a permit (nothing to hold or announce).
    #[inline]
    pub(crate) fn called(call: S::Future) -> Self {
        GuardFuture {
            state: State::Passing { call },
        }
    }

    pub(crate) fn answered(response: S::Response) -> Self {
        GuardFuture {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    /// Must wait for its slot: `unready` is a clone that was not polled
    /// ready, so the wait holds none of the inner service's capacity.
    pub(crate) fn waiting(
        acquire: Acquire,
        unready: S,
        request: Request<B>,
        tier: Arc<TierInfo>,
        announce: Option<Announce>,
    ) -> Self {
        GuardFuture {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    wait: wait::Waiting::new(acquire, unready, request),
                    tier,
                    announce,
                }),
            },
        }
    }
}

impl<S, B, ResB> Future for GuardFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    ResB: From<String>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passing { call } => return call.poll(cx),
                StateProj::Calling {
                    call,
                    permit,
                    announce,
                } => {
                    let mut result = ready!(call.poll(cx));
                    if let (Ok(response), Some(permit), Some(a)) =
                        (&mut result, permit.as_ref(), announce.as_ref())
                    {
                        response::on_success(response, &a.tier, permit, a.with_policy);
                    }
                    // The permit (and any in-flight slot) ends with the response.
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Waiting { waiting } => {
                    let w = &mut **waiting;
                    match ready!(w.wait.poll_call(cx)) {
                        Ok((call, permit)) => {
                            let announce = w.announce.take();
                            this.state.set(State::Calling {
                                call,
                                permit: Some(permit),
                                announce,
                            });
                        }
                        Err(Failed::Refused(e)) => {
                            let answer = response::refusal(&w.tier, e);
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(answer));
                        }
                        Err(Failed::Inner(e)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                StateProj::Answered { response } => {
                    let response = response.take();
                    this.state.set(State::Done);
                    if let Some(response) = response {
                        return Poll::Ready(Ok(response));
                    }
                }
                StateProj::Done => panic!("`GuardFuture` polled after it completed"),
            }
        }
    }
}

impl<S: Service<Request<B>>, B> fmt::Debug for GuardFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardFuture").finish_non_exhaustive()
    }
}
