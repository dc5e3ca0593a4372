//! Regression: a source with several limits on a running clock spun forever,
//! because each limit read the clock again and never matched the slot
//! computed a moment before. Only a clock that moves between two reads
//! showed it; the manual clock in the other tests does not.

use std::sync::mpsc;
use std::time::Duration;

use tollgate::{Policy, Registry, Source};

#[test]
fn several_limits_on_the_default_clock_admit_without_spinning() {
    let (done, finished) = mpsc::channel();
    // The work runs on its own thread: a spin holds no await point, so only
    // a watchdog outside it can notice.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let registry = Registry::builder()
                .source(
                    Source::new("two")
                        .limit(Policy::new(1000.0, 1e6).unwrap())
                        .limit(Policy::new(1000.0, 1e6).unwrap()),
                )
                .build()
                .unwrap();
            let src = registry.source("two").unwrap();
            for _ in 0..1000 {
                let _permit = src.acquire(1.0).await.unwrap();
                let _ = src.try_acquire(1.0);
            }
        });
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("multi-limit admission spun instead of finishing");
}
