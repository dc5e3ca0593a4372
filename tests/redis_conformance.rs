//! The bucket contract (`tests/common/conformance.rs`) on the Redis store:
//! the same cases as `tests/conformance_local.rs`, the same answers, on
//! Redis's clock. Needs a server: `REDIS_URL`, or `redis-server` on the PATH
//! (see `tests/common/redis.rs`).
#![cfg(feature = "redis")]

#[path = "common/conformance.rs"]
mod conformance;
#[path = "common/redis_buckets.rs"]
mod redis_buckets;
#[path = "common/redis.rs"]
mod redis_env;

use redis_buckets::Redis;

conformance_suite!(#[tokio::test] => Redis::connect(module_path!()).await);
