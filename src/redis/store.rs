//! [`RedisStore`]: the handle users hold, and the buckets it hands out
//! (its settings, and the connection it opens, are `builder.rs`'s).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ::redis::cluster_routing::Slot;
use ::redis::RedisError;

use super::connection::{redis_error, Connection, Link};
use super::fallback::{Health, OnStoreError};
use super::RedisBucket;
use crate::clock::Timestamp;
use crate::sync::Mutex;
use crate::{Error, Policy};

pub(super) fn check_name(what: &str, s: &str) -> Result<(), Error> {
    if s.contains(['{', '}']) {
        return Err(Error::config(
            format!("redis {what} `{s}`"),
            "must not contain `{` or `}`: the store puts each source's name in braces \
             (a hash tag) so that its keys share one cluster slot",
        ));
    }
    Ok(())
}

/// Buckets whose state lives in Redis, shared by every process that uses
/// the same server and key prefix.
///
/// Cheap to clone (an `Arc` inside); all clones share one multiplexed
/// connection, which reconnects by itself after Redis restarts. See the
/// [module docs](super) for what is stored and how time is read.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate::redis::{OnStoreError, RedisStore};
/// use tollgate::Policy;
///
/// # async fn run() -> Result<(), tollgate::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1/")
///     .prefix("myapp:limits:")
///     .timeout(Duration::from_millis(100))
///     .on_store_error(OnStoreError::Local { divide_by: 4 })
///     .connect()
///     .await?;
/// let jikan = store.bucket("jikan", &["3/s".parse()?, "60/min".parse()?])?;
/// jikan.acquire(1.0).await?; // waits for the slot all processes agree on
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Connection>,
}

impl RedisStore {
    pub(super) fn new(inner: Arc<Connection>) -> RedisStore {
        RedisStore { inner }
    }

    /// Connects to `url` with keys under `prefix` and the default settings.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, Error> {
        Self::builder(url).prefix(prefix).connect().await
    }

    /// The bucket named `name` with `policies` (all apply at once; none
    /// means unlimited), failing as the store's
    /// [`on_store_error`](super::RedisStoreBuilder::on_store_error) says.
    ///
    /// Processes that name the same bucket share it. Each process sends its
    /// own policies with every call: when they differ from those the stored
    /// state was computed under, Redis rescales it keeping its level (as
    /// [`RedisBucket::set_policies`] does), so a policy change reaches every
    /// process that makes it.
    pub fn bucket(&self, name: &str, policies: &[Policy]) -> Result<RedisBucket, Error> {
        self.bucket_with(name, policies, self.inner.on_store_error)
    }

    /// [`bucket`](Self::bucket) with its own [`OnStoreError`].
    pub fn bucket_with(
        &self,
        name: &str,
        policies: &[Policy],
        on_store_error: OnStoreError,
    ) -> Result<RedisBucket, Error> {
        if name.is_empty() {
            return Err(Error::config(
                "redis bucket",
                "the name is empty; name the source",
            ));
        }
        check_name("bucket name", name)?;
        Ok(RedisBucket::new(
            self.inner.clone(),
            name,
            policies,
            on_store_error.validate()?,
            Arc::new(Health::new()),
        ))
    }

    /// Checks what a registry source that keeps its limits here names and
    /// does when Redis fails.
    pub(crate) fn check_source(
        source: &str,
        on_store_error: OnStoreError,
    ) -> Result<OnStoreError, Error> {
        check_name("source name", source)?;
        on_store_error.validate()
    }

    /// What buckets do while Redis fails unless told otherwise.
    pub(crate) fn default_on_store_error(&self) -> OnStoreError {
        self.inner.on_store_error
    }

    /// Whether two handles share one store (one connection and settings).
    pub(crate) fn same(&self, other: &RedisStore) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Redis's clock (`TIME`), in nanoseconds since the Unix epoch: the
    /// clock every slot and admission of this store is on. On a cluster
    /// each node has its own clock, and this reads one of them; the slots
    /// of a bucket are on its master's, which
    /// [`time_of`](Self::time_of) reads.
    pub async fn time(&self) -> Result<Timestamp, Error> {
        self.read_time(None).await
    }

    /// Redis's clock on the node that holds the keys of bucket `name`:
    /// the clock its slots and admissions are on. On a single node, the
    /// same as [`time`](Self::time).
    pub async fn time_of(&self, name: &str) -> Result<Timestamp, Error> {
        self.read_time(Some(&self.inner.keys(name, 1)[0])).await
    }

    async fn read_time(&self, key: Option<&str>) -> Result<Timestamp, Error> {
        let cmd = ::redis::cmd("TIME");
        let link = &self.inner.link;
        let query = async {
            let reply = match key {
                Some(key) => link.query_at(key, cmd).await?,
                None => link.query(&cmd).await?,
            };
            Ok::<_, RedisError>(::redis::from_redis_value::<(u64, u64)>(reply)?)
        };
        match tokio::time::timeout(self.inner.timeout, query).await {
            Ok(Ok((s, us))) => Ok(Timestamp::from_nanos(s * 1_000_000_000 + us * 1_000)),
            Ok(Err(e)) => Err(redis_error(&self.inner.url, &e)),
            Err(_) => Err(self.inner.timed_out()),
        }
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.link, Link::Cluster(_))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The SHA1 of the script, as `EVALSHA` names it.
    pub fn script_sha(&self) -> &str {
        self.inner.script.get_hash()
    }
}

