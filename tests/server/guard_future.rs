//! The guard's future over a mock inner service that is not always ready:
//! a request admitted without a permit (a tier that answers at once, no
//! success headers) waits for the inner service's readiness and then for
//! its response, and a refusal never reaches the inner service.

#![cfg(feature = "server")]

use http::{Request, Response, StatusCode};
use tollgate::server::{tier, GuardLayer, HeaderKey, SuccessHeaders};
use tollgate::{Registry, TokioClock};
use tower_test::mock;

fn keyed(key: &str) -> Request<String> {
    Request::get("/")
        .header("x-api-key", key)
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_admission_without_a_permit_is_polled_through_a_slow_inner_service() {
    let registry = Registry::builder()
        .source(tier("free").limit("2/min burst 2".parse().unwrap()))
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key").unwrap())
        .default_tier("free")
        .success_headers(SuccessHeaders::None)
        .build()
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(guard);

    for n in 0..2 {
        // The guard is ready when the inner service is, not before.
        handle.allow(0);
        assert!(svc.poll_ready().is_pending(), "request {n}");
        handle.allow(1);
        tokio_test::assert_ready_ok!(svc.poll_ready());
        let mut call = tokio_test::task::spawn(svc.call(keyed("k")));
        // Admitted: the inner service has it, and its answer is not there yet.
        assert!(call.poll().is_pending(), "request {n}");
        let (req, reply) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()["x-api-key"], "k");
        assert!(call.poll().is_pending(), "request {n}");
        reply.send_response(Response::new(format!("answer {n}")));
        let response = tokio_test::assert_ready_ok!(call.poll());
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
        assert_eq!(response.into_body(), format!("answer {n}"));
    }

    // The burst is spent: a 429 from the guard, and nothing for the inner
    // service.
    handle.allow(1);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let refused = svc.call(keyed("k")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("retry-after").is_some());
    assert!(
        handle.poll_request().is_pending(),
        "the refusal reached the inner service"
    );
}
