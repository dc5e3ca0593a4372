//! The response future: an explicit state machine from admission to
//! response.
//!
//! ```text
//!            ┌──────── deferred meanwhile: acquire again ───────┐
//!            ▼                                                  │
//! Waiting(acquiring) ──slot──▶ Waiting(readying) ──inner ready──┴──▶ Calling ──response──▶ Done
//!                                                                      ▲
//! (admitted at call, with the inner service ready) ────────────────────┘
//! ```
//!
//! * **Waiting**, acquiring, holds the [`Acquire`] future (routed once, at
//!   `call`), an unready clone of the inner service, and the request.
//! * **Waiting**, readying, holds the [`Permit`] and polls the clone's
//!   `poll_ready` until it is ready; an inner service that is not always
//!   ready (a pool, a `ConcurrencyLimit`, a `Buffer`) makes the request wait
//!   here with its permit kept. Once ready, a deferral a server set
//!   meanwhile (`Retry-After`) sends the request back to acquiring, with a
//!   fresh unready clone, so nothing is sent inside a deferral.
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

use super::BoxError;
use crate::{Acquire, Error, Permit};

/// A refusal as tower errors go: the [`Error`], boxed, whatever its kind,
/// so one `downcast_ref::<tollgate::Error>()` finds it.
pub(crate) fn rejection(e: Error) -> BoxError {
    Box::new(e)
}

/// Reads a response back into the registry.
pub(crate) type Observe<Res> = fn(&Permit, &Res);

/// What a request that must wait carries: boxed, because the request and
/// the service are large and only a request that waits needs them here.
struct Waiting<S, R> {
    phase: Phase,
    inner: S,
    request: Option<R>,
}

enum Phase {
    Acquiring(Acquire),
    /// The permit, and the finished `Acquire`, kept to queue again.
    Readying(Option<Permit>, Acquire),
}

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
                waiting: Box::new(Waiting {
                    phase: Phase::Acquiring(acquire),
                    inner: unready,
                    request: Some(request),
                }),
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
                StateProj::Waiting { waiting } => {
                    let w = &mut **waiting;
                    match &mut w.phase {
                        Phase::Acquiring(acquire) => match ready!(Pin::new(&mut *acquire).poll(cx))
                        {
                            Ok(permit) => {
                                let Phase::Acquiring(acquire) = std::mem::replace(
                                    &mut w.phase,
                                    Phase::Readying(Some(permit), Acquire::finished()),
                                ) else {
                                    unreachable!()
                                };
                                if let Phase::Readying(_, kept) = &mut w.phase {
                                    *kept = acquire;
                                }
                            }
                            Err(e) => {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(rejection(e)));
                            }
                        },
                        Phase::Readying(permit, acquire) => {
                            if let Err(e) = ready!(w.inner.poll_ready(cx)) {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(e.into()));
                            }
                            if permit.as_ref().is_some_and(Permit::is_deferred) {
                                // A server deferred the host while the inner
                                // service was busy: give its readiness back
                                // (a fresh clone is unready) and queue again.
                                let fresh = w.inner.clone();
                                drop(std::mem::replace(&mut w.inner, fresh));
                                let mut acquire = std::mem::replace(acquire, Acquire::finished());
                                if let Some(p) = permit.take() {
                                    acquire.again(p);
                                }
                                w.phase = Phase::Acquiring(acquire);
                                continue;
                            }
                            let permit = permit.take();
                            let request = w.request.take();
                            let (Some(permit), Some(request)) = (permit, request) else {
                                unreachable!("a request is called once");
                            };
                            let call = w.inner.call(request);
                            this.state.set(State::Calling {
                                call,
                                permit: Some(permit),
                            });
                        }
                    }
                }
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
