//! Which source a request routes to: wildcards, ports, IPv6, punycode, case,
//! trailing dots, path boundaries, most-specific-wins, and the three
//! unknown-host modes.

use tollgate::{Error, ErrorKind, Policy, Registry, Source, Target, UnknownHost};

fn registry(unknown: UnknownHost) -> Registry {
    let s = |name: &str| Source::new(name).limit(Policy::per_second(1.0).unwrap());
    Registry::builder()
        .source(s("mb").host("musicbrainz.org"))
        .source(s("mb-any").host("*.musicbrainz.org"))
        .source(s("ex-wild").host("*.example.com"))
        .source(s("ex-deep").host("*.api.example.com"))
        .source(s("ex-exact").host("www.example.com"))
        .source(s("ex-8080").host("www.example.com:8080"))
        .source(s("gh").host("api.github.com"))
        .source(s("gh-search").host("api.github.com").path("/search"))
        .source(s("gh-code").host("api.github.com").path("/search/code/"))
        .source(s("v6-3000").host("[::1]:3000"))
        .source(s("v6").host("[::1]"))
        .source(s("puny").host("XN--BCHER-KVA.example."))
        .source(s("local").host("localhost").host("127.0.0.1"))
        .source(s("tls").host("secure.test:443"))
        .source(s("everything-else-on-9999").host("*:9999"))
        .unknown_hosts(unknown)
        .build()
        .unwrap()
}

fn route(r: &Registry, uri: &str, host_header: Option<&str>) -> Result<Option<String>, Error> {
    let mut req = http::Request::builder().uri(uri);
    if let Some(h) = host_header {
        req = req.header(http::header::HOST, h);
    }
    let req = req.body(()).unwrap();
    r.source_for(&Target::from_request(&req))
        .map(|s| s.map(str::to_string))
}

#[test]
fn routing_table() {
    let r = registry(UnknownHost::PassThrough);
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("https://musicbrainz.org/ws/2/artist", None, Some("mb")),
        ("https://MusicBrainz.ORG/ws/2", None, Some("mb")),
        ("https://musicbrainz.org./ws/2", None, Some("mb")),
        ("https://beta.musicbrainz.org/", None, Some("mb-any")),
        ("https://a.b.musicbrainz.org/", None, Some("mb-any")),
        ("https://musicbrainz.org.evil.test/", None, None),
        ("https://notmusicbrainz.org/", None, None),
        ("https://www.example.com/", None, Some("ex-exact")),
        ("http://www.example.com:8080/", None, Some("ex-8080")),
        ("https://www.example.com:8080/x", None, Some("ex-8080")),
        ("https://www.example.com:9090/", None, Some("ex-exact")),
        ("https://foo.example.com/", None, Some("ex-wild")),
        ("https://v1.api.example.com/", None, Some("ex-deep")),
        ("https://api.example.com/", None, Some("ex-wild")),
        ("https://example.com/", None, None),
        ("https://api.github.com/repos/a/b", None, Some("gh")),
        ("https://api.github.com/", None, Some("gh")),
        ("https://api.github.com/search", None, Some("gh-search")),
        ("https://api.github.com/search/", None, Some("gh-search")),
        ("https://api.github.com/search?q=x", None, Some("gh-search")),
        ("https://api.github.com/searchx", None, Some("gh")),
        (
            "https://api.github.com/search/code?q=x",
            None,
            Some("gh-code"),
        ),
        (
            "https://api.github.com/search/codes",
            None,
            Some("gh-search"),
        ),
        (
            "https://API.GITHUB.COM/search/issues",
            None,
            Some("gh-search"),
        ),
        ("http://[::1]:3000/", None, Some("v6-3000")),
        ("http://[::1]:4000/", None, Some("v6")),
        ("http://[::1]/", None, Some("v6")),
        ("https://xn--bcher-kva.example/", None, Some("puny")),
        ("https://XN--BCHER-KVA.EXAMPLE./", None, Some("puny")),
        ("http://localhost:1234/", None, Some("local")),
        ("http://127.0.0.1:8080/", None, Some("local")),
        ("https://secure.test/", None, Some("tls")),
        ("https://secure.test:443/", None, Some("tls")),
        ("http://secure.test/", None, None),
        (
            "http://anything.test:9999/",
            None,
            Some("everything-else-on-9999"),
        ),
        ("http://www.example.com:9999/", None, Some("ex-exact")),
        // No authority in the URI: the Host header decides.
        ("/search/issues", Some("api.github.com"), Some("gh-search")),
        ("/", Some("www.example.com:8080"), Some("ex-8080")),
        ("/", Some("[::1]:3000"), Some("v6-3000")),
        ("/", Some("MUSICBRAINZ.org."), Some("mb")),
        ("/", None, None),
    ];
    assert!(cases.len() >= 40);
    for (uri, host, want) in cases {
        let got = route(&r, uri, *host).unwrap();
        assert_eq!(got.as_deref(), *want, "{uri} (Host: {host:?})");
    }
}

