//! The response future: wait for the slot if needed, call, observe.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::BoxError;
use crate::{Error, Permit, Registry, Target};

type Acquire = Pin<Box<dyn Future<Output = Result<Permit, Error>> + Send>>;

/// What admission decided at `call` time.
pub(crate) enum Admission {
    Ready(Permit),
    Wait(Acquire),
    Refused(BoxError),
}

impl Admission {
    /// The fast path allocates nothing; a request that must wait gets a
    /// boxed wait that owns a copy of its target.
    #[inline]
    pub(crate) fn new(registry: &Registry, target: &Target<'_>) -> Admission {
        match registry.try_admit(target, 1.0) {
            Ok(Some(permit)) => Admission::Ready(permit),
            Ok(None) => {
                let registry = registry.clone();
                let (host, port, path) = (
                    target.host().to_owned(),
                    target.port(),
                    target.path().to_owned(),
                );
                Admission::Wait(Box::pin(async move {
                    registry
                        .acquire(&Target::new(&host, port, &path), 1.0)
                        .await
                }))
            }
            Err(e) => Admission::Refused(rejection(e)),
        }
    }
}

/// A refusal as tower errors go: the [`RateLimited`](crate::RateLimited)
/// itself for rejections (so `downcast_ref::<RateLimited>()` finds it), the
/// [`Error`] otherwise.
pub(crate) fn rejection(e: Error) -> BoxError {
    match e {
        Error::RateLimited(r) => Box::new(r),
        e => Box::new(e),
    }
}

pub(crate) struct Waiting<S, R> {
    acquire: Acquire,
    inner: Option<S>,
    request: Option<R>,
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
        // Boxed: the request and the service are large, and only a request
        // that waits (and allocates anyway) needs them here.
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
    }
}

impl<S: Service<R>, R> ResponseFuture<S, R> {
    #[inline]
    pub(crate) fn new(
        admission: Admission,
        mut inner: S,
        request: R,
        observe: Observe<S::Response>,
    ) -> Self {
        let state = match admission {
            Admission::Ready(permit) => {
                let call = inner.call(request);
                State::Calling {
                    call,
                    permit: Some(permit),
                }
            }
            Admission::Wait(acquire) => State::Waiting {
                waiting: Box::new(Waiting {
                    acquire,
                    inner: Some(inner),
                    request: Some(request),
                }),
            },
            Admission::Refused(e) => State::Refused { error: Some(e) },
        };
        ResponseFuture { state, observe }
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { waiting } => {
                    let Waiting {
                        acquire,
                        inner,
                        request,
                    } = &mut **waiting;
                    let permit = match ready!(acquire.as_mut().poll(cx)) {
                        Ok(p) => p,
                        Err(e) => return Poll::Ready(Err(rejection(e))),
                    };
                    let svc = inner.as_mut().expect("polled after completion");
                    // Ready once for `call`; the wait may have been long.
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let mut svc = inner.take().expect("polled after completion");
                    let call = svc.call(request.take().expect("polled after completion"));
                    this.state.set(State::Calling {
                        call,
                        permit: Some(permit),
                    });
                }
                StateProj::Calling { call, permit } => {
                    let result = ready!(call.poll(cx)).map_err(Into::into);
                    let permit = permit.take();
                    if let (Ok(response), Some(permit)) = (&result, &permit) {
                        (this.observe)(permit, response);
                    }
                    // The permit (and any in-flight slot) ends with the response.
                    drop(permit);
                    return Poll::Ready(result);
                }
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl<S: Service<R>, R> fmt::Debug for ResponseFuture<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
