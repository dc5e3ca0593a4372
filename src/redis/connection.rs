//! [`Connection`]: one connection to Redis for a store and everything its
//! buckets share: the multiplexed connection (which reconnects by itself),
//! the script, the key prefix and the settings. Every script call goes
//! through [`Connection::eval`], within the timeout.

use std::fmt;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Script, Value};

use super::fallback::OnStoreError;
use super::script::{self, Limit, Op};
use crate::Error;

/// What a [`RedisStore`](super::RedisStore) and its buckets share.
pub(super) struct Connection {
    pub conn: ConnectionManager,
    pub script: Script,
    pub prefix: String,
    pub timeout: Duration,
    pub probe_every: Duration,
    pub on_store_error: OnStoreError,
}

/// A store error that says what failed and why.
pub(super) fn store_error(context: &str, e: impl fmt::Display) -> Error {
    Error::Store {
        message: format!("{context}: {e}"),
    }
}

impl Connection {
    /// The keys of bucket `name` with `n` limits.
    pub fn keys(&self, name: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{}{{{name}}}:{i}", self.prefix))
            .collect()
    }

    /// The error of a call that got no answer within the timeout.
    pub fn timed_out(&self) -> Error {
        store_error(
            "Redis did not answer",
            format!("no answer within {:?}", self.timeout),
        )
    }

    /// Runs the script once (`EVALSHA`, loading it again on `NOSCRIPT`)
    /// within the timeout.
    pub async fn eval(
        &self,
        keys: &[String],
        limits: &[Limit],
        op: &Op<'_>,
    ) -> Result<Value, Error> {
        let inv = script::invocation(&self.script, keys, limits, op);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(store_error("Redis failed", e)),
            Err(_) => Err(self.timed_out()),
        }
    }
}
