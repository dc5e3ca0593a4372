//! [`TryCloneBody`]: request bodies that `tower::retry` may copy for
//! another attempt.

/// A request body that may be copied for a retry. A streaming body that
/// cannot be replayed returns `None`, and its request is not retried.
///
/// Implemented for the bodies a hyper-util client is usually built for
/// (`http_body_util::Full<Bytes>`, `Empty<Bytes>`, and `bytes::Bytes`), so a
/// retrying stack needs no conversion of its requests, and for `()`,
/// `String`, `Vec<u8>` and static strings and slices.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tollgate::tower::TryCloneBody;
///
/// let body = Full::new(Bytes::from_static(b"{}"));
/// assert!(body.try_clone_body().is_some());
/// ```
pub trait TryCloneBody: Sized {
    /// A copy of the body, if it can be made.
    fn try_clone_body(&self) -> Option<Self>;
}

macro_rules! clone_body {
    ($($t:ty),*) => {$(
        impl TryCloneBody for $t {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

// `Bytes` clones by reference count, not by copying the buffer.
clone_body!(
    (),
    String,
    Vec<u8>,
    &'static str,
    &'static [u8],
    bytes::Bytes
);

/// `tower::retry` clones a request before sending it, while `Full` still
/// holds all of its data, so the copy replays the whole body.
impl<D: Clone> TryCloneBody for http_body_util::Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> TryCloneBody for http_body_util::Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(*self)
    }
}

impl<T: TryCloneBody> TryCloneBody for Option<T> {
    fn try_clone_body(&self) -> Option<Self> {
        match self {
            None => Some(None),
            Some(b) => b.try_clone_body().map(Some),
        }
    }
}
