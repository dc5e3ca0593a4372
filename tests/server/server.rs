//! The server guard end to end: an axum app on 127.0.0.1 guarded by
//! `GuardLayer`, called by a plain reqwest client. Real time; the limits
//! are slow (per minute) so that no token refills during a test, and every
//! time in a header is checked against what the elapsed time allows.
#![cfg(feature = "server")]

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tollgate::server::{
    tier, ClientIp, GuardLayer, HeaderKey, KeyExtractor, MissingKey, SuccessHeaders, QUOTA_EXCEEDED,
};
use tollgate::{Policy, Registry};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, make).await });
    addr
}

fn app<K: KeyExtractor>(guard: GuardLayer<K>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(guard)
        .route("/health", get(|| async { "up" }))
}

fn tiers() -> Registry {
    Registry::builder()
        .source(tier("free").limit("5/min burst 5".parse().unwrap()))
        .source(tier("enterprise").limit("20/h burst 20".parse().unwrap()))
        .build()
        .unwrap()
}

fn api_key_guard(registry: Registry) -> GuardLayer<HeaderKey> {
    GuardLayer::builder(registry, HeaderKey::new("x-api-key").unwrap())
        .default_tier("free")
        .key_tier("ent-1", "enterprise")
        .tier_by(["enterprise"], |key| {
            key.starts_with("ent-").then_some("enterprise")
        })
        .missing_key(MissingKey::Refuse(StatusCode::UNAUTHORIZED))
        .success_headers(SuccessHeaders::RateLimitAndPolicy)
        .build()
        .unwrap()
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    Reply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

async fn statuses(addr: SocketAddr, n: usize, headers: &[(&str, &str)]) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_with(addr, "/", headers).await.status);
    }
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn tiers_give_each_key_its_tiers_quota() {
    let addr = serve(app(api_key_guard(tiers()))).await;
    let free = statuses(addr, 8, &[("x-api-key", "free-1")]).await;
    assert_eq!(free, [200, 200, 200, 200, 200, 429, 429, 429]);
    // By the map, and by the function.
    for key in ["ent-1", "ent-by-prefix"] {
        let ent = statuses(addr, 22, &[("x-api-key", key)]).await;
        assert_eq!((count(&ent, 200), count(&ent, 429)), (20, 2), "{key}");
    }
    // Health is outside the guard.
    assert_eq!(count(&statuses_path(addr, "/health", 30).await, 200), 30);
    // No key: refused as configured, never limited or served.
    let none = get_with(addr, "/", &[]).await;
    assert_eq!(none.status, 401);
    assert!(none.body.contains("x-api-key"), "{}", none.body);
}

async fn statuses_path(addr: SocketAddr, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_with(addr, path, &[]).await.status);
    }
    out
}

