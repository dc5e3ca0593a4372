//! The error's unit tests: its size, its traits, its messages, and what
//! its kinds, accessors and causes say.

use super::*;

#[test]
fn errors_are_send_sync_static() {
    fn assert<T: Send + Sync + 'static + StdError + Clone>() {}
    assert::<Error>();
    assert::<RateLimited>();
}

#[test]
fn an_error_is_four_words_and_a_refusal_allocates_nothing() {
    assert!(size_of::<Error>() <= 4 * size_of::<usize>());
    assert!(size_of::<Result<(), Error>>() <= 4 * size_of::<usize>());
    // Inline: the refusal's own value, no box.
    let e = Error::from(RateLimited::new(std::time::Duration::from_secs(1)));
    assert!(matches!(e.inner, Kept::Limited(_)));
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(1)));
}

#[test]
fn messages_say_what_to_change() {
    let e = Error::insufficient_capacity(5.0, 3.0);
    assert!(e.to_string().contains("at most 3"), "{e}");
    let e = Error::unknown_source("x", vec!["a".into(), "b".into()]);
    assert_eq!(
        e.to_string(),
        "no source named `x`; registered sources: [a, b]"
    );
    let e = Error::unknown_host("");
    assert!(e.to_string().contains("send an absolute URI"), "{e}");
    let e = Error::in_flight_full("api", 2);
    assert!(e.to_string().contains("raise max_in_flight"), "{e}");
    let e = Error::async_only("api");
    assert!(e.to_string().contains("Source::in_process"), "{e}");
}

#[test]
fn kinds_predicates_and_accessors_agree() {
    let r = Error::from(RateLimited::from_nanos(7).with_source("api".into()));
    assert_eq!(r.kind(), ErrorKind::RateLimited);
    assert!(r.is_rate_limited() && !r.is_store() && !r.is_config());
    assert_eq!(r.retry_after(), Some(Duration::from_nanos(7)));
    assert_eq!(r.source_name(), Some("api"));
    assert_eq!(r.to_string(), r.as_rate_limited().unwrap().to_string());

    let full = Error::in_flight_full("api", 3);
    assert!(full.is_in_flight_full() && full.retry_after().is_none());
    assert_eq!(
        (full.source_name(), full.in_flight_cap()),
        (Some("api"), Some(3))
    );

    let host = Error::unknown_host("x.test");
    assert!(host.is_unknown_host());
    assert_eq!(host.host(), Some("x.test"));

    for e in [
        Error::policy("1/x", "no"),
        Error::config("here", "no"),
        Error::unknown_source("x", vec![]),
    ] {
        assert!(e.is_config(), "{e:?}");
    }
    let moved = Error::config("rule", "no").relocate(|at| format!("{at} in source `s`"));
    assert_eq!(moved.location(), Some("rule in source `s`"));
    assert_eq!(moved.reason(), Some("no"));

    assert!(Error::invalid_tokens(0.0).is_invalid_tokens());
    assert!(Error::insufficient_capacity(2.0, 1.0).is_invalid_tokens());
    assert_eq!(Error::async_only("s").kind(), ErrorKind::AsyncOnly);
}

#[test]
fn a_cause_is_the_source_and_not_in_the_message() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    let e = Error::store("cannot connect").with_cause(Arc::new(io));
    assert!(e.is_store());
    assert_eq!(e.to_string(), "rate-limit store failed: cannot connect");
    let source = e.source().expect("the cause");
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    // A clone shares it.
    assert!(e.clone().source().is_some());
    assert!(format!("{e:?}").contains("refused"));
    // A refusal has none: its message is all there is.
    assert!(Error::from(RateLimited::from_nanos(1)).source().is_none());
}
