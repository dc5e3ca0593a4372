//! A tonic gRPC client behind tollgate, against a hand-written tonic server.
//!
//! `cargo run -p tollgate-bench --example tonic_client` serves `echo.Echo/Say` on 127.0.0.1
//! (message types and server glue written by hand, as `tonic-build` would
//! generate them, since the example has no `protoc`), then:
//!
//! 1. sends ten concurrent calls through [`RateLimitLayer`] with a 5/s source
//!    for the server's `host:port`: the server serves them ~200 ms apart;
//! 2. shows that the same client built with `Grpc::new` (no origin) is
//!    refused, because the layer sees no host;
//! 3. sends four calls through [`KeyedRateLimitLayer`], routed by gRPC
//!    method at 2/s: ~500 ms apart.
//!
//! # Why `Grpc::with_origin`
//!
//! [`RateLimitLayer`] routes a request by its URI's host, else its `Host`
//! header. `tonic::client::Grpc::new(svc)` uses `Uri::default()` (`/`) as its
//! origin, and `GrpcConfig::prepare_request` (`tonic/src/client/grpc.rs`)
//! builds each request's URI from the origin's parts with the method path as
//! `path_and_query`: the URI is just `/echo.Echo/Say`, and tonic adds no `Host`
//! header. The `Channel` fills in scheme and authority itself (its private
//! `AddOrigin` service), but only *inside* the channel, after any layer
//! wrapped around it has run. So the layer sees no host, and a registry that
//! rejects unknown hosts refuses every call (step 2).
//!
//! `Grpc::with_origin(svc, origin)` makes `prepare_request` take the scheme
//! and authority from `origin` (prefixing its path, if it has one other than
//! `/`), so every request leaves `Grpc` as `http://127.0.0.1:PORT/echo.Echo/Say`.
//! The layer must therefore sit *between* `Grpc` and the `Channel`, as here:
//! `Grpc<RateLimit<Channel>>`. The channel's `AddOrigin` then overwrites scheme
//! and authority with the endpoint's, so `origin` only decides what the
//! layers see, not where the call goes: keep it equal to the endpoint.
//!
//! The keyed layer needs no origin: it routes by a key of its own. A key is
//! matched like a host rule, which may not contain `/`, so the method path
//! `/echo.Echo/Say` becomes the name `echo.Echo.Say`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tollgate::tower::{BoxError, KeyedRateLimitLayer, RateLimitLayer};
use tollgate::{Policy, Registry, Source, UnknownHost};
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::codegen::BoxFuture;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder};

/// `echo.SayRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SayRequest {
    /// What to echo.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `echo.SayReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SayReply {
    /// The request's message.
    #[prost(string, tag = "1")]
    pub message: String,
    /// When the server handled the call, in ms since the Unix epoch.
    #[prost(uint64, tag = "2")]
    pub served_at_ms: u64,
}

/// The one method's path, as gRPC puts it in the request URI.
const SAY_PATH: &str = "/echo.Echo/Say";

/// Wall-clock ms since the Unix epoch (server and client share the clock).
fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as u64)
}

/// The `echo.Echo` server: what `tonic-build` generates as `EchoServer<T>`.
#[derive(Clone, Copy, Debug, Default)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "echo.Echo";
}

impl Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match req.uri().path() {
            SAY_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(Say, req).await)
            }),
            _ => Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// The `Say` handler: echoes the message and stamps the time.
struct Say;

impl UnaryService<SayRequest> for Say {
    type Response = SayReply;
    type Future = std::future::Ready<Result<tonic::Response<SayReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<SayRequest>) -> Self::Future {
        let message = request.into_inner().message;
        let served_at_ms = now_ms();
        std::future::ready(Ok(tonic::Response::new(SayReply {
            message,
            served_at_ms,
        })))
    }
}

/// Starts the server on a free loopback port and returns its address.
async fn serve() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = Server::builder().add_service(EchoServer);
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    Ok(addr)
}

/// The keyed layer's key: the method path as a name a host rule accepts
/// (`/echo.Echo/Say` → `echo.Echo.Say`).
fn method_key(req: &http::Request<Body>) -> String {
    req.uri().path().trim_start_matches('/').replace('/', ".")
}

/// Sends `n` concurrent `Say` calls, each on its own clone of `client`, and
/// prints when the server served each, relative to the first call sent.
async fn burst<S>(client: &Grpc<S>, n: usize) -> Result<(), BoxError>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>,
    S: Clone + Send + 'static,
    S::Future: Send,
{
    let start = now_ms();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client.ready().await?;
                let request = tonic::Request::new(SayRequest {
                    message: format!("hello {i}"),
                });
                let path = PathAndQuery::from_static(SAY_PATH);
                let reply: tonic::Response<SayReply> =
                    client.unary(request, path, ProstCodec::default()).await?;
                Ok::<_, BoxError>(reply.into_inner())
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await??);
    }
    replies.sort_by_key(|r| r.served_at_ms);
    let mut last = None;
    for r in &replies {
        let at = r.served_at_ms.saturating_sub(start);
        let gap = last.map_or(String::new(), |l| format!(" (+{} ms)", at - l));
        println!("  {:<8} served at {at:>5} ms{gap}", r.message);
        last = Some(at);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr = serve().await?;
    let registry = Registry::builder()
        .source(
            Source::new("echo")
                .limit(Policy::per_second(5.0)?)
                .host(addr.to_string()),
        )
        .source(
            Source::new("echo-say")
                .limit(Policy::per_second(2.0)?)
                .host("echo.Echo.Say"),
        )
        .unknown_hosts(UnknownHost::Reject)
        .build()?;
    let origin: http::Uri = format!("http://{addr}").parse()?;
    let channel = Channel::builder(origin.clone()).connect().await?;

    // Grpc → RateLimit → Channel: the origin is on the URI when the layer reads it.
    let limited = ServiceBuilder::new()
        .layer(RateLimitLayer::new(registry.clone()))
        .service(channel.clone());
    println!("1. RateLimitLayer, source `echo` at 5/s for {addr}:");
    burst(&Grpc::with_origin(limited.clone(), origin), 10).await?;

    println!("2. The same layer under Grpc::new (no origin):");
    let mut no_origin = Grpc::new(limited);
    no_origin.ready().await?;
    let request = tonic::Request::new(SayRequest {
        message: "lost".into(),
    });
    let path = PathAndQuery::from_static(SAY_PATH);
    let result: Result<tonic::Response<SayReply>, _> =
        no_origin.unary(request, path, ProstCodec::default()).await;
    match result {
        Ok(_) => println!("  unexpectedly served"),
        Err(status) => {
            let cause = std::error::Error::source(&status)
                .and_then(|e| e.downcast_ref::<tollgate::Error>())
                .map_or("-".to_string(), |e| format!("{e:?}"));
            println!(
                "  refused: code {:?}, tollgate error {cause}",
                status.code()
            );
        }
    }

    // No origin needed: the key comes from the path, which is always there.
    let keyed = ServiceBuilder::new()
        .layer(KeyedRateLimitLayer::new(registry, method_key))
        .service(channel);
    println!("3. KeyedRateLimitLayer by method, source `echo-say` at 2/s:");
    burst(&Grpc::new(keyed), 4).await?;
    Ok(())
}
