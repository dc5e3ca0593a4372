//! [`RedisStoreBuilder`]: a store's settings ([`RedisStore::builder`] for
//! one node, [`RedisStore::cluster_builder`] for a cluster), and opening the
//! [`Connection`] its buckets share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterConfig};
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use ::redis::{Client, Script};

use super::connection::{redis_error, Connection, Link};
use super::fallback::OnStoreError;
use super::script;
use super::store::{check_name, RedisStore};
use crate::Error;

/// How long a call waits for Redis by default before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a failed bucket asks Redis again, by default.
pub const DEFAULT_PROBE_EVERY: Duration = Duration::from_millis(200);
/// The key prefix [`RedisStore::builder`] starts with.
pub const DEFAULT_PREFIX: &str = "tollgate:";

/// Settings for a [`RedisStore`]; from [`RedisStore::builder`] (one node)
/// or [`RedisStore::cluster_builder`] (a Redis Cluster).
#[derive(Clone)]
#[must_use = "a builder does nothing until `.connect().await` or `.connect_lazy()`"]
pub struct RedisStoreBuilder {
    target: Target,
    prefix: String,
    timeout: Duration,
    probe_every: Duration,
    on_store_error: OnStoreError,
}

/// Where the store connects.
#[derive(Clone)]
pub(super) enum Target {
    Node(String),
    /// Some nodes of a cluster: the client learns the others from them.
    Cluster(Vec<String>),
}

impl Target {
    /// The URLs without their credentials, for messages.
    fn redacted(&self) -> String {
        match self {
            Target::Node(url) => redacted(url),
            Target::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|url| redacted(url)).collect();
                format!("{} (cluster)", nodes.join(", "))
            }
        }
    }
}

impl RedisStore {
    /// Settings to connect to `url` (`redis://HOST[:PORT][/DB]`,
    /// `rediss://` for TLS when redis-rs is built with it); for a Redis
    /// Cluster, [`cluster_builder`](Self::cluster_builder).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Target::Node(url.into()))
    }

    /// Settings to connect to a Redis Cluster through `nodes`: the URLs
    /// of some of its nodes (one is enough; more let the store start while
    /// one of them is down), all with the same scheme and credentials.
    /// The client reads the cluster's slot map from them, sends each call
    /// to the master of its bucket's slot, and follows `MOVED` and `ASK`.
    /// See [Redis Cluster](super#redis-cluster).
    ///
    /// ```no_run
    /// use tollgate::redis::{OnStoreError, RedisStore};
    ///
    /// # async fn run() -> Result<(), tollgate::Error> {
    /// let store = RedisStore::cluster_builder([
    ///     "redis://10.0.0.1:6379/",
    ///     "redis://10.0.0.2:6379/",
    ///     "redis://10.0.0.3:6379/",
    /// ])
    /// .prefix("myapp:")
    /// .on_store_error(OnStoreError::Local { divide_by: 4 })
    /// .connect()
    /// .await?;
    /// let jikan = store.bucket("jikan", &["3/s".parse()?])?; // in the slot of `jikan`
    /// jikan.acquire(1.0).await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder<I>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        RedisStoreBuilder::new(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }
}

