//! [`Guard`]: keys a request, finds its tier, admits it or answers.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::future::{Announce, GuardFuture};
use super::key::{KeyExtractor, KeyWriter};
use super::layer::{Missing, Shared, SuccessHeaders, TierInfo};
use super::response;
use crate::{Admission, Error};

/// The service [`GuardLayer`](super::GuardLayer) makes: it never fails on
/// its own account (its error is the inner service's), it answers.
///
/// `poll_ready` is the inner service's. An admitted request calls the
/// service that was polled ready; a refused one is answered without
/// calling it (the readiness stays for the next request). A request of a
/// tier that waits takes an unready clone, so a waiting request holds none
/// of the inner service's capacity.
pub struct Guard<S, K> {
    inner: S,
    shared: Arc<Shared<K>>,
}

impl<S: Clone, K> Clone for Guard<S, K> {
    fn clone(&self) -> Self {
        Guard {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for Guard<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("inner", &self.inner)
            .field("key", &self.shared.what)
            .finish()
    }
}

impl<S, K> Guard<S, K> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K>>) -> Self {
        Guard { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, K, B, ResB> Service<Request<B>> for Guard<S, K>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    K: KeyExtractor,
    ResB: From<String>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GuardFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let mut key = KeyWriter::new(shared.keep_raw);
        let keyed = shared.extractor.extract(&request, &mut key) && !key.is_empty();
        let tier = if keyed {
            match shared.tier_of(key.raw_str()) {
                Ok(tier) => tier,
                Err(unknown) => {
                    let detail = shared.unknown_tier(&unknown);
                    tracing::error!(tier = &*unknown.0, "{detail}");
                    return GuardFuture::answered(response::plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &detail,
                    ));
                }
            }
        } else {
            match shared.missing {
                // Every request without a key shares the empty key's bucket.
                Missing::Tier(tier) => tier,
                Missing::Refuse(status) => {
                    let detail = format!(
                        "the request carries no key; requests are keyed by {}",
                        shared.what
                    );
                    return GuardFuture::answered(response::plain(status, &detail));
                }
            }
        };
        let info = &shared.tiers[tier];
        if info.permit_free && !info.waits && shared.success == SuccessHeaders::None {
            // Answered at once, with nothing to hold or announce: admit
            // without a permit.
            match info.handle.check_key(key.escaped(), 1.0) {
                Ok(()) => return GuardFuture::called(self.inner.call(request)),
                // A tier kept in Redis: the admission below.
                Err(Error::AsyncOnly { .. }) => {}
                Err(e) => return GuardFuture::answered(refusal(info, e)),
            }
        }
        let admission = info.handle.admit_key(key.escaped(), 1.0);
        let announce = || match shared.success {
            SuccessHeaders::None => None,
            headers => Some(Announce {
                tier: info.clone(),
                with_policy: headers == SuccessHeaders::RateLimitAndPolicy,
            }),
        };
        match admission {
            Ok(Admission::Ready(permit)) => {
                GuardFuture::calling(self.inner.call(request), permit, announce())
            }
            Ok(Admission::Wait(acquire)) => {
                // Give back the readiness `poll_ready` reserved; the wait
                // readies a clone of its own once its slot has come.
                let fresh = self.inner.clone();
                let unready = fresh.clone();
                drop(mem::replace(&mut self.inner, fresh));
                GuardFuture::waiting(acquire, unready, request, info.clone(), announce())
            }
            Err(e) => GuardFuture::answered(refusal(info, e)),
        }
    }
}

/// The answer to a refused admission.
pub(crate) fn refusal<B: From<String>>(tier: &TierInfo, e: Error) -> Response<B> {
    match e {
        Error::RateLimited(r) => response::too_many(tier, r.retry_after()),
        Error::InFlightFull { max_in_flight, .. } => response::in_flight_full(tier, max_in_flight),
        Error::Store { message } => {
            // A tier kept in Redis that fails closed while Redis is down.
            tracing::warn!(tier = &*tier.name, error = %message, "the rate limiter's store failed");
            response::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the rate limiter's shared store is unavailable; retry shortly",
            )
        }
        e => {
            tracing::error!(tier = &*tier.name, error = %e, "the rate limiter refused a request");
            response::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the rate limiter is misconfigured; see the server's log",
            )
        }
    }
}