#[test]
fn unknown_host_modes() {
    let default = registry(UnknownHost::Default("local".into()));
    assert_eq!(
        route(&default, "https://nowhere.test/", None)
            .unwrap()
            .as_deref(),
        Some("local")
    );
    assert_eq!(
        route(&default, "/", None).unwrap().as_deref(),
        Some("local")
    );
    assert_eq!(
        route(&default, "https://musicbrainz.org/", None)
            .unwrap()
            .as_deref(),
        Some("mb")
    );

    let reject = registry(UnknownHost::Reject);
    match route(&reject, "https://Nowhere.test./", None) {
        Err(e) if e.is_unknown_host() => assert_eq!(e.host(), Some("nowhere.test")),
        other => panic!("{other:?}"),
    }
    match route(&reject, "/", None) {
        Err(e) if e.is_unknown_host() => {
            assert!(e.to_string().contains("names no host"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        route(&reject, "https://www.example.com/", None)
            .unwrap()
            .as_deref(),
        Some("ex-exact")
    );
}

#[test]
fn bad_rules_and_names_are_refused_at_build() {
    let p = Policy::per_second(1.0).unwrap();
    let cases: Vec<(Result<Registry, Error>, &str)> = vec![
        (
            Registry::builder()
                .source(Source::new("a").host("a.*.com"))
                .build(),
            "first label",
        ),
        (
            Registry::builder()
                .source(Source::new("a").host(""))
                .build(),
            "empty",
        ),
        (
            Registry::builder()
                .source(Source::new("a").host("a.com:x"))
                .build(),
            "port",
        ),
        (
            Registry::builder()
                .source(Source::new("a").host("https://a.com/x"))
                .build(),
            "no scheme or path",
        ),
        (
            Registry::builder()
                .source(Source::new("a").host("ä.com"))
                .build(),
            "punycode",
        ),
        (
            Registry::builder()
                .source(Source::new("a").host("a.com").path("/x?y"))
                .build(),
            "plain path",
        ),
        (
            Registry::builder()
                .source(Source::new("a").path("/x"))
                .build(),
            "needs a host",
        ),
        (
            Registry::builder()
                .source(Source::new("a").limit(p))
                .source(Source::new("a"))
                .build(),
            "used twice",
        ),
        (
            Registry::builder().source(Source::new(" ")).build(),
            "name is empty",
        ),
        (
            Registry::builder()
                .source(Source::new("a").limit(p).host("x.com"))
                .source(Source::new("b").limit(p).host("X.com."))
                .build(),
            "already routed",
        ),
        (
            Registry::builder()
                .source(Source::new("a").max_in_flight(0))
                .build(),
            "at least 1",
        ),
        (
            Registry::builder()
                .unknown_hosts(UnknownHost::Default("zz".into()))
                .source(Source::new("a").limit(p))
                .build(),
            "`zz` is not registered; registered: [a]",
        ),
        (
            Registry::builder().max_hosts(0).build(),
            "at least one host",
        ),
    ];
    for (result, hint) in cases {
        let e = result.map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e:?}");
        assert!(e.to_string().contains(hint), "`{e}` lacks `{hint}`");
    }
}
