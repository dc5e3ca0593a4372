//! 20 requests through a 5/s bucket, printing when each was admitted.
//!
//! `cargo run --example pace`

use std::time::{Duration, Instant};

use tollgate::{Policy, TokenBucket};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tollgate::Error> {
    let policy: Policy = "5/s".parse()?;
    let bucket = TokenBucket::new(policy);
    let start = Instant::now();
    println!(
        "policy {policy}: one request every {:?}",
        Duration::from_nanos(policy.interval_nanos())
    );
    for i in 1..=20 {
        bucket.acquire(1.0).await?;
        println!(
            "request {i:>2} admitted at {:>7.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "20 requests in {took:.3} s: {:.2} per second after the first",
        19.0 / took
    );
    Ok(())
}