/// The URL without its credentials (the user info's password, a `pass=`
/// or `password=` query value), for messages and `Debug`.
fn redacted(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…{}", &base[..scheme], &base[at..])
        }
        _ => base.to_string(),
    };
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if matches!(key, "pass" | "password") => {
                    out.push_str(key);
                    out.push_str("=…");
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

/// The error of a URL redis-rs cannot read.
fn not_a_url(url: &str, e: &::redis::RedisError) -> Error {
    let detail = e.detail().map(|d| format!(" ({d})")).unwrap_or_default();
    Error::config(
        format!("redis url `{url}`"),
        format!(
            "not a Redis URL{detail}; write redis://[USER:PASSWORD@]HOST[:PORT][/DB], \
             rediss:// for TLS, or redis+unix:///PATH"
        ),
    )
}

impl RedisStoreBuilder {
    pub(super) fn new(target: Target) -> RedisStoreBuilder {
        RedisStoreBuilder {
            target,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            probe_every: DEFAULT_PROBE_EVERY,
            on_store_error: OnStoreError::default(),
        }
    }

    /// Keys are `PREFIX{NAME}:I` (I the limit's index). Default
    /// [`DEFAULT_PREFIX`]; processes share buckets when they share the
    /// server and the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call waits for Redis (connecting included) before it
    /// counts as failed; default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often a failed bucket asks Redis again; default
    /// [`DEFAULT_PROBE_EVERY`].
    pub fn probe_every(mut self, every: Duration) -> Self {
        self.probe_every = every;
        self
    }

    /// What buckets do while Redis fails, unless given their own in
    /// [`RedisStore::bucket_with`]; default [`OnStoreError::FailClosed`].
    pub fn on_store_error(mut self, on_store_error: OnStoreError) -> Self {
        self.on_store_error = on_store_error;
        self
    }

    fn build(self) -> Result<Connection, Error> {
        check_name("prefix", &self.prefix)?;
        let on_store_error = self.on_store_error.validate()?;
        if self.timeout.is_zero() {
            return Err(Error::config(
                "redis timeout",
                "a zero timeout fails every call; give the longest wait for Redis, e.g. 250ms",
            ));
        }
        let url = self.target.redacted();
        let link = match &self.target {
            Target::Node(node) => self.node(node, &url)?,
            Target::Cluster(nodes) => self.cluster(nodes, &url)?,
        };
        Ok(Connection {
            link,
            url,
            script: Script::new(script::SOURCE),
            prefix: self.prefix,
            timeout: self.timeout,
            probe_every: self.probe_every,
            on_store_error,
        })
    }

    /// The connection to one node.
    fn node(&self, node: &str, url: &str) -> Result<Link, Error> {
        let client = Client::open(node).map_err(|e| not_a_url(url, &e))?;
        // Reconnect quickly and keep trying: a bucket on its fallback asks
        // again every `probe_every`, and each try is bounded by `timeout`.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(self.probe_every.min(Duration::from_millis(500)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| redis_error(url, &e))?;
        Ok(Link::Node(conn))
    }

    /// The connection to a cluster, made in the background: the client
    /// reads the slot map from the first node that answers, and reads it
    /// again when a node says `MOVED` or stops answering.
    fn cluster(&self, nodes: &[String], url: &str) -> Result<Link, Error> {
        if nodes.is_empty() {
            return Err(Error::config(
                "redis cluster",
                "no node given; give the URL of one or more of its masters, \
                 e.g. redis://10.0.0.1:6379/",
            ));
        }
        for node in nodes {
            // The cluster client reads them alike; this names the bad one.
            Client::open(node.as_str()).map_err(|e| not_a_url(&redacted(node), &e))?;
        }
        // Retries are short and few: every call is bounded by `timeout`
        // anyway, and a bucket on its fallback asks again by itself.
        let max_wait = self.probe_every.min(Duration::from_millis(500));
        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(u64::try_from(max_wait.as_millis()).unwrap_or(500))
            .build()
            .map_err(|e| {
                Error::config(
                    format!("redis cluster `{url}`"),
                    format!(
                        "the cluster client refused these nodes ({e}); give the URLs of \
                         its nodes, all alike (same scheme, user and password, database 0)"
                    ),
                )
            })?;
        let config = ClusterConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        Ok(Link::Cluster(
            client.get_pending_async_connection_with_config(config),
        ))
    }

    /// Connects, checks that Redis answers, and loads the script; fails
    /// with [`ErrorKind::Store`](crate::ErrorKind::Store) when Redis cannot be reached within the
    /// timeout. On a cluster the script goes to every master that answers,
    /// and one is enough: a master that was down loads it on its first call.
    /// Must run inside a tokio runtime.
    pub async fn connect(self) -> Result<RedisStore, Error> {
        let inner = self.build()?;
        let load = async {
            match &inner.link {
                Link::Node(conn) => inner.script.load_async(&mut conn.clone()).await.map(drop),
                Link::Cluster(conn) => {
                    let mut load = ::redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(script::SOURCE);
                    let masters = RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::OneSucceeded),
                    ));
                    conn.clone().route_command(load, masters).await.map(drop)
                }
            }
        };
        match tokio::time::timeout(inner.timeout, load).await {
            Ok(Ok(())) => Ok(RedisStore::new(Arc::new(inner))),
            Ok(Err(e)) => Err(redis_error(&inner.url, &e)),
            Err(_) => Err(inner.timed_out()),
        }
    }

    /// Sets the store up without contacting Redis: the first call connects
    /// (and loads the script), and until Redis answers buckets follow their
    /// [`OnStoreError`]. For processes that must start while Redis is down.
    /// Must run inside a tokio runtime.
    pub fn connect_lazy(self) -> Result<RedisStore, Error> {
        Ok(RedisStore::new(Arc::new(self.build()?)))
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &self.target.redacted())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("probe_every", &self.probe_every)
            .field("on_store_error", &self.on_store_error)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://…@10.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1/"), "redis://127.0.0.1/");
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?db=1&user=app&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&user=app&pass=…"
        );
        assert_eq!(
            redacted("redis://h/?password=secret"),
            "redis://h/?password=…"
        );
        let b = RedisStore::builder("redis://:hunter2@127.0.0.1/");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
