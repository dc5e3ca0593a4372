//! [`Guard`]: keys a request, finds its tier, admits it or answers; and
//! the state every clone of a guard shares, which the layer builds.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::future::{Announce, GuardFuture};
use super::key::{KeyExtractor, KeyWriter};
use super::response::{self, refusal, SuccessHeaders, TierInfo};
use crate::tower::wait::give_back;
use crate::{Admission, Registry};

/// What a request without a key gets, its tier looked up.
pub(crate) enum Missing {
    Refuse(StatusCode),
    Tier(usize),
}

/// A tier function with its answer looked up among the tiers: `Ok(None)`
/// is the default tier.
pub(crate) type TierFn =
    dyn Fn(&str, &[Arc<TierInfo>]) -> Result<Option<usize>, UnknownTier> + Send + Sync;

/// What every clone of a guard shares.
pub(crate) struct Shared<K> {
    pub extractor: K,
    pub registry: Registry,
    pub tiers: Box<[Arc<TierInfo>]>,
    pub default_tier: usize,
    pub map: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    pub by: Option<Box<TierFn>>,
    pub missing: Missing,
    pub success: SuccessHeaders,
    pub what: String,
    /// Whether the key as written is needed (a tier lookup reads it).
    pub keep_raw: bool,
}

/// Why a key has no tier: a tier function named one the registry lacks.
pub(crate) struct UnknownTier(pub Box<str>);

impl<K> Shared<K> {
    /// The tier of a key as written (`None`: not UTF-8, or no lookup).
    #[inline]
    pub(crate) fn tier_of(&self, raw: Option<&str>) -> Result<usize, UnknownTier> {
        let Some(raw) = raw else {
            return Ok(self.default_tier);
        };
        if let Some(&i) = self.map.get(raw) {
            return Ok(i);
        }
        match &self.by {
            Some(f) => Ok(f(raw, &self.tiers)?.unwrap_or(self.default_tier)),
            None => Ok(self.default_tier),
        }
    }

    /// What to tell (the log and the client) when a tier function named a
    /// tier the registry lacks.
    pub(crate) fn unknown_tier(&self, UnknownTier(name): &UnknownTier) -> String {
        let names: Vec<&str> = self.tiers.iter().map(|t| &*t.name).collect();
        format!(
            "the rate limiter's `tier_by` function placed this key in tier `{name}`, which \
             is not a tier of the registry (tiers: [{}]); add \
             `tollgate::server::tier(\"{name}\")` to the registry and to the names \
             `tier_by` declares, or return one of its tiers",
            names.join(", ")
        )
    }
}

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
            .finish_non_exhaustive()
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
                Err(unknown) => return unknown_tier(shared, &unknown),
            }
        } else {
            match shared.missing {
                // Every request without a key shares the empty key's bucket.
                Missing::Tier(tier) => tier,
                Missing::Refuse(status) => return no_key(shared, status),
            }
        };
        let info = &shared.tiers[tier];
        if info.permit_free && !info.waits && shared.success == SuccessHeaders::None {
            // Answered at once, with nothing to hold or announce: admit
            // without a permit.
            return match info.handle.check_key(key.escaped(), 1.0) {
                Ok(()) => GuardFuture::called(self.inner.call(request)),
                Err(e) => refused(info, e),
            };
        }
        self.admit(tier, key.escaped(), request)
    }
}

// The paths below are out of line, so that the path of a request admitted
// without a permit keeps a small stack frame: the answers build strings,
// and a waiting request's state is built on the stack before it is boxed.

impl<S, K> Guard<S, K> {
    /// Admits a request that holds a permit (an in-flight slot, success
    /// headers to announce, or a wait).
    #[inline(never)]
    fn admit<B, ResB>(&mut self, tier: usize, key: &str, request: Request<B>) -> GuardFuture<S, B>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone,
        ResB: From<String>,
    {
        let shared = &*self.shared;
        let info = &shared.tiers[tier];
        let admission = info.handle.admit_key(key, 1.0);
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
                let unready = give_back(&mut self.inner);
                GuardFuture::waiting(acquire, unready, request, info.clone(), announce())
            }
            Err(e) => GuardFuture::answered(refusal(info, e)),
        }
    }
}

/// The answer to a refusal, at once.
#[inline(never)]
fn refused<S, B, ResB>(info: &TierInfo, e: crate::Error) -> GuardFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<String>,
{
    GuardFuture::answered(refusal(info, e))
}

/// The answer when a tier function named a tier the registry lacks.
#[cold]
#[inline(never)]
fn unknown_tier<S, B, ResB, K>(shared: &Shared<K>, unknown: &UnknownTier) -> GuardFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<String>,
{
    let detail = shared.unknown_tier(unknown);
    tracing::error!(tier = &*unknown.0, "{detail}");
    GuardFuture::answered(response::plain(StatusCode::INTERNAL_SERVER_ERROR, &detail))
}

/// The answer to a request without a key, where such requests are refused.
#[cold]
#[inline(never)]
fn no_key<S, B, ResB, K>(shared: &Shared<K>, status: StatusCode) -> GuardFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<String>,
{
    let detail = format!(
        "the request carries no key; requests are keyed by {}",
        shared.what
    );
    GuardFuture::answered(response::plain(status, &detail))
}
