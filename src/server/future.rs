//! The guard's response future: an explicit state machine.
//!
//! ```text
//! Waiting(acquiring) ──slot──▶ Waiting(readying) ──inner ready──▶ Calling ──response──▶ Done
//!                                                                   ▲
//! admitted at call ─────────────────────────────────────────────────┘
//! refused at call ──▶ Answered ──▶ Done
//! ```
//!
//! * **Calling** holds the inner future and the [`Permit`] until the
//!   response, then adds the success headers.
//! * **Answered** holds a response made at `call` (a 429, a request
//!   without a key): the inner service is never called.
//! * **Waiting** only exists for a tier that waits (`OnLimit::Wait` with a
//!   `max_wait`): it holds the [`Acquire`] future, an unready clone of the
//!   inner service, and the request; a wait past `max_wait` ends in a 429.
//!   It is *acquiring* while it holds the `Acquire`, and *readying* once
//!   the `Acquire` has given way to the [`Permit`] and the clone is polled
//!   ready (the two `Option`s of `Waiting` say which).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::response::{self, TierInfo};
use crate::{Acquire, Permit};

/// The tier whose headers an admitted response gets.
pub(crate) struct Announce {
    pub tier: Arc<TierInfo>,
    pub with_policy: bool,
}

pub(crate) struct Waiting<S, B> {
    acquire: Option<Acquire>,
    permit: Option<Permit>,
    inner: S,
    request: Option<Request<B>>,
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
            state: State::Calling {
                call,
                permit: None,
                announce: None,
            },
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
                    acquire: Some(acquire),
                    permit: None,
                    inner: unready,
                    request: Some(request),
                    tier,
                    announce,
                }),
            },
        }
    }
}

impl<S, B, ResB> Future for GuardFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<String>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
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
                    if let Some(acquire) = &mut w.acquire {
                        match ready!(Pin::new(acquire).poll(cx)) {
                            Ok(permit) => {
                                w.permit = Some(permit);
                                w.acquire = None;
                            }
                            Err(e) => {
                                let answer = response::refusal(&w.tier, e);
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(answer));
                            }
                        }
                    }
                    if let Err(e) = ready!(w.inner.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    let (Some(permit), Some(request)) = (w.permit.take(), w.request.take()) else {
                        unreachable!("a request is called once");
                    };
                    let call = w.inner.call(request);
                    let announce = w.announce.take();
                    this.state.set(State::Calling {
                        call,
                        permit: Some(permit),
                        announce,
                    });
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
