//! [`GuardLayer`] and its builder: which tier a key belongs to, what a
//! request without a key gets, and which headers successes carry.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use tower_layer::Layer;

use super::key::KeyExtractor;
use super::response::{SuccessHeaders, TierInfo};
use super::service::{Guard, Missing, Shared, TierFn, UnknownTier};
use crate::{Error, Registry};

/// What a request that carries no key gets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// It is answered at once with this status (4xx or 5xx) and a problem
    /// body that names what was missing. The default is 400 Bad Request;
    /// for API keys, 401 is usual (add your own `WWW-Authenticate`).
    Refuse(StatusCode),
    /// It is limited in the named tier, where every request without a key
    /// shares one bucket.
    Tier(String),
}

impl Default for MissingKey {
    fn default() -> Self {
        MissingKey::Refuse(StatusCode::BAD_REQUEST)
    }
}

/// Guards a server: limits each request by its key, in the key's tier,
/// answering 429 at once over the limit. See the [module docs](super).
///
/// ```
/// use std::convert::Infallible;
///
/// use http::{Request, Response, StatusCode};
/// use tollgate::server::{tier, ClientIp, GuardLayer};
/// use tollgate::Registry;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::builder().source(tier("anyone").limit("1/min".parse()?)).build()?;
/// // Keyed by the client's address, behind one trusted proxy.
/// let guard = GuardLayer::builder(registry, ClientIp::peer().trusted_proxies(1))
///     .default_tier("anyone")
///     .build()?;
/// let app = guard.layer(service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// }));
/// let request = || {
///     let mut req = Request::new(String::new());
///     req.extensions_mut().insert(std::net::SocketAddr::from(([10, 0, 0, 1], 443)));
///     req.headers_mut().insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
///     req
/// };
/// assert_eq!(app.clone().oneshot(request()).await?.status(), StatusCode::OK);
/// assert_eq!(app.clone().oneshot(request()).await?.status(), StatusCode::TOO_MANY_REQUESTS);
/// # Ok(()) }
/// ```
pub struct GuardLayer<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for GuardLayer<K> {
    fn clone(&self) -> Self {
        GuardLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for GuardLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tiers: Vec<&str> = self.shared.tiers.iter().map(|t| &*t.name).collect();
        f.debug_struct("GuardLayer")
            .field("key", &self.shared.what)
            .field("tiers", &tiers)
            .field("default_tier", &tiers[self.shared.default_tier])
            .finish_non_exhaustive()
    }
}

impl<K: KeyExtractor> GuardLayer<K> {
    /// A builder over `registry`'s tiers, keying requests with `key`.
    pub fn builder(registry: Registry, key: K) -> GuardBuilder<K> {
        GuardBuilder {
            registry,
            extractor: key,
            default_tier: None,
            map: Vec::new(),
            by: None,
            by_tiers: Vec::new(),
            missing: MissingKey::default(),
            success: SuccessHeaders::default(),
        }
    }

    /// The registry the tiers live in (for `host_count`, `set_policy`, …).
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }
}

impl<S, K> Layer<S> for GuardLayer<K> {
    type Service = Guard<S, K>;

    fn layer(&self, inner: S) -> Guard<S, K> {
        Guard::new(inner, self.shared.clone())
    }
}

/// Builds a [`GuardLayer`]; see [`GuardLayer::builder`].
#[must_use = "a builder does nothing until `.build()`"]
pub struct GuardBuilder<K> {
    registry: Registry,
    extractor: K,
    default_tier: Option<String>,
    map: Vec<(String, String)>,
    by: Option<Box<TierFn>>,
    /// The names `by` may return, checked by `build`.
    by_tiers: Vec<String>,
    missing: MissingKey,
    success: SuccessHeaders,
}

impl<K> fmt::Debug for GuardBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardBuilder")
            .field("default_tier", &self.default_tier)
            .field("keys", &self.map.len())
            .field("missing", &self.missing)
            .finish_non_exhaustive()
    }
}

impl<K: KeyExtractor> GuardBuilder<K> {
    /// The tier of keys that no entry and no function place (required when
    /// the registry has more than one tier).
    pub fn default_tier(mut self, name: impl Into<String>) -> Self {
        self.default_tier = Some(name.into());
        self
    }

    /// Places the key `key` (as written; for a key of several parts, see
    /// [`composite_key`](super::composite_key)) in tier `tier`.
    pub fn key_tier(mut self, key: impl Into<String>, tier: impl Into<String>) -> Self {
        self.map.push((key.into(), tier.into()));
        self
    }

