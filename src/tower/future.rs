//! The response future: an explicit state machine from admission to
//! response.
//!
//! ```text
//! Waiting ──slot, inner ready, no deferral──▶ Calling ──response──▶ Done
//!                                                ▲
//! (admitted at call, with the inner service ready) ┘
//! refused at call ──▶ Refused ──▶ Done
//! ```
//!
//! * **Waiting** is the machine the server guard's future shares
//!   ([`wait`](super::wait)): acquiring the slot with an unready clone of
//!   the inner service, then readying the clone with the permit kept, and
//!   back to acquiring when a server deferred the set meanwhile, so
//!   nothing is sent inside a deferral.
//! * **Calling** holds the inner future and the permit until the response,
//!   which it hands to the registry ([`Permit::observe`]).
//!
//! Each state is left before the next is entered, so no inner future is
//! polled after it completed, and the permit lives until the response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::wait::{Failed, Waiting};
use super::BoxError;
use crate::{Acquire, Error, Permit};

/// A refusal as tower errors go: the [`Error`], boxed, whatever its kind,
/// so one `downcast_ref::<tollgate::Error>()` finds it.
pub(crate) fn rejection(e: Error) -> BoxError {
    Box::new(e)
}

/// Reads a response back into the registry.
pub(crate) type Observe<Res> = fn(&Permit, &Res);

pin_project! {
    /// The future of [`RateLimit`](super::RateLimit) and
    /// [`KeyedRateLimit`](super::KeyedRateLimit).
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R>,
        observe: Observe<S::Response>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R>
    where
        S: Service<R>,
    {
        Waiting {
            // Boxed: the request and the service are large, and only a
            // request that waits needs them here.
            waiting: Box<Waiting<S, R>>,
        },
        Calling {
            #[pin]
            call: S::Future,
            permit: Option<Permit>,
        },
        Refused {
            error: Option<BoxError>,
        },
        Done,
    }
}

impl<S: Service<R>, R> ResponseFuture<S, R> {
    /// Admitted at `call`: the service that was polled ready calls now.
    #[inline]
    pub(crate) fn calling(
        permit: Permit,
        ready: &mut S,
        request: R,
        observe: Observe<S::Response>,
    ) -> Self {
        let call = ready.call(request);
        ResponseFuture {
            state: State::Calling {
                call,
                permit: Some(permit),
            },
            observe,
        }
    }

    /// Must wait for its slot: `unready` is a clone that has not been polled
    /// ready, so the wait holds none of the inner service's capacity.
    pub(crate) fn waiting(
        acquire: Acquire,
        unready: S,
        request: R,
        observe: Observe<S::Response>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiting: Box::new(Waiting::new(acquire, unready, request)),
            },
            observe,
        }
    }

    pub(crate) fn refused(error: Error, observe: Observe<S::Response>) -> Self {
        ResponseFuture {
            state: State::Refused {
                error: Some(rejection(error)),
            },
            observe,
        }
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { waiting } => match ready!(waiting.poll_call(cx)) {
                    Ok((call, permit)) => this.state.set(State::Calling {
                        call,
                        permit: Some(permit),
                    }),
                    Err(Failed::Refused(e)) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(rejection(e)));
                    }
                    Err(Failed::Inner(e)) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e.into()));
                    }
                },
                StateProj::Calling { call, permit } => {
                    let result = ready!(call.poll(cx)).map_err(Into::into);
                    if let (Ok(response), Some(permit)) = (&result, permit.as_ref()) {
                        (this.observe)(permit, response);
                    }
                    // The permit (and any in-flight slot) ends with the response.
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Refused { error } => {
                    let error = error.take();
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error.unwrap_or_else(|| "refused".into())));
                }
                StateProj::Done => panic!("`ResponseFuture` polled after it completed"),
            }
        }
    }
}

impl<S: Service<R>, R> fmt::Debug for ResponseFuture<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