#[tokio::test]
async fn one_keys_exhaustion_never_affects_another() {
    let registry = tiers();
    let addr = serve(app(api_key_guard(registry.clone()))).await;
    let a = statuses(addr, 30, &[("x-api-key", "alice")]).await;
    assert_eq!((count(&a, 200), count(&a, 429)), (5, 25));
    // Keys differing only in case are two keys.
    for key in ["bob", "ALICE", "Alice"] {
        let s = statuses(addr, 5, &[("x-api-key", key)]).await;
        assert_eq!(count(&s, 200), 5, "{key}");
    }
    assert_eq!(statuses(addr, 1, &[("x-api-key", "alice")]).await, [429]);
    assert_eq!(registry.host_count("free").unwrap(), 4);
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn headers_carry_the_exact_quota() {
    let addr = serve(app(api_key_guard(tiers()))).await;
    let start = Instant::now();
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(get_with(addr, "/", &[("x-api-key", "k")]).await);
    }
    // Every time is "12 s a token, less what refilled since the first
    // request", rounded up: exact unless the test itself took seconds.
    let slack = start.elapsed().as_secs();
    let near = |got: &str, want: u64| {
        let got: u64 = got.parse().unwrap();
        assert!(
            got <= want && got + slack >= want,
            "{got} s, expected {want} s (slack {slack})"
        );
    };
    // 5/min burst 5: a token every 12 s. Full again after r tokens are back.
    for (i, r) in replies[..5].iter().enumerate() {
        assert_eq!(r.status, 200);
        assert_eq!(header(r, "ratelimit-policy"), r#""free";q=5;w=60"#);
        let left = 4 - i as u64;
        let field = header(r, "ratelimit");
        let prefix = format!(r#""free";r={left};t="#);
        assert!(field.starts_with(&prefix), "{field}");
        // Full again in (5 - left) tokens; with none left, the next in one.
        let want = if left > 0 { 12 * (5 - left) } else { 12 };
        near(&field[prefix.len()..], want);
    }
    let refused = &replies[5];
    assert_eq!(refused.status, 429);
    let retry = header(refused, "retry-after");
    near(retry, 12);
    assert_eq!(
        header(refused, "ratelimit"),
        format!(r#""free";r=0;t={retry}"#)
    );
    assert_eq!(header(refused, "ratelimit-policy"), r#""free";q=5;w=60"#);
    assert_eq!(header(refused, "content-type"), "application/problem+json");
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["type"], QUOTA_EXCEEDED);
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"][0], "free");
    assert!(body["title"].as_str().unwrap().contains("quota"));
    assert!(body["detail"].as_str().unwrap().contains("5/min burst 5"));
}

#[tokio::test]
async fn success_headers_are_optional() {
    let guard = GuardLayer::builder(tiers(), HeaderKey::new("x-api-key").unwrap())
        .default_tier("free")
        .success_headers(SuccessHeaders::None)
        .build()
        .unwrap();
    let addr = serve(app(guard)).await;
    let ok = get_with(addr, "/", &[("x-api-key", "k")]).await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.get("ratelimit").is_none());
    assert!(ok.headers.get("ratelimit-policy").is_none());
}

fn connect_info(ext: &http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

fn ip_registry() -> Registry {
    Registry::builder()
        .source(tier("per-ip").limit("5/min burst 5".parse().unwrap()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_peer_address_keys_and_forged_forwarding_is_ignored() {
    let guard = GuardLayer::builder(ip_registry(), ClientIp::peer().peer_from(connect_info))
        .build()
        .unwrap();
    let addr = serve(app(guard)).await;
    // Each request claims another client; none is believed.
    let mut seen = Vec::new();
    for i in 0..8 {
        let xff = format!("203.0.113.{i}");
        seen.push(
            get_with(addr, "/", &[("x-forwarded-for", &xff)])
                .await
                .status,
        );
    }
    assert_eq!(seen, [200, 200, 200, 200, 200, 429, 429, 429]);
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let registry = ip_registry();
    let guard = GuardLayer::builder(
        registry.clone(),
        ClientIp::peer().peer_from(connect_info).trusted_proxies(1),
    )
    .build()
    .unwrap();
    let addr = serve(app(guard)).await;
    // The proxy appended 10.0.0.1; what the client wrote before it is ignored.
    let mut one = Vec::new();
    for i in 0..7 {
        let xff = format!("198.51.100.{i}, 10.0.0.1");
        one.push(
            get_with(addr, "/", &[("x-forwarded-for", &xff)])
                .await
                .status,
        );
    }
    assert_eq!(one, [200, 200, 200, 200, 200, 429, 429]);
    // Another client behind the same proxy has its own quota.
    let two = statuses(addr, 5, &[("x-forwarded-for", "10.0.0.2")]).await;
    assert_eq!(count(&two, 200), 5);
    // No header: the peer (127.0.0.1) is the client.
    let direct = statuses(addr, 5, &[]).await;
    assert_eq!(count(&direct, 200), 5);
    assert_eq!(registry.host_count("per-ip").unwrap(), 3);
}

#[tokio::test]
async fn an_app_served_without_connect_info_is_told_how_to_add_it() {
    // Served with `into_make_service`, not `..._with_connect_info`: axum
    // inserts no `ConnectInfo`, so no request has a peer address.
    let make_guard = || {
        GuardLayer::builder(ip_registry(), ClientIp::peer().peer_from(connect_info))
            .build()
            .unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(make_guard())).await });
    let reply = get_with(addr, "/", &[]).await;
    assert_eq!(reply.status, 400);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let detail = body["detail"].as_str().unwrap();
    for part in [
        "ConnectInfo",
        "app.into_make_service_with_connect_info::<SocketAddr>()",
    ] {
        assert!(detail.contains(part), "{detail}");
    }
    // The default reader of a plain `SocketAddr` says how to read axum's.
    let what = ClientIp::peer().describe();
    for part in [
        "ConnectInfo",
        "app.into_make_service_with_connect_info::<SocketAddr>()",
        "peer_from",
    ] {
        assert!(what.contains(part), "{what}");
    }
}

#[tokio::test]
async fn requests_without_a_key_can_share_a_tier() {
    let registry = Registry::builder()
        .source(tier("keyed").limit(Policy::per_minute(30.0).unwrap()))
        .source(tier("anonymous").limit("2/min burst 2".parse().unwrap()))
        .build()
        .unwrap();
    let guard = GuardLayer::builder(registry, HeaderKey::new("x-api-key").unwrap())
        .default_tier("keyed")
        .missing_key(MissingKey::Tier("anonymous".into()))
        .build()
        .unwrap();
    let addr = serve(app(guard)).await;
    assert_eq!(statuses(addr, 3, &[]).await, [200, 200, 429]);
    let anon = get_with(addr, "/", &[]).await;
    assert_eq!(header(&anon, "ratelimit-policy"), r#""anonymous";q=2;w=60"#);
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let key = || HeaderKey::new("x-api-key").unwrap();
    let err = |b: tollgate::server::GuardBuilder<HeaderKey>| b.build().unwrap_err().to_string();
    let e = err(GuardLayer::builder(tiers(), key()));
    assert!(e.contains("default_tier"), "{e}");
    let e = err(GuardLayer::builder(tiers(), key()).default_tier("gold"));
    assert!(
        e.contains("`gold` is not a tier") && e.contains("free, enterprise"),
        "{e}"
    );
    let e = err(GuardLayer::builder(tiers(), key())
        .default_tier("free")
        .key_tier("k", "platinum"));
    assert!(e.contains("platinum"), "{e}");
    let e = err(GuardLayer::builder(tiers(), key())
        .default_tier("free")
        .missing_key(MissingKey::Refuse(StatusCode::OK)));
    assert!(e.contains("4xx or 5xx"), "{e}");
    // A tier function's names are checked when the guard is built.
    let e = err(GuardLayer::builder(tiers(), key())
        .default_tier("free")
        .tier_by(["enterprise", "gold"], |k| {
            k.strip_prefix("plan-").map(String::from)
        }));
    assert!(
        e.contains("tier_by")
            && e.contains("`gold` is not a tier")
            && e.contains(r#"tollgate::server::tier("gold")"#),
        "{e}"
    );
    let e = err(GuardLayer::builder(tiers(), key())
        .default_tier("free")
        .tier_by(Vec::<String>::new(), |_| Some("free")));
    assert!(e.contains("list every tier name"), "{e}");
    let none = Registry::builder().build().unwrap();
    let e = err(GuardLayer::builder(none, key()));
    assert!(e.contains("no source to use as a tier"), "{e}");
    assert!(HeaderKey::new("bad header").is_err());
}

mod in_process {
    //! Behaviours that need no network, in paused time.
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use tokio::sync::Notify;
    use tokio::time::Instant;
    use tollgate::server::{tier, ClientIp, GuardLayer, PathKey};
    use tollgate::{OnLimit, Registry};
    use tower::{Layer, Service, ServiceExt};

    fn ok_service(
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future = impl Send>
           + Clone {
        tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_tier_queues_up_to_its_max_wait() {
        let registry = Registry::builder()
            .source(
                tier("queue")
                    .limit("10/s".parse().unwrap())
                    .on_limit(OnLimit::Wait {
                        max_wait: Some(Duration::from_millis(150)),
                    }),
            )
            .build()
            .unwrap();
        let guard = GuardLayer::builder(registry, PathKey).build().unwrap();
        let svc = guard.layer(ok_service());
        let start = Instant::now();
        let call = |svc: &_| {
            let svc: tollgate::server::Guard<_, PathKey> = Clone::clone(svc);
            async move {
                let resp = svc.oneshot(Request::new(())).await.unwrap();
                (resp.status(), start.elapsed(), resp)
            }
        };
        let (a, b, c) = tokio::join!(call(&svc), call(&svc), call(&svc));
        assert_eq!((a.0, a.1), (StatusCode::OK, Duration::ZERO));
        // A token every 100 ms: the second waits for its slot...
        assert_eq!(b.0, StatusCode::OK);
        assert!(
            b.1 >= Duration::from_millis(100) && b.1 < Duration::from_millis(101),
            "{:?}",
            b.1
        );
        // ...and the third, 200 ms away, is past the 150 ms it may wait.
        assert_eq!((c.0, c.1), (StatusCode::TOO_MANY_REQUESTS, Duration::ZERO));
        assert_eq!(c.2.headers()["retry-after"], "1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_with_all_its_slots_in_flight_is_refused() {
        let registry = Registry::builder()
            .source(
                tier("serial")
                    .limit(tollgate::Policy::unlimited())
                    .max_in_flight(1),
            )
            .build()
            .unwrap();
        let guard = GuardLayer::builder(registry, PathKey).build().unwrap();
        let gate = Arc::new(Notify::new());
        let (entered, mut inside) = tokio::sync::mpsc::unbounded_channel();
        let g = gate.clone();
        let svc = guard.layer(tower::service_fn(move |_req: Request<()>| {
            let (g, entered) = (g.clone(), entered.clone());
            async move {
                let _ = entered.send(());
                g.notified().await;
                Ok::<_, Infallible>(Response::new(String::from("done")))
            }
        }));
        let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
        inside.recv().await.unwrap();
        let second = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(second.headers()["retry-after"], "1");
        assert!(
            second.body().contains("1 requests in flight"),
            "{}",
            second.body()
        );
        // An unlimited tier announces no quota.
        gate.notify_one();
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert!(first.headers().get("ratelimit").is_none());
        // The slot came back with the response.
        let third = tokio::spawn(svc.oneshot(Request::new(())));
        inside.recv().await.unwrap();
        gate.notify_one();
        assert_eq!(third.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn composite_keys_with_the_separator_in_a_part_stay_apart() {
        use std::sync::Mutex;
        let registry = Registry::builder()
            .source(tier("free").limit("5/min burst 5".parse().unwrap()))
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let key = (
            tollgate::server::HeaderKey::new("x-a").unwrap(),
            tollgate::server::HeaderKey::new("x-b").unwrap(),
        );
        let guard = GuardLayer::builder(registry, key)
            .tier_by(["free"], move |key| {
                s.lock().unwrap().push(key.to_owned());
                None::<&str>
            })
            .build()
            .unwrap();
        let svc = guard.layer(ok_service());
        for (a, b) in [("a|b", "c"), ("a", "b|c"), ("a\\", "b"), ("a", "\\b")] {
            let req = Request::builder()
                .header("x-a", a)
                .header("x-b", b)
                .body(())
                .unwrap();
            assert_eq!(
                svc.clone().oneshot(req).await.unwrap().status(),
                StatusCode::OK
            );
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, [r"a\|b|c", r"a|b\|c", r"a\\|b", r"a|\\b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ratelimit_item_names_the_limit_it_reports() {
        // The second limit is the tighter: its `r` is reported, by its name.
        let registry = Registry::builder()
            .source(
                tier("api")
                    .limit("100/s burst 100".parse().unwrap())
                    .limit("2/min burst 2".parse().unwrap()),
            )
            .build()
            .unwrap();
        let guard = GuardLayer::builder(registry, PathKey)
            .success_headers(tollgate::server::SuccessHeaders::RateLimitAndPolicy)
            .build()
            .unwrap();
        let svc = guard.layer(ok_service());
        let first = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(
            first.headers()["ratelimit-policy"],
            r#""api";q=100;w=1, "api-2";q=2;w=60"#
        );
        assert_eq!(first.headers()["ratelimit"], r#""api-2";r=1;t=30"#);
        svc.clone().oneshot(Request::new(())).await.unwrap();
        let refused = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["ratelimit"], r#""api-2";r=0;t=30"#);
    }

    /// A request from the proxy at 10.9.9.9 whose `X-Forwarded-For` is `xff`.
    fn forwarded(xff: &[u8]) -> Request<()> {
        let mut req = Request::builder()
            .header(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(xff).unwrap(),
            )
            .body(())
            .unwrap();
        let proxy: std::net::SocketAddr = "10.9.9.9:443".parse().unwrap();
        req.extensions_mut().insert(proxy);
        req
    }

    #[tokio::test]
    async fn a_non_ascii_forwarded_entry_does_not_move_the_client_to_the_proxy() {
        let registry = Registry::builder()
            .source(tier("per-ip").limit("1/min burst 1".parse().unwrap()))
            .build()
            .unwrap();
        let guard = GuardLayer::builder(registry.clone(), ClientIp::peer().trusted_proxies(1))
            .build()
            .unwrap();
        let svc = guard.layer(ok_service());
        let status = |xff: &'static [u8]| {
            let svc = svc.clone();
            async move { svc.oneshot(forwarded(xff)).await.unwrap().status() }
        };
        // What the client wrote (left) is not UTF-8; the proxy's entry is.
        assert_eq!(status(b"\xc3\xa9vil, 198.51.100.7").await, StatusCode::OK);
        assert_eq!(status(b"\xff, 198.51.100.8").await, StatusCode::OK);
        assert_eq!(
            status(b"198.51.100.7").await,
            StatusCode::TOO_MANY_REQUESTS,
            "the same client"
        );
        // Bracketed IPv6, with a port or without, is one client.
        assert_eq!(status(b"x, [2001:db8::1]:4711").await, StatusCode::OK);
        assert_eq!(
            status(b"[2001:db8::1]").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status(b"2001:db8::1").await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(registry.host_count("per-ip").unwrap(), 3, "never the proxy");
    }

    #[tokio::test]
    async fn a_tier_function_naming_no_tier_is_a_500_that_says_which() {
        let registry = Registry::builder()
            .source(tier("free").limit("5/s".parse().unwrap()))
            .build()
            .unwrap();
        // Declared right, but the function returns another (owned) name.
        let guard = GuardLayer::builder(registry, PathKey)
            .tier_by(["free"], |path| Some(format!("gold{path}")))
            .build()
            .unwrap();
        let resp = guard
            .layer(ok_service())
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body = resp.body();
        assert!(
            body.contains("`gold/`")
                && body.contains("tiers: [free]")
                && body.contains(r#"tollgate::server::tier(\"gold/\")"#),
            "{body}"
        );
    }
}
