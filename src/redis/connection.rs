//! [`Connection`]: one connection to Redis for a store and everything its
//! buckets share: the [`Link`] to a single node or to a cluster (either
//! reconnects by itself), the script, the key prefix and the settings.
//! Every script call goes through [`Connection::eval`], within the timeout.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Cmd, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};

use super::fallback::OnStoreError;
use super::script::{self, Limit, Op};
use crate::Error;

/// The connection itself: to one node, or to a cluster, whose client keeps
/// the slot map, sends each command to the master of its first key's slot,
/// and follows `MOVED` and `ASK`.
#[derive(Clone)]
pub(super) enum Link {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    /// Sends `cmd` where its keys live (any node for a keyless command).
    pub(super) async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Link::Node(conn) => cmd.query_async(&mut conn.clone()).await,
            Link::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }

    /// Sends `cmd` to the node that holds `key` (on a cluster, its slot's
    /// master), whatever keys the command names.
    pub(super) async fn query_at(&self, key: &str, cmd: Cmd) -> RedisResult<Value> {
        match self {
            Link::Node(conn) => cmd.query_async(&mut conn.clone()).await,
            Link::Cluster(conn) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.clone().route_command(cmd, routing).await
            }
        }
    }
}

/// What a [`RedisStore`](super::RedisStore) and its buckets share.
pub(super) struct Connection {
    pub link: Link,
    /// The URL without its password (on a cluster, the nodes it was given),
    /// for messages.
    pub url: String,
    pub script: Script,
    pub prefix: String,
    pub timeout: Duration,
    pub probe_every: Duration,
    pub on_store_error: OnStoreError,
}

pub(super) fn store_error(message: String) -> Error {
    Error::store(message)
}

/// What went wrong talking to Redis at `url` (already without its
/// password), and what to check; `e` itself is the error's `source()`, so
/// the message does not repeat it.
pub(super) fn redis_error(url: &str, e: &RedisError) -> Error {
    let io = io_error(e);
    let message = if e.is_connection_refusal() {
        format!(
            "cannot connect to Redis at {url}: {}; check that redis-server is running \
             there and the URL is right",
            io_text(io)
        )
    } else if e.kind() == ErrorKind::ClusterConnectionNotFound {
        format!(
            "cannot connect to Redis at {url}: no node of the cluster answers; check \
             that redis-server is running there and the URLs are right"
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
        match e.code() {
            Some(code) => format!("Redis at {url} answered with error {code}"),
            None => format!("Redis at {url} answered with an error"),
        }
    };
    store_error(message).with_cause(Arc::new(e.clone()))
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

    /// Runs the script once within the timeout: `EVALSHA`, and on
    /// `NOSCRIPT` (a node restarted, or one that joined later) `EVAL` with
    /// the source, which loads it into that node's cache. Both go to the
    /// node of the keys' slot; a `SCRIPT LOAD` instead would go to every
    /// node of a cluster and fail while any of them is down.
    pub(super) async fn eval(
        &self,
        keys: &[String],
        limits: &[Limit],
        op: &Op<'_>,
    ) -> Result<Value, Error> {
        let call = async {
            let sha = script::command("EVALSHA", self.script.get_hash(), keys, limits, op);
            match self.link.query(&sha).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    let eval = script::command("EVAL", script::SOURCE, keys, limits, op);
                    self.link.query(&eval).await
                }
                result => result,
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(redis_error(&self.url_for(keys), &e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Where calls on `keys` go, for messages: on a cluster, the master of
    /// their slot, which `CLUSTER SLOTS` names.
    fn url_for(&self, keys: &[String]) -> String {
        match (&self.link, keys.first()) {
            (Link::Cluster(_), Some(key)) => {
                format!("the master of slot {} of {}", slot(key), self.url)
            }
            _ => self.url.clone(),
        }
    }
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the
/// whole key when it has none, modulo 16384.
fn slot(key: &str) -> u16 {
    let key = key.as_bytes();
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let len = key[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &key[open + 1..open + 1 + len])
    });
    let mut crc: u16 = 0;
    for &b in tagged.unwrap_or(key) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_are_redis_clusters() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`'s docs.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("foo{hash_tag}"), 2515);
        assert_eq!(slot("tollgate:{api/a.test}:0"), slot("x{api/a.test}y"));
        // An empty tag is no tag: the whole key is hashed.
        assert_ne!(slot("{}a"), slot("{}b"));
    }
}
