//! The ready-made extractors beside [`ClientIp`](super::ClientIp):
//! [`HeaderKey`], [`PathKey`], [`KeyFn`], and tuples for composite keys.

use std::fmt;

use http::header::HeaderName;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

use super::key::{KeyExtractor, KeyWriter};
use crate::Error;

/// Keys by a request header, such as an API key: `HeaderKey::new("x-api-key")?`.
/// A request without the header (or with it empty) has no key; of several
/// values, the first counts.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys by the header `name`; an invalid header name is an error.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        HeaderName::from_bytes(name.as_bytes())
            .map(|name| HeaderKey { name })
            .map_err(|_| {
                Error::config(
                    format!("HeaderKey::new({name:?})"),
                    "not a valid header name; use letters, digits and `-`, like `x-api-key`",
                )
            })
    }

    /// The header read.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl KeyExtractor for HeaderKey {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        match request.headers().get(&self.name) {
            Some(v) if !v.is_empty() => {
                key.push(v.as_bytes());
                true
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        format!("the `{}` header", self.name)
    }
}

/// Keys by the path of the request (the route): every client shares the
/// bucket of a path. A guard added with axum's `Router::layer` sees the
/// full path; with `route_layer`, the path that matched.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathKey;

impl KeyExtractor for PathKey {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        key.push_str(request.uri().path());
        true
    }

    fn describe(&self) -> String {
        "the request path".into()
    }
}

/// A request's head as a [`KeyFn`] sees it.
#[derive(Debug)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (where servers put connection data).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

/// Keys by a closure: `KeyFn::new(|head, key| ...)` writes the key and
/// returns whether the request has one.
///
/// ```
/// use tollgate::server::{ClientIp, KeyFn};
///
/// // `/login?user=NAME`, per user and client address.
/// let user = KeyFn::new(|head, key| {
///     let query = head.uri.query().unwrap_or("");
///     match query.split('&').find_map(|kv| kv.strip_prefix("user=")) {
///         Some(name) if !name.is_empty() => { key.push_str(name); true }
///         _ => false,
///     }
/// })
/// .describe("the `user` query parameter");
/// let per_user_and_ip = (user, ClientIp::peer());
/// # let _ = per_user_and_ip;
/// ```
#[derive(Clone)]
pub struct KeyFn<F> {
    f: F,
    what: String,
}

impl<F> KeyFn<F>
where
    F: Fn(&RequestHead<'_>, &mut KeyWriter) -> bool + Send + Sync + 'static,
{
    /// Keys by `f`.
    pub fn new(f: F) -> Self {
        KeyFn {
            f,
            what: "a rate-limit key".into(),
        }
    }

    /// What the key is, for the answer to a request without one.
    pub fn describe(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl<F> KeyExtractor for KeyFn<F>
where
    F: Fn(&RequestHead<'_>, &mut KeyWriter) -> bool + Send + Sync + 'static,
{
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        (self.f)(&RequestHead::of(request), key)
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// A composite key: every part must be present.
impl<A: KeyExtractor, B2: KeyExtractor> KeyExtractor for (A, B2) {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        if !self.0.extract(request, key) {
            return false;
        }
        key.next_part();
        self.1.extract(request, key)
    }

    fn describe(&self) -> String {
        format!("{} and {}", self.0.describe(), self.1.describe())
    }
}

/// A composite key: every part must be present.
impl<A: KeyExtractor, B2: KeyExtractor, C: KeyExtractor> KeyExtractor for (A, B2, C) {
    #[inline]
    fn extract<B>(&self, request: &Request<B>, key: &mut KeyWriter) -> bool {
        if !self.0.extract(request, key) {
            return false;
        }
        key.next_part();
        if !self.1.extract(request, key) {
            return false;
        }
        key.next_part();
        self.2.extract(request, key)
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} and {}",
            self.0.describe(),
            self.1.describe(),
            self.2.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::key_of;
    use super::*;
    use http::HeaderValue;

    #[test]
    fn escaping_keeps_case_and_never_merges_keys() {
        let h = HeaderKey::new("x-api-key").unwrap();
        let req = |v: &str| Request::builder().header("x-api-key", v).body(()).unwrap();
        let (raw, esc) = key_of(&h, &req("AbC-1.z%")).unwrap();
        assert_eq!(raw, "AbC-1.z%");
        assert_eq!(esc, "AbC-1.z%25");
        let odd = HeaderValue::from_bytes(b"a b\xff").unwrap();
        let req_odd = Request::builder()
            .header("x-api-key", odd)
            .body(())
            .unwrap();
        assert_eq!(key_of(&h, &req_odd).unwrap().1, "a%20b%ff");
        assert_ne!(key_of(&h, &req("abc")), key_of(&h, &req("ABC")));
        assert_eq!(key_of(&h, &req("")), None);
        assert_eq!(key_of(&h, &Request::new(())), None);
    }

    #[test]
    fn composite_parts_stay_apart() {
        let a = KeyFn::new(|h, k| {
            k.push_str(h.uri.path());
            true
        });
        let b = HeaderKey::new("x-b").unwrap();
        let req = |p: &str, v: &str| Request::builder().uri(p).header("x-b", v).body(()).unwrap();
        let one = key_of(&(a.clone(), b.clone()), &req("/ab", "c")).unwrap();
        let two = key_of(&(a, b), &req("/a", "bc")).unwrap();
        assert_ne!(one.1, two.1);
        assert_eq!(one.0, "/ab|c");
    }

    #[test]
    fn long_keys_spill_to_the_heap() {
        let h = HeaderKey::new("x-api-key").unwrap();
        let long = "K".repeat(500);
        let req = Request::builder()
            .header("x-api-key", &long)
            .body(())
            .unwrap();
        let (raw, esc) = key_of(&h, &req).unwrap();
        assert_eq!(raw, long);
        assert_eq!(esc, long);
        let spaced = " ".repeat(100);
        let req = Request::builder()
            .header("x-api-key", format!("a{spaced}b"))
            .body(())
            .unwrap();
        assert_eq!(
            key_of(&h, &req).unwrap().1,
            format!("a{}b", "%20".repeat(100))
        );
    }
}
