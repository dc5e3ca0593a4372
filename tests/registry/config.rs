//! Registries from TOML: the example file, a round trip, and bad files with
//! messages that name the line and the key.
#![cfg(feature = "serde")]

use tollgate::{registry::Scope, ErrorKind, OnLimit, Policy, Registry, RegistryBuilder, Target};

const EXAMPLE: &str = include_str!("../../examples/tollgate.toml");

#[test]
fn the_example_file_builds_and_routes() {
    let b = RegistryBuilder::from_toml(EXAMPLE).unwrap();
    let sources = b.source_list();
    assert_eq!(sources.len(), 5);
    assert_eq!(sources[1].name(), "discogs");
    assert_eq!(
        sources[1].limits()[0].max_in_window(std::time::Duration::from_secs(60)),
        25.0
    );
    assert_eq!(
        sources[4].limits(),
        ["2/s burst 2".parse::<Policy>().unwrap()]
    );
    let r = b.build().unwrap();
    for (uri, want) in [
        (
            "https://musicbrainz.org/ws/2/recording",
            Some("musicbrainz"),
        ),
        ("https://api.jikan.moe/v4/anime/1", Some("jikan")),
        ("https://api.jikan.moe/v3/anime/1", None),
        ("https://a.example.org/", Some("crawler")),
        ("https://elsewhere.test/", None),
    ] {
        let uri: http::Uri = uri.parse().unwrap();
        assert_eq!(
            r.source_for(&Target::from_uri(&uri)).unwrap(),
            want,
            "{uri}"
        );
    }
}

#[test]
fn round_trip() {
    let b = RegistryBuilder::from_toml(EXAMPLE).unwrap();
    let text = b.to_toml();
    let again = RegistryBuilder::from_toml(&text).unwrap();
    assert_eq!(b.source_list(), again.source_list(), "{text}");
    assert_eq!(again.to_toml(), text);
    let crawler = &again.source_list()[4];
    assert!(matches!(crawler.on_limit_mode(), OnLimit::Reject));
    assert_eq!(crawler.scope_mode(), Scope::PerHost);
    assert_eq!(
        again.source_list()[2].on_limit_mode(),
        OnLimit::Wait {
            max_wait: Some(std::time::Duration::from_secs(30))
        }
    );
}

#[test]
fn bad_files_name_the_line_and_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[source]]\nname = \"a\"\nlimits = [\"0/s\"]\n",
            "line 3, key `limits`",
            "above zero",
        ),
        (
            "[[source]]\nname = \"a\"\nlimits = [\"5/fortnight\"]\n",
            "line 3, key `limits`",
            "unknown unit",
        ),
        (
            "[[source]]\nname = \"a\"\nhosts = [\"a.*.com\"]\n",
            "line 3, key `hosts`",
            "first label",
        ),
        (
            "[[source]]\nname = \"a\"\nhosts = [\"x.com\"]\npath = \"/a?b\"\n",
            "line 4, key `path`",
            "plain path",
        ),
        (
            "[[source]]\nname = \"a\"\nscope = \"global\"\n",
            "line 3, key `scope`",
            "per-host",
        ),
        (
            "[[source]]\nname = \"a\"\nmax_in_flight = 0\n",
            "line 3, key `max_in_flight`",
            "at least 1",
        ),
        (
            "[[source]]\nname = \"a\"\nmax_in_flight = -2\n",
            "line 3, key `max_in_flight`",
            "invalid value",
        ),
        (
            "[[source]]\nname = \"a\"\non_limit = \"panic\"\n",
            "line 3, key `on_limit`",
            "\"wait\" or \"reject\"",
        ),
        (
            "[[source]]\nname = \"a\"\nmax_wait = \"soon\"\n",
            "line 3, key `max_wait`",
            "not a duration",
        ),
        (
            "[[source]]\nname = \"a\"\non_limit = \"reject\"\nmax_wait = \"1s\"\n",
            "line 3, key `on_limit`",
            "goes with",
        ),
        (
            "[[source]]\nname = \"a\"\n\n[[source]]\nname = \"a\"\n",
            "line 5, key `name`",
            "already defined on line 2",
        ),
        (
            "[[source]]\npreset = \"spotify\"\n",
            "line 2, key `preset`",
            "unknown preset",
        ),
        (
            "[[source]]\nlimits = [\"1/s\"]\n",
            "source #1",
            "give the source a `name`",
        ),
        (
            "[[source]]\nname = \"a\"\nlimts = [\"1/s\"]\n",
            "line 3, key `limts`",
            "unknown field",
        ),
        (
            "unknown_hosts = \"ignore\"\n",
            "line 1, key `unknown_hosts`",
            "pass-through",
        ),
        (
            "unknown_hosts = { default = \"b\" }\n[[source]]\nname = \"a\"\n",
            "line 1, key `unknown_hosts`",
            "`b` is not defined",
        ),
        ("max_hosts = 0\n", "line 1, key `max_hosts`", "at least one"),
        (
            "[[source]\nname = \"a\"\n",
            "line 1",
            "unclosed array table",
        ),
        (
            "[[source]]\nname = \"a\"\nlimits = \"1/s\"\n",
            "line 3, key `limits`",
            "invalid type",
        ),
    ];
    for (text, location, reason) in cases {
        let err = Registry::from_toml(text).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{text:?}: {err:?}");
        let (l, r) = (err.location().unwrap(), err.reason().unwrap());
        assert_eq!(l, *location, "{text:?}: {err}");
        assert!(r.contains(reason), "{text:?}: `{r}` lacks `{reason}`");
    }
}