/// A registry source's store: the store, what the source does while Redis
/// fails, and the health of its bucket sets. On one node the sets share one
/// health state, so they fail over and come back together (a host's new
/// set does not wait out a timeout of its own during an outage). On a
/// cluster the sets of one slot share one, since they live on one master,
/// and the loss of a master fails only the sets in its slots.
#[derive(Clone)]
pub(crate) struct SourceStore {
    store: RedisStore,
    on_store_error: OnStoreError,
    health: Healths,
}

#[derive(Clone)]
enum Healths {
    One(Arc<Health>),
    /// At most one per slot (16384), made when a set first lands there.
    PerSlot(Arc<Mutex<HashMap<Slot, Arc<Health>>>>),
}

impl SourceStore {
    /// `on_store_error` already checked ([`RedisStore::check_source`]).
    pub(crate) fn new(store: RedisStore, on_store_error: OnStoreError) -> SourceStore {
        let health = if store.is_cluster() {
            Healths::PerSlot(Arc::default())
        } else {
            Healths::One(Arc::new(Health::new()))
        };
        SourceStore {
            store,
            on_store_error,
            health,
        }
    }

    /// The health of the bucket set `name`.
    fn health(&self, name: &str) -> Arc<Health> {
        match &self.health {
            Healths::One(health) => health.clone(),
            Healths::PerSlot(slots) => {
                let slot = Slot::for_key(&self.store.inner.keys(name, 1)[0]);
                let mut slots = slots.lock();
                slots
                    .entry(slot)
                    .or_insert_with(|| Arc::new(Health::new()))
                    .clone()
            }
        }
    }

    /// The bucket of one of the source's sets: `source` for a source-wide
    /// set, `source/KEY` for the set of one host or client key (`KEY` with
    /// `%`, `{` and `}` percent-encoded, so any key makes a valid hash
    /// tag). The source name was checked when the registry was built.
    pub(crate) fn bucket(
        &self,
        source: &str,
        key: Option<&str>,
        policies: &[Policy],
    ) -> RedisBucket {
        let name = match key {
            None => source.to_string(),
            Some(key) => {
                let mut name = String::with_capacity(source.len() + 1 + key.len());
                name.push_str(source);
                name.push('/');
                for c in key.chars() {
                    match c {
                        '%' => name.push_str("%25"),
                        '{' => name.push_str("%7B"),
                        '}' => name.push_str("%7D"),
                        c => name.push(c),
                    }
                }
                name
            }
        };
        RedisBucket::new(
            self.store.inner.clone(),
            &name,
            policies,
            self.on_store_error,
            self.health(&name),
        )
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("probe_every", &self.inner.probe_every)
            .field("on_store_error", &self.inner.on_store_error)
            .finish_non_exhaustive()
    }
}