    /// Places keys in tiers by a function of the key as written (a key of
    /// several parts is escaped: read it with [`key_parts`](super::key_parts));
    /// `None` is the default tier. Entries of [`key_tier`](Self::key_tier)
    /// are looked up first; a key that is not UTF-8 goes to the default
    /// tier.
    ///
    /// `tiers` declares every name `f` may return, and
    /// [`build`](Self::build) refuses one that is no tier of the registry.
    /// Names may be owned (tiers loaded from a database). Should `f` still
    /// name a tier the registry lacks, the request is answered 500 with a
    /// body that names it, and the same is logged at `error`.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use tollgate::server::{tier, GuardLayer, HeaderKey};
    /// use tollgate::Registry;
    ///
    /// // Plans by key, as loaded from a database.
    /// let plans: HashMap<String, String> =
    ///     [("k-acme".to_string(), "enterprise".to_string())].into();
    /// let registry = Registry::builder()
    ///     .source(tier("free").limit("5/s".parse()?))
    ///     .source(tier("enterprise").limit("100/s".parse()?))
    ///     .build()?;
    /// let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key")?)
    ///     .default_tier("free")
    ///     .tier_by(["enterprise"], move |key| plans.get(key).cloned())
    ///     .build()?;
    /// # let _ = guard;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tier_by<I, F, T>(mut self, tiers: I, f: F) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
        F: Fn(&str) -> Option<T> + Send + Sync + 'static,
        T: AsRef<str>,
    {
        self.by_tiers = tiers.into_iter().map(Into::into).collect();
        self.by = Some(Box::new(move |key, all| {
            let Some(name) = f(key) else {
                return Ok(None);
            };
            let name = name.as_ref();
            match all.iter().position(|t| &*t.name == name) {
                Some(i) => Ok(Some(i)),
                None => Err(UnknownTier(name.into())),
            }
        }));
        self
    }

    /// What a request without a key gets (default: 400).
    pub fn missing_key(mut self, missing: MissingKey) -> Self {
        self.missing = missing;
        self
    }

    /// Which headers an admitted request's response carries (default:
    /// `RateLimit`).
    pub fn success_headers(mut self, headers: SuccessHeaders) -> Self {
        self.success = headers;
        self
    }

    /// Takes the registry's sources as tiers and checks every name given.
    pub fn build(self) -> Result<GuardLayer<K>, Error> {
        let registry = self.registry;
        // Every source whose name can go into a header is a tier.
        let mut tiers = Vec::new();
        for name in registry.names() {
            let Some(quoted) = quote(&name) else {
                continue;
            };
            let handle = registry.source(&name)?;
            tiers.push(Arc::new(TierInfo {
                permit_free: handle.in_flight_cap().is_none() && handle.answers_now(),
                waits: handle.on_limit_mode() != crate::OnLimit::Reject,
                handle,
                name: name.as_str().into(),
                quoted: quoted.into(),
            }));
        }
        let names: Vec<&str> = tiers.iter().map(|t| &*t.name).collect();
        let find = |name: &str, what: &str| {
            names.iter().position(|n| *n == name).ok_or_else(|| {
                Error::config(
                    what.to_string(),
                    format!(
                        "`{name}` is not a tier of the registry; tiers: [{}]. Add \
                         `tollgate::server::tier(\"{name}\")` to the registry (a tier's \
                         name is printable ASCII: it goes into headers)",
                        names.join(", ")
                    ),
                )
            })
        };
        let default_tier = match (&self.default_tier, names.len()) {
            (Some(name), _) => find(name, "default_tier")?,
            (None, 1) => 0,
            (None, 0) => {
                return Err(Error::config(
                    "GuardLayer",
                    "the registry has no source to use as a tier; add \
                     `tollgate::server::tier(\"NAME\").limit(..)`",
                ))
            }
            (None, _) => {
                return Err(Error::config(
                    "GuardLayer",
                    format!(
                        "the registry has several tiers ([{}]); name the default one with `default_tier`",
                        names.join(", ")
                    ),
                ))
            }
        };
        if self.by.is_some() && self.by_tiers.is_empty() {
            return Err(Error::config(
                "tier_by",
                "no tier is declared: list every tier name the function may return, \
                 as in `tier_by([\"enterprise\"], |key| ..)`",
            ));
        }
        for name in &self.by_tiers {
            find(name, "tier_by")?;
        }
        let mut map = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for (key, tier) in &self.map {
            map.insert(
                key.as_str().into(),
                find(tier, &format!("key_tier({key:?})"))?,
            );
        }
        let missing = match self.missing {
            MissingKey::Tier(name) => Missing::Tier(find(&name, "missing_key")?),
            MissingKey::Refuse(status) if status.as_u16() >= 400 => Missing::Refuse(status),
            MissingKey::Refuse(status) => {
                return Err(Error::config(
                    "missing_key",
                    format!("refuse with a 4xx or 5xx status, not {status}"),
                ))
            }
        };
        let keep_raw = !map.is_empty() || self.by.is_some();
        Ok(GuardLayer {
            shared: Arc::new(Shared {
                what: self.extractor.describe(),
                extractor: self.extractor,
                registry,
                tiers: tiers.into_boxed_slice(),
                default_tier,
                map,
                by: self.by,
                missing,
                success: self.success,
                keep_raw,
            }),
        })
    }
}

/// `name` as an RFC 9651 string (`"free"`), if it is printable ASCII.
fn quote(name: &str) -> Option<String> {
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    Some(s)
}
