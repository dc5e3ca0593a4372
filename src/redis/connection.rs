//! [`Connection`]: one connection to Redis for a store and everything its
//! buckets share: the multiplexed connection (which reconnects by itself),
//! the script, the key prefix and the settings. Every script call goes
//! through [`Connection::eval`], within the timeout.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{ErrorKind, RedisError, Script, Value};

use super::fallback::OnStoreError;
use super::script::{self, Limit, Op};
use crate::Error;

/// What a [`RedisStore`](super::RedisStore) and its buckets share.
pub(super) struct Connection {
    pub conn: ConnectionManager,
    /// The URL without its password, for messages.
    pub url: String,
    pub script: Script,
    pub prefix: String,
    pub timeout: Duration,
    pub probe_every: Duration,
    pub on_store_error: OnStoreError,
}

pub(super) fn store_error(message: String) -> Error {
    Error::Store { message }
}

/// What went wrong talking to Redis at `url` (already without its
/// password), and what to check.
pub(super) fn redis_error(url: &str, e: &RedisError) -> Error {
    let io = io_error(e);
    let message = if e.is_connection_refusal() {
        format!(
            "cannot connect to Redis at {url}: {}; check that redis-server is running \
             there and the URL is right",
            io_text(io)
        )
    } else if e.is_timeout() {
        format!(
            "cannot reach Redis at {url}: {}; check the host and port, and that the \
             network lets them through",
            io_text(io)
        )
    } else if e.kind() == ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| c == "NOAUTH" || c == "WRONGPASS" || c == "NOPERM")
    {
        format!(
            "Redis at {url} refused the credentials ({}); check the user and password \
             in the URL",
            e.detail()
                .unwrap_or(e.code().unwrap_or("authentication failed"))
        )
    } else if io.is_some() || e.is_connection_dropped() || e.is_unrecoverable_error() {
        format!(
            "lost the connection to Redis at {url}: {}; check that redis-server is \
             still running there",
            io_text(io)
        )
    } else {
        format!("Redis at {url} answered with an error: {e}")
    };
    store_error(message)
}

/// The I/O error inside a Redis error, if any (redis-rs keeps it behind an
/// `Arc`, which is what `source()` gives).
fn io_error(e: &RedisError) -> Option<&std::io::Error> {
    let source = std::error::Error::source(e)?;
    if let Some(io) = source.downcast_ref::<std::io::Error>() {
        return Some(io);
    }
    let shared = source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?;
    (**shared).downcast_ref::<std::io::Error>()
}

/// An I/O error in words (`connection refused`, `broken pipe`), without
/// the OS's error number where its kind says it all.
fn io_text(io: Option<&std::io::Error>) -> String {
    use std::io::ErrorKind as K;
    match io {
        None => "the connection failed".to_string(),
        Some(e) => match e.kind() {
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::NotConnected
            | K::TimedOut
            | K::UnexpectedEof
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable => e.kind().to_string(),
            _ => e.to_string(),
        },
    }
}

impl Connection {
    /// The keys of bucket `name` with `n` limits.
    pub(super) fn keys(&self, name: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{}{{{name}}}:{i}", self.prefix))
            .collect()
    }

    /// The error of a call that got no answer within the timeout.
    pub(super) fn timed_out(&self) -> Error {
        store_error(format!(
            "no answer from Redis at {} within {:?}; check that it is reachable and \
             not overloaded, or raise the store's timeout",
            self.url, self.timeout
        ))
    }

    /// Runs the script once (`EVALSHA`, loading it again on `NOSCRIPT`)
    /// within the timeout.
    pub(super) async fn eval(
        &self,
        keys: &[String],
        limits: &[Limit],
        op: &Op<'_>,
    ) -> Result<Value, Error> {
        let inv = script::invocation(&self.script, keys, limits, op);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(redis_error(&self.url, &e)),
            Err(_) => Err(self.timed_out()),
        }
    }
}
