//! The InfluxDB 1.x compatible HTTP API: `/ping`, `/health`, `/write`, `/query`, and the
//! inspect routes under `/debug/`.
//!
//! Core 0 accepts and hands each connection to the least-loaded core, which serves it
//! with hyper's HTTP/1.1 server. Answers mirror InfluxDB 1.x: status codes, JSON error bodies
//! (`{"error":"..."}`), and the `X-Influxdb-Version` / `Request-Id` headers.
//!
//! Bounds: `max-connections-per-core` open connections (past it on every core, new
//! connections are closed at once),
//! `max-concurrent-write-requests-per-core` writes in progress (more get 503 with
//! Retry-After), `max-body-size-bytes` per body as received (more get 413), and
//! `max-decompressed-body-bytes` once a gzip body is decoded.

pub mod auth;
pub mod conn;
pub mod io;
pub mod prom;
pub mod tls;

use crate::base::shutdown::Shutdown;
use crate::base::LocalFuture;
use crate::cluster::executor::StatementExecutor;
use crate::cluster::local::LocalNode;
use crate::cluster::meta_sync::MetaSyncService;
use crate::cluster::points_writer::{Consistency, PointsWriter, WriteError, WriteOutcome};
use crate::config::HttpConfig;
use crate::lineproto::Precision;
use crate::meta::{MetaStore, Principal, Privilege};
use crate::metrics::{self, CoreStats, CoreTimers, Timer};
use crate::net::handoff::{HandoffStream, MovedStream};
use crate::net::mesh::MeshError;
use crate::placement::NodeId;
use crate::query::QueryRefused;
use crate::tsdb::shard::{ShardStats, StoredPoint};
use crate::tsdb::store::ReadRequest;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The InfluxDB version we answer as: clients pick features from it.
pub const INFLUXDB_VERSION: &str = "1.8.10";

type Resp = Response<Full<Bytes>>;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Every core's shard statistics, by core.
pub type ShardStatsByCore = Vec<(usize, Vec<ShardStats>)>;

/// What the front end asks of this node's cores beyond what the cluster services do:
/// moving connections between cores and the node-wide views of `/debug/`. The
/// composition root (`node`) implements it over the mesh.
pub trait HttpNode: LocalNode {
    /// Hands a connection core 0 accepted to `core`, which serves it.
    fn hand_over(
        &self,
        core: usize,
        stream: HandoffStream,
    ) -> LocalFuture<'_, Result<(), MeshError>>;

    /// Moves a connection (steered to where its database is) to `core`.
    fn move_over(&self, core: usize, stream: MovedStream)
        -> LocalFuture<'_, Result<(), MeshError>>;

    /// Shard statistics of every core.
    fn shard_stats(&self) -> LocalFuture<'_, Result<ShardStatsByCore, MeshError>>;

    /// Stored points from every core (`/debug/shard-dump`).
    fn read<'a>(
        &'a self,
        request: &'a ReadRequest,
    ) -> LocalFuture<'a, Result<Vec<(u64, StoredPoint)>, MeshError>>;
}

/// This core's HTTP service: the handlers' dependencies, and the state of the requests
/// and connections it serves.
pub struct HttpService {
    core: usize,
    cores: usize,
    config: HttpConfig,
    node: Rc<dyn HttpNode>,
    points_writer: Rc<PointsWriter>,
    executor: Rc<StatementExecutor>,
    meta: Arc<MetaStore>,
    /// With peers: a write for a database not known here first syncs meta.
    meta_sync: Option<Rc<MetaSyncService>>,
    stats: Rc<CoreStats>,
    timers: Rc<CoreTimers>,
    shutdown: Arc<Shutdown>,
    /// Open client connections per core (core 0 reads them to pick where to hand one).
    connection_counts: Arc<Vec<AtomicUsize>>,
    /// Head bytes per core: writes get 503 while a core is past `cache-max-bytes`.
    cache: Arc<crate::tsdb::cache::CacheGauge>,
    /// This core's client connections (phases, timeouts, room at the limit).
    connections: Rc<conn::Connections>,
    /// Bytes of request bodies being received on this core (bounded by
    /// `max-pending-body-bytes-per-core`).
    pending_body_bytes: Cell<u64>,
    in_flight_writes: Cell<usize>,
    in_flight_requests: Cell<usize>,
    shutting_down: Cell<bool>,
    http_addr: SocketAddr,
    node_id: NodeId,
    /// Whether peers are configured (`/debug/vars` then shows hinted handoff).
    clustered: bool,
    /// Who a request is (`[http] auth-enabled`).
    auth: auth::Authenticator,
    /// With `https-enabled`: every connection is TLS.
    tls: Option<Arc<tls::TlsCertificates>>,
}

/// What [`HttpService::new`] takes.
pub struct HttpServiceParts {
    pub config: HttpConfig,
    pub node: Rc<dyn HttpNode>,
    pub points_writer: Rc<PointsWriter>,
    pub executor: Rc<StatementExecutor>,
    pub meta: Arc<MetaStore>,
    pub meta_sync: Option<Rc<MetaSyncService>>,
    pub stats: Rc<CoreStats>,
    pub timers: Rc<CoreTimers>,
    pub shutdown: Arc<Shutdown>,
    pub connection_counts: Arc<Vec<AtomicUsize>>,
    pub cache: Arc<crate::tsdb::cache::CacheGauge>,
    pub http_addr: SocketAddr,
    pub node_id: NodeId,
    pub tls: Option<Arc<tls::TlsCertificates>>,
}

impl HttpService {
    pub fn new(parts: HttpServiceParts) -> HttpService {
        let (core, cores) = (parts.node.core(), parts.node.cores());
        HttpService {
            core,
            cores,
            connections: conn::Connections::new(
                core,
                parts.config.max_connections_per_core,
                parts.connection_counts.clone(),
            ),
            clustered: parts.meta_sync.is_some(),
            auth: auth::Authenticator::new(&parts.config, parts.meta.clone(), parts.stats.clone()),
            config: parts.config,
            node: parts.node,
            points_writer: parts.points_writer,
            executor: parts.executor,
            meta: parts.meta,
            meta_sync: parts.meta_sync,
            stats: parts.stats,
            timers: parts.timers,
            shutdown: parts.shutdown,
            connection_counts: parts.connection_counts,
            cache: parts.cache,
            pending_body_bytes: Cell::new(0),
            in_flight_writes: Cell::new(0),
            in_flight_requests: Cell::new(0),
            shutting_down: Cell::new(false),
            http_addr: parts.http_addr,
            node_id: parts.node_id,
            tls: parts.tls,
        }
    }

    /// Stops taking requests (new ones get 503) and waits, up to `timeout`, for those
    /// in flight on this core.
    pub async fn drain(&self, timeout: std::time::Duration) {
        self.shutting_down.set(true);
        let deadline = std::time::Instant::now() + timeout;
        while self.in_flight_requests.get() > 0 && std::time::Instant::now() < deadline {
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// The core with the fewest open connections; ties go to the first from `start`.
    fn least_loaded_core(&self, start: usize) -> usize {
        (0..self.cores)
            .map(|k| (start + k) % self.cores)
            .min_by_key(|&c| self.connection_counts[c].load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// Core 0 accepts every connection and hands it to the core with the fewest open
/// connections (DESIGN section 1: SO_REUSEPORT's hash spread a few long-lived client
/// connections unevenly — measured 4:0 and 3:1 with 4 loader connections on 2 cores).
/// Other cores only serve what they are handed. Runs until shutdown is requested.
pub async fn accept_loop(api: Rc<HttpService>, listener: Option<glommio::net::TcpListener>) {
    let Some(listener) = listener else {
        api.shutdown.wait().await;
        return;
    };
    let (stop_tx, stop_rx) = glommio::channels::local_channel::new_bounded::<()>(1);
    {
        let shutdown = api.shutdown.clone();
        glommio::spawn_local(async move {
            shutdown.wait().await;
            let _ = stop_tx.send(()).await;
        })
        .detach();
    }
    let mut next = 0usize;
    loop {
        let accepted =
            futures_lite::future::or(async { Some(listener.shared_accept().await) }, async {
                let _ = stop_rx.recv().await;
                None
            })
            .await;
        let accepted = match accepted {
            None => break,
            Some(Ok(stream)) => HandoffStream::new(stream),
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let target = api.least_loaded_core(next);
        next = next.wrapping_add(1);
        let counts = &api.connection_counts;
        // At the limit on every core the target still takes it: it closes its longest
        // waiting connection to make room, or refuses this one if all are busy.
        // Counted at hand-off, so a burst of accepts spreads before any core reports.
        counts[target].fetch_add(1, Ordering::Relaxed);
        if target == api.core {
            serve_connection(api.clone(), accepted.into_stream());
        } else if let Err(e) = api.node.hand_over(target, accepted).await {
            counts[target].fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot hand a connection to core {target}");
        }
    }
}

/// How long a new connection may take to send its first bytes before it is served
/// where it is, unsteered.
const STEER_WAIT: std::time::Duration =
    std::time::Duration::from_millis(crate::limits::STEER_WAIT_MS);

/// Serves one client connection on this core until it closes, or moves it first to the
/// core that holds its database ([`steer`]). The caller has already counted it in
/// `connection_counts`.
pub fn serve_connection(api: Rc<HttpService>, stream: glommio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    glommio::spawn_local(async move {
        // A TLS connection's first bytes are its handshake: it is served where it is.
        let stream = if api.tls.is_some() {
            Some(stream)
        } else {
            steer(&api, stream).await
        };
        if let Some(stream) = stream {
            serve_http(api, stream).await;
        }
    })
    .detach();
}

/// Serves a connection another core moved here ([`steer`]), as it is.
pub fn serve_moved_connection(api: Rc<HttpService>, stream: glommio::net::TcpStream) {
    glommio::spawn_local(serve_http(api, stream)).detach();
}

/// The answer to a connection refused at the limit (every open one busy), written
/// without reading the request: a client sees why instead of a reset.
const REFUSED_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 83\r\n\r\n{\"error\":\"too many open connections: every one is busy in a request; retry later\"}\n";

/// Refuses a connection: the 503 above, written within a second, then closed.
async fn refuse(mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let _ = futures_lite::future::or(
        async {
            let _ = stream.write_all(REFUSED_ANSWER).await;
            let _ = stream.close().await;
        },
        glommio::timer::sleep(std::time::Duration::from_secs(1)),
    )
    .await;
}

/// Connection steering: when the first request of a new connection is a `/query` of a
/// database whose shards on this node are all on one other core, the connection moves
/// to that core before anything is read, so that it and the rest of the connection's
/// queries (Grafana, TSBS and the client libraries keep one database per connection)
/// run where the data is, without a mesh round trip each (~0.35 ms on a 2-vCPU VM,
/// most of a small query). The first bytes are only peeked (`MSG_PEEK`); hyper reads
/// them on the new core. Writes are never steered: their parsing is spread over the
/// cores. Returns the stream when it stays here.
async fn steer(
    api: &Rc<HttpService>,
    stream: glommio::net::TcpStream,
) -> Option<glommio::net::TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd};
    if api.cores == 1 {
        return Some(stream);
    }
    let mut head = [0u8; 1024];
    let peeked = futures_lite::future::or(async { stream.peek(&mut head).await.ok() }, async {
        glommio::timer::sleep(STEER_WAIT).await;
        None
    })
    .await;
    let Some(n) = peeked else {
        return Some(stream);
    };
    let Some(core) = query_database(&head[..n])
        .and_then(|db| api.node.sole_core(&db))
        .filter(|&core| core != api.core)
    else {
        return Some(stream);
    };
    // SAFETY: dup of a descriptor we own; the copy is owned by `moved` alone.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Some(stream);
    }
    let moved = MovedStream::new(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    let counts = &api.connection_counts;
    counts[core].fetch_add(1, Ordering::Relaxed);
    match api.node.move_over(core, moved).await {
        Ok(()) => {
            counts[api.core].fetch_sub(1, Ordering::Relaxed);
            CoreStats::add(&api.stats.connections_steered, 1);
            // Closes this core's descriptor only: the socket lives on in the copy.
            drop(stream);
            None
        }
        Err(e) => {
            counts[core].fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(error = %e, core, "could not move a connection; serving it here");
            Some(stream)
        }
    }
}

/// The `db` parameter of a `GET` or `POST /query?...` request line at the start of
/// `head`, if it is one.
fn query_database(head: &[u8]) -> Option<String> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !matches!(parts.next()?, "GET" | "POST") {
        return None;
    }
    let (path, query) = parts.next()?.split_once('?')?;
    if path != "/query" {
        return None;
    }
    query_params(query).remove("db").filter(|db| !db.is_empty())
}

/// Runs hyper's HTTP/1.1 server on a connection until it closes, or until its
/// watchdog closes it (`conn`: header-read and idle timeouts, eviction).
async fn serve_http(api: Rc<HttpService>, stream: glommio::net::TcpStream) {
    let Some(mut registration) = api.connections.register() else {
        api.connections.uncount();
        CoreStats::add(&api.stats.connections_refused, 1);
        tracing::warn!(
            core = api.core,
            "connection limit reached and every connection is busy; refusing a new one"
        );
        refuse(stream).await;
        return;
    };
    let connection = registration.connection.clone();
    // The source address of the brute-force back-off.
    let peer = stream
        .peer_addr()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
            a.ip()
        });
    let timeouts = conn::Timeouts {
        header_read: std::time::Duration::from_millis(api.config.header_read_timeout_ms),
        idle: std::time::Duration::from_millis(api.config.idle_timeout_ms),
    };
    let served = async {
        match &api.tls {
            None => serve_hyper(&api, stream, &connection, peer).await,
            // A plain HTTP request on the HTTPS port gets Go's answer (the influx CLI
            // reads it as "use -ssl").
            Some(_) if !starts_tls(&stream).await => {
                use futures_lite::AsyncWriteExt;
                let mut stream = stream;
                CoreStats::add(&api.stats.tls_handshake_failures, 1);
                let _ = stream.write_all(PLAIN_ON_TLS_ANSWER).await;
                let _ = stream.close().await;
            }
            // The handshake is watched as the request head is (header-read timeout).
            Some(tls) => match tls.acceptor().accept(stream).await {
                Ok(stream) => {
                    CoreStats::add(&api.stats.tls_handshakes, 1);
                    serve_hyper(&api, stream, &connection, peer).await
                }
                Err(e) => {
                    CoreStats::add(&api.stats.tls_handshake_failures, 1);
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
            },
        }
    };
    let closed = futures_lite::future::or(
        async {
            served.await;
            None
        },
        async { Some(conn::watch(&connection, &mut registration.evicted, timeouts).await) },
    )
    .await;
    let counter = match closed {
        None => return,
        Some(conn::Closed::HeaderTimeout) => &api.stats.connections_header_timeouts,
        Some(conn::Closed::IdleTimeout) => &api.stats.connections_idle_timeouts,
        Some(conn::Closed::Evicted) => &api.stats.connections_evicted,
    };
    CoreStats::add(counter, 1);
    tracing::debug!(core = api.core, reason = ?closed, "closed a client connection");
}

/// Go's answer to plain HTTP on a TLS port.
const PLAIN_ON_TLS_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Whether a connection's first byte opens a TLS handshake (a record of type 22);
/// false for anything else, or nothing.
async fn starts_tls(stream: &glommio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// Runs hyper's HTTP/1.1 server on one connection's stream (plain or TLS) until it
/// closes.
async fn serve_hyper<S>(
    api: &Rc<HttpService>,
    stream: S,
    connection: &Rc<conn::Connection>,
    peer: std::net::IpAddr,
) where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let service_ctx = api.clone();
    let service_connection = connection.clone();
    let service = hyper::service::service_fn(move |req| {
        let api = service_ctx.clone();
        let connection = service_connection.clone();
        async move {
            connection.request_started();
            let answer = handle(api, req, peer).await;
            connection.request_finished();
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    // hyper's own header timeout needs a `Send` timer, which glommio's is not; the
    // watchdog does its job (and the idle timeout hyper does not have).
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(
            io::HyperStream {
                stream,
                connection: connection.clone(),
            },
            service,
        );
    if let Err(e) = served.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The answer with its body gzipped (Go's default level, as InfluxDB's).
async fn gzipped(resp: Resp) -> Resp {
    use std::io::Write;
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::default(),
    );
    let zipped = encoder
        .write_all(&bytes)
        .and_then(|()| encoder.finish())
        .expect("gzip into memory");
    parts
        .headers
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Full::new(Bytes::from(zipped)))
}

/// Counts a request in flight for the lifetime of the guard.
struct InFlight<'a>(&'a std::cell::Cell<usize>);

impl<'a> InFlight<'a> {
    fn new(cell: &'a std::cell::Cell<usize>) -> Self {
        cell.set(cell.get() + 1);
        InFlight(cell)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn handle(api: Rc<HttpService>, req: Request<Incoming>, peer: std::net::IpAddr) -> Resp {
    let _in_flight = InFlight::new(&api.in_flight_requests);
    // InfluxDB gzips the 200 answers of /query and /metrics for clients that take it.
    let gzip = matches!(req.uri().path(), "/query" | "/metrics")
        && req
            .headers()
            .get(hyper::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("gzip"));
    let mut resp = if api.shutting_down.get() || api.shutdown.is_requested() {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
        set_retry_after(&api, &mut r);
        r
    } else {
        route(&api, req, peer).await
    };
    if gzip && resp.status() == StatusCode::OK {
        resp = gzipped(resp).await;
    }
    let headers = resp.headers_mut();
    headers.insert(
        "X-Influxdb-Version",
        HeaderValue::from_static(INFLUXDB_VERSION),
    );
    headers.insert("X-Influxdb-Build", HeaderValue::from_static("OSS"));
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    if let Ok(v) = HeaderValue::from_str(&format!("{:08x}-{:016x}", api.core, id)) {
        headers.insert("Request-Id", v.clone());
        headers.insert("X-Request-Id", v);
    }
    resp
}

/// Who a request is; `Err` is the 401 to answer.
async fn authenticate(
    api: &HttpService,
    req: &Request<Incoming>,
    peer: std::net::IpAddr,
) -> Result<Principal, Resp> {
    if !api.auth.enabled() {
        return Ok(Principal::Open);
    }
    let params = query_params(req.uri().query().unwrap_or(""));
    api.auth
        .authenticate(
            params.get("u").map(String::as_str),
            params.get("p").map(String::as_str),
            req.headers(),
            peer,
        )
        .await
        .map_err(|refused| {
            let pretty = params.get("pretty").is_some_and(|v| v == "true");
            unauthorized(Format::of(req.headers(), pretty), refused.text())
        })
}

/// A 401 as InfluxDB answers it: the error body (in the shape asked for) and a Basic
/// challenge.
fn unauthorized(format: Format, text: &str) -> Resp {
    let mut r = format.error(StatusCode::UNAUTHORIZED, text);
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"InfluxDB\""),
    );
    r
}

/// A 403, counted.
fn forbidden(api: &HttpService, text: &str) -> Resp {
    CoreStats::add(&api.stats.auth_forbidden, 1);
    error(StatusCode::FORBIDDEN, text)
}

/// The routes InfluxDB's `ping-auth-enabled` and `pprof-auth-enabled` guard.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guarded {
    /// `/ping`, `/health`: any user once ping-auth-enabled.
    Ping,
    /// `/debug/*`, `/metrics`: an admin once pprof-auth-enabled.
    Debug,
}

/// `Err`: the 401 or 403 for a guarded route.
async fn guard(
    api: &HttpService,
    req: &Request<Incoming>,
    peer: std::net::IpAddr,
    route: Guarded,
) -> Result<(), Resp> {
    let on = api.auth.enabled()
        && match route {
            Guarded::Ping => api.config.ping_auth_enabled,
            Guarded::Debug => api.config.pprof_auth_enabled,
        };
    if !on {
        return Ok(());
    }
    let principal = authenticate(api, req, peer).await?;
    if route == Guarded::Ping {
        return Ok(());
    }
    let admin = match &principal {
        Principal::User(name) => api.meta.snapshot().user(name).is_some_and(|u| u.admin),
        // No admin exists yet (InfluxDB 1.8 panics here: a 500).
        Principal::Anonymous => false,
        Principal::Open => true,
    };
    if admin {
        Ok(())
    } else {
        Err(forbidden(api, "error authorizing admin access"))
    }
}

async fn route(api: &Rc<HttpService>, req: Request<Incoming>, peer: std::net::IpAddr) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let guarded = match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/ping" | "/health") => Some(Guarded::Ping),
        (&Method::GET, "/metrics") => Some(Guarded::Debug),
        (&Method::GET, p) if p.starts_with("/debug/") => Some(Guarded::Debug),
        _ => None,
    };
    if let Some(route) = guarded {
        if let Err(resp) = guard(api, &req, peer, route).await {
            return resp;
        }
    }
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/ping") => ping(&req),
        (Method::GET | Method::HEAD, "/health") => json(
            StatusCode::OK,
            serde_json::json!({
                "name": "shardcore",
                "message": "ready for queries and writes",
                "status": "pass",
                "checks": [],
                "version": INFLUXDB_VERSION,
            }),
        ),
        (Method::POST, "/write") => match authenticate(api, &req, peer).await {
            Ok(principal) => write(api, req, principal).await,
            Err(resp) => resp,
        },
        (_, "/write") => method_not_allowed(),
        (Method::POST, "/api/v2/write") => match authenticate(api, &req, peer).await {
            Ok(principal) => write_v2(api, req, principal).await,
            Err(resp) => resp,
        },
        (Method::POST, "/api/v2/delete") => match authenticate(api, &req, peer).await {
            Ok(principal) => delete_v2(api, req, principal).await,
            Err(resp) => resp,
        },
        (Method::POST, "/api/v1/prom/write") => match authenticate(api, &req, peer).await {
            Ok(principal) => prom_write(api, req, principal).await,
            Err(resp) => resp,
        },
        (Method::POST, "/api/v1/prom/read") => match authenticate(api, &req, peer).await {
            Ok(principal) => prom_read(api, req, principal).await,
            Err(resp) => resp,
        },
        (Method::GET | Method::POST, "/query") => match authenticate(api, &req, peer).await {
            Ok(principal) => query(api, req, principal).await,
            Err(resp) => resp,
        },
        (_, "/query") => method_not_allowed(),
        (Method::GET, "/debug/shards") => debug_shards(api).await,
        (Method::GET, "/debug/shard-dump") => debug_shard_dump(api, &req).await,
        (Method::GET, "/debug/vars") => debug_vars(api).await,
        (Method::GET, "/metrics") => prometheus(api).await,
        _ => plain(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

fn ping(req: &Request<Incoming>) -> Resp {
    let params = query_params(req.uri().query().unwrap_or(""));
    if params
        .get("verbose")
        .is_some_and(|v| v == "true" || v == "1")
    {
        return json(
            StatusCode::OK,
            serde_json::json!({ "version": INFLUXDB_VERSION }),
        );
    }
    no_content()
}

/// A 204 as InfluxDB sends it (`Content-Type: application/json`, no body).
fn no_content() -> Resp {
    let mut r = empty(StatusCode::NO_CONTENT);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Plain-text answers, as Go's net/http (and so InfluxDB) writes them.
fn plain(status: StatusCode, text: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn method_not_allowed() -> Resp {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    r.headers_mut()
        .insert("Allow", HeaderValue::from_static("OPTIONS, GET, POST"));
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A JSON body with a trailing newline, as InfluxDB writes them.
fn json(status: StatusCode, value: serde_json::Value) -> Resp {
    json_bytes(status, json_text(&value, false))
}

/// As Go's encoding/json writes it (InfluxDB indents with four spaces when pretty).
fn json_text(value: &serde_json::Value, pretty: bool) -> Vec<u8> {
    crate::query::render::go_json(value, pretty)
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Our own inspect routes keep serde's number forms (a float stays `2.0`), so a
/// client can tell a float field from an integer one.
fn debug_json(value: serde_json::Value) -> Resp {
    let mut body = serde_json::to_vec(&value).expect("JSON values serialise");
    body.push(b'\n');
    json_bytes(StatusCode::OK, body)
}

/// InfluxDB's error shape: `{"error":"..."}`, and (but on a 401) the message again
/// in `X-Influxdb-Error`, at most 1024 bytes of it.
fn error(status: StatusCode, message: &str) -> Resp {
    let mut r = json(status, serde_json::json!({ "error": message }));
    set_error_header(&mut r, message);
    r
}

/// `X-Influxdb-Error` on a non-2xx answer other than a 401, as InfluxDB sends it.
fn set_error_header(r: &mut Resp, message: &str) {
    let status = r.status();
    if status.is_success() || status == StatusCode::UNAUTHORIZED {
        return;
    }
    let mut cut = message.len().min(1024);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    // A header value cannot hold line breaks or other control bytes.
    let text: Vec<u8> = message.as_bytes()[..cut]
        .iter()
        .map(|&b| if b < 0x20 || b == 0x7f { b' ' } else { b })
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&text) {
        r.headers_mut().insert("X-Influxdb-Error", v);
    }
}

fn set_retry_after(api: &HttpService, r: &mut Resp) {
    if let Ok(v) = HeaderValue::from_str(&api.config.retry_after_seconds.to_string()) {
        r.headers_mut().insert("Retry-After", v);
    }
}

/// A string as Go's `%q` writes it (InfluxDB quotes user input in its messages so).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Decodes `a=b&c=d` with percent-escapes and `+` as space.
pub fn query_params(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            out.push(b);
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes of request bodies this core holds while they arrive, against
/// `max-pending-body-bytes-per-core`; released when the read ends either way.
struct BodyBudget<'a> {
    pending: &'a std::cell::Cell<u64>,
    max: u64,
    held: u64,
}

impl BodyBudget<'_> {
    fn take(&mut self, bytes: u64) -> bool {
        if self.pending.get() + bytes > self.max {
            return false;
        }
        self.pending.set(self.pending.get() + bytes);
        self.held += bytes;
        true
    }
}

impl Drop for BodyBudget<'_> {
    fn drop(&mut self) {
        self.pending.set(self.pending.get() - self.held);
    }
}

/// Reads a body of at most `limit` bytes as received (InfluxDB's `max-body-size`, gzip
/// or not), within `body-read-timeout-ms` and the core's
/// `max-pending-body-bytes-per-core`; a gzip body is decoded up to
/// `max-decompressed-body-bytes` (a gzip bomb gets its own 413). `Err(resp)` is the
/// answer to send instead (413, 400, 408 or 503).
async fn read_body(
    api: &HttpService,
    req: Request<Incoming>,
    limit: u64,
) -> Result<(Bytes, hyper::http::request::Parts), Resp> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "http: request body too large",
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let gzip = req
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let timeout = std::time::Duration::from_millis(api.config.body_read_timeout_ms);
    let deadline = std::time::Instant::now() + timeout;
    let mut budget = BodyBudget {
        pending: &api.pending_body_bytes,
        max: api.config.max_pending_body_bytes_per_core,
        held: 0,
    };
    let (parts, mut body) = req.into_parts();
    // Grown as bytes come: a declared length reserves nothing the client has not sent
    // (beyond a first `BODY_RESERVE_MAX_BYTES`).
    let initial = declared
        .unwrap_or(0)
        .min(limit)
        .min(crate::limits::BODY_RESERVE_MAX_BYTES as u64) as usize;
    let mut collected = bytes::BytesMut::with_capacity(initial);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let frame = futures_lite::future::or(async { Some(body.frame().await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        let data = match frame {
            None => {
                CoreStats::add(&api.stats.body_read_timeouts, 1);
                let mut r = error(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "timeout reading the request body: it did not arrive whole within body-read-timeout-ms ({} ms)",
                        timeout.as_millis()
                    ),
                );
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                return Err(r);
            }
            Some(None) => break,
            Some(Some(Err(e))) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("error reading body: {e}"),
                ))
            }
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers
            },
        };
        if collected.len() as u64 + data.len() as u64 > limit {
            return Err(too_large());
        }
        if !budget.take(data.len() as u64) {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many request bodies arriving on this core (max-pending-body-bytes-per-core); retry later",
            );
            set_retry_after(api, &mut r);
            r.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            return Err(r);
        }
        collected.extend_from_slice(&data);
    }
    let collected = collected.freeze();
    // An empty body is empty, whatever its encoding says (the Python client marks its
    // body-less POSTs gzip).
    if !gzip || collected.is_empty() {
        return Ok((collected, parts));
    }
    let decoded_limit = api.config.max_decompressed_body_bytes;
    let mut decoded =
        Vec::with_capacity((collected.len() * 4).min(crate::limits::BODY_RESERVE_MAX_BYTES));
    let mut decoder = flate2::read::GzDecoder::new(&collected[..]).take(decoded_limit + 1);
    if let Err(e) = decoder.read_to_end(&mut decoded) {
        return Err(error(StatusCode::BAD_REQUEST, &format!("gzip: {e}")));
    }
    if decoded.len() as u64 > decoded_limit {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "gzip body decompresses to more than max-decompressed-body-bytes ({decoded_limit} bytes)"
            ),
        ));
    }
    Ok((Bytes::from(decoded), parts))
}

/// `/write`: the body first (timed apart, `WriteBodyRead`: a slow client's time is its
/// own), then the write, timed under its consistency level. A write slot
/// (`max-concurrent-write-requests-per-core`) is taken only once the body is in, so
/// clients slow to send hold no slot and delay nobody else.
async fn write(api: &Rc<HttpService>, req: Request<Incoming>, principal: Principal) -> Resp {
    let params = query_params(req.uri().query().unwrap_or(""));
    write_with(api, req, principal, params).await
}

/// Whether `principal` may write to `database` (InfluxDB's `AuthorizeWrite`): `Err(None)`
/// when nobody is authenticated, `Err(Some(user))` for a user without WRITE or ALL.
fn may_write<'a>(
    meta: &crate::meta::MetaData,
    principal: &'a Principal,
    database: &str,
) -> Result<(), Option<&'a str>> {
    match principal {
        Principal::Open => Ok(()),
        Principal::Anonymous => Err(None),
        Principal::User(name) => meta
            .user(name)
            .is_some_and(|u| u.authorize_database(Privilege::Write, database))
            .then_some(())
            .ok_or(Some(name.as_str())),
    }
}

/// A 2.x `bucket` as InfluxDB 1.8 maps it: `db` (the default policy) or `db/rp`; the
/// error text when the policy after the slash is missing.
fn bucket_dbrp(bucket: &str) -> Result<(&str, &str), String> {
    match bucket.find('/') {
        None => Ok((bucket, "")),
        Some(i) if i == bucket.len() - 1 => Err(format!(
            "bucket name {} is missing retention policy",
            go_quote(bucket)
        )),
        Some(i) => Ok((&bucket[..i], &bucket[i + 1..])),
    }
}

/// `/api/v2/write` (InfluxDB 1.8's 2.x compatibility): `bucket=db[/rp]`, `org`
/// ignored, `precision` in 2.x's units (ns, us, ms, s); then as `/write`.
async fn write_v2(api: &Rc<HttpService>, req: Request<Incoming>, principal: Principal) -> Resp {
    let given = query_params(req.uri().query().unwrap_or(""));
    let precision = match given.get("precision").map_or("", |p| p.as_str()) {
        "ns" => "n",
        "us" => "u",
        p @ ("ms" | "s" | "") => p,
        other => {
            CoreStats::add(&api.stats.write_requests, 1);
            CoreStats::add(&api.stats.write_errors, 1);
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "invalid precision {} (use ns, us, ms or s)",
                    go_quote(other)
                ),
            );
        }
    };
    let (db, rp) = match bucket_dbrp(given.get("bucket").map_or("", |b| b.as_str())) {
        Ok(dbrp) => dbrp,
        Err(e) => {
            CoreStats::add(&api.stats.write_requests, 1);
            CoreStats::add(&api.stats.write_errors, 1);
            return error(StatusCode::NOT_FOUND, &e);
        }
    };
    let mut params = HashMap::new();
    params.insert("db".to_string(), db.to_string());
    params.insert("rp".to_string(), rp.to_string());
    params.insert("precision".to_string(), precision.to_string());
    write_with(api, req, principal, params).await
}

/// `/api/v2/delete` as InfluxDB 1.8: `bucket=db[/rp]`, a JSON body with `start` and
/// `stop` (RFC 3339) and an optional `predicate` of equalities joined by AND, where
/// `_measurement = 'm'` names the measurement; run as an InfluxQL DELETE.
async fn delete_v2(api: &Rc<HttpService>, req: Request<Incoming>, principal: Principal) -> Resp {
    use crate::influxql::ast::{Expr, Op};
    let params = query_params(req.uri().query().unwrap_or(""));
    let (db, rp) = match bucket_dbrp(params.get("bucket").map_or("", |b| b.as_str())) {
        Ok((db, rp)) => (db.to_string(), rp.to_string()),
        Err(e) => return error(StatusCode::NOT_FOUND, &format!("delete - bucket: {e}")),
    };
    {
        let meta = api.meta.snapshot();
        let Some(database) = meta.database(&db) else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("delete - database not found: {}", go_quote(&db)),
            );
        };
        if database.retention_policy(Some(&rp)).is_none() {
            return error(
                StatusCode::NOT_FOUND,
                &format!(
                    "delete - retention policy not found in {}: {}",
                    go_quote(&db),
                    go_quote(&rp)
                ),
            );
        }
        match may_write(&meta, &principal, &db) {
            Ok(()) => {}
            Err(None) => {
                return forbidden(
                    api,
                    &format!(
                        "delete - user is required to delete from database {}",
                        go_quote(&db)
                    ),
                )
            }
            Err(Some(name)) => {
                return forbidden(
                    api,
                    &format!(
                        "delete - {} user is not authorized to delete from {}",
                        go_quote(name),
                        go_quote(&db)
                    ),
                )
            }
        }
    }
    let body = match read_body(api, req, api.config.max_body_size_bytes).await {
        Ok((b, _)) => b,
        Err(resp) => return resp,
    };
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "delete - cannot parse request body: not a JSON object",
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("delete - cannot parse request body: {e}"),
            )
        }
    };
    let text = |key: &str| request.get(key).and_then(|v| v.as_str()).unwrap_or("");
    let (start, stop, predicate) = (text("start"), text("stop"), text("predicate"));
    let mut bounds = Vec::new();
    for (name, value) in [("start", start), ("stop", stop)] {
        if value.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("delete - {name} field in RFC3339Nano format required"),
            );
        }
        let Some((secs, nanos)) = crate::query::output::parse_rfc3339(value) else {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "delete - invalid format for {name} field {}, please use RFC3339Nano",
                    go_quote(value)
                ),
            );
        };
        bounds.push(crate::influxql::format::rfc3339_nano(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(nanos as i64),
        ));
    }
    let time_range = format!("time >= '{}' AND time < '{}'", bounds[0], bounds[1]);
    let full = if predicate.is_empty() {
        time_range
    } else {
        format!("{predicate} AND {time_range}")
    };
    let condition = match crate::influxql::parser::parse_expr(&full) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "delete - cannot parse predicate {}: {e}",
                    go_quote(predicate)
                ),
            )
        }
    };
    // `_measurement = m` terms name the measurements; only = and AND are allowed.
    let mut measurements = Vec::new();
    let mut rest = Vec::new();
    let mut terms = vec![condition];
    let refused = || {
        error(
            StatusCode::BAD_REQUEST,
            &format!(
                "delete - predicate only supports equality operators and conjunctions. database: {}, retention policy: {}, start: {}, stop: {}, predicate: {}",
                go_quote(&db), go_quote(&rp), go_quote(start), go_quote(stop), go_quote(predicate)
            ),
        )
    };
    while let Some(term) = terms.pop() {
        match term {
            Expr::Paren(inner) => terms.push(*inner),
            Expr::Binary {
                op: Op::And,
                lhs,
                rhs,
            } => {
                terms.push(*rhs);
                terms.push(*lhs);
            }
            Expr::Binary {
                op: Op::Or | Op::Neq | Op::EqRegex | Op::NeqRegex,
                ..
            } => return refused(),
            Expr::Binary {
                op: Op::Eq,
                lhs,
                rhs,
            } if matches!(&*lhs, Expr::VarRef { name, .. } if name == "_measurement") => match *rhs
            {
                Expr::Str(m) | Expr::VarRef { name: m, .. } => measurements.push(m),
                _ => return refused(),
            },
            other => rest.push(other),
        }
    }
    let mut statement = String::from("DELETE");
    if !measurements.is_empty() {
        let names: Vec<String> = measurements
            .iter()
            .map(|m| format!("\"{}\"", m.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        statement.push_str(&format!(" FROM {}", names.join(", ")));
    }
    let conditions: Vec<String> = rest.iter().map(|e| e.to_string()).collect();
    statement.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    let options = crate::query::QueryOptions {
        db: Some(db.clone()),
        rp: None,
        epoch: None,
        params: serde_json::Map::new(),
        chunked: false,
        read_only: false,
        principal: Principal::Open,
    };
    match api.executor.execute(&statement, &options).await {
        Ok((results, _)) => match results
            .iter()
            .find_map(|r| r.get("error").and_then(|e| e.as_str()))
        {
            None => no_content(),
            Some(e) => error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "delete - database: {}, retention policy: {}, start: {}, stop: {}, predicate: {}, error: {e}",
                    go_quote(&db), go_quote(&rp), go_quote(start), go_quote(stop), go_quote(predicate)
                ),
            ),
        },
        Err(e) => {
            let e = match e {
                QueryRefused::Parse(e) => e.to_string(),
                QueryRefused::Forbidden(e) => e,
            };
            error(
                StatusCode::BAD_REQUEST,
                &format!("delete - cannot parse predicate {}: {e}", go_quote(predicate)),
            )
        }
    }
}

/// The snappy protobuf body of a Prometheus remote storage request, decompressed;
/// `Err` is the answer (400, 413, ...).
async fn prom_body(api: &Rc<HttpService>, req: Request<Incoming>) -> Result<Vec<u8>, Resp> {
    let (body, _) = read_body(api, req, api.config.max_body_size_bytes).await?;
    prom::unsnappy(&body, api.config.max_decompressed_body_bytes).map_err(|e| match e {
        prom::PromError::TooLarge(_) => error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        e => error(StatusCode::BAD_REQUEST, &e.to_string()),
    })
}

/// `/api/v1/prom/write`: Prometheus remote write, mapped as InfluxDB maps it
/// (`prom`), then written as `/write` writes (millisecond precision).
async fn prom_write(api: &Rc<HttpService>, req: Request<Incoming>, principal: Principal) -> Resp {
    let mut params = query_params(req.uri().query().unwrap_or(""));
    let raw = match prom_body(api, req).await {
        Ok(raw) => raw,
        Err(resp) => {
            CoreStats::add(&api.stats.write_requests, 1);
            CoreStats::add(&api.stats.write_errors, 1);
            return resp;
        }
    };
    CoreStats::add(&api.stats.write_requests, 1);
    let series = match prom::decode_write_request(&raw) {
        Ok(s) => s,
        Err(e) => {
            CoreStats::add(&api.stats.write_errors, 1);
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let (lines, dropped) = prom::to_line_protocol(&series);
    if dropped > 0 {
        tracing::debug!(dropped, "prometheus write: NaN or infinite samples dropped");
    }
    params.insert("precision".into(), "ms".into());
    if lines.is_empty() {
        // Nothing left to write (InfluxDB answers 204 too).
        return no_content();
    }
    let start = std::time::Instant::now();
    let resp = write_request(api, &params, Bytes::from(lines), &principal).await;
    api.timers.record(Timer::WriteOne, start);
    resp
}

/// `/api/v1/prom/read`: each query as an InfluxQL SELECT (`prom`) run for the
/// request's user, the series answered as Prometheus time series.
async fn prom_read(api: &Rc<HttpService>, req: Request<Incoming>, principal: Principal) -> Resp {
    let params = query_params(req.uri().query().unwrap_or(""));
    let raw = match prom_body(api, req).await {
        Ok(raw) => raw,
        Err(resp) => return resp,
    };
    let queries = match prom::decode_read_request(&raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(db) = params.get("db").filter(|d| !d.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "database is required");
    };
    let rp = params.get("rp").map_or("", |r| r.as_str());
    let options = crate::query::QueryOptions {
        db: Some(db.clone()),
        rp: None,
        epoch: Some("ms".into()),
        params: serde_json::Map::new(),
        chunked: false,
        read_only: false,
        principal,
    };
    let mut answers = Vec::with_capacity(queries.len());
    for q in &queries {
        let text = prom::read_query_to_influxql(q, rp);
        match api.executor.execute(&text, &options).await {
            Ok((results, _)) => {
                if let Some(e) = results
                    .iter()
                    .find_map(|r| r.get("error").and_then(|e| e.as_str()))
                {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, e);
                }
                answers.push(prom::series_from_answer(&results));
            }
            Err(QueryRefused::Forbidden(e)) => {
                return forbidden(api, &format!("error authorizing query: {e}"))
            }
            Err(QueryRefused::Parse(e)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("error parsing query: {e}"),
                )
            }
        }
    }
    let body = prom::snappy(&prom::encode_read_response(&answers));
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    r.headers_mut()
        .insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    r
}

async fn write_with(
    api: &Rc<HttpService>,
    req: Request<Incoming>,
    principal: Principal,
    params: HashMap<String, String>,
) -> Resp {
    CoreStats::add(&api.stats.write_requests, 1);
    // Read the body before any other answer, so an early error (unknown database, bad
    // parameter) leaves the connection reusable instead of closing it mid-body.
    let receiving = std::time::Instant::now();
    let received = read_body(api, req, api.config.max_body_size_bytes).await;
    api.timers.record(Timer::WriteBodyRead, receiving);
    let body = match received {
        Ok((b, _)) => b,
        Err(resp) => {
            CoreStats::add(&api.stats.write_errors, 1);
            return resp;
        }
    };
    let start = std::time::Instant::now();
    let resp = write_request(api, &params, body, &principal).await;
    let timer = match params
        .get("consistency")
        .and_then(|c| Consistency::parse(c))
    {
        Some(Consistency::Any) => Timer::WriteAny,
        Some(Consistency::Quorum) => Timer::WriteQuorum,
        Some(Consistency::All) => Timer::WriteAll,
        Some(Consistency::One) | None => Timer::WriteOne,
    };
    api.timers.record(timer, start);
    resp
}

async fn write_request(
    api: &Rc<HttpService>,
    params: &HashMap<String, String>,
    body: Bytes,
    principal: &Principal,
) -> Resp {
    if api.in_flight_writes.get() >= api.config.max_concurrent_write_requests_per_core {
        CoreStats::add(&api.stats.write_rejected_busy, 1);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many write requests in progress on this core; retry later",
        );
        set_retry_after(api, &mut r);
        return r;
    }
    if let Some((bytes, limit)) = api.cache.over() {
        // InfluxDB's text; a 503 rather than its 500, so clients back off and retry.
        api.cache.reject();
        CoreStats::add(&api.stats.write_errors, 1);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("engine: cache-max-memory-size exceeded: ({bytes}/{limit})"),
        );
        set_retry_after(api, &mut r);
        return r;
    }
    let _writing = InFlight::new(&api.in_flight_writes);
    CoreStats::add(&api.stats.write_body_bytes, body.len() as u64);
    // As InfluxDB 1.8 (1.6 silently took an unknown precision for nanoseconds). `us`
    // and `µ` are accepted too, as the 2.x API spells microseconds.
    let precision_text = params.get("precision").map_or("", |s| s);
    let Some(precision) = Precision::parse(precision_text) else {
        CoreStats::add(&api.stats.write_errors, 1);
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid precision {} (use n, u, ms, s, m or h)",
                go_quote(precision_text)
            ),
        );
    };
    let database = params.get("db").cloned().unwrap_or_default();
    if database.is_empty() {
        return error(StatusCode::BAD_REQUEST, "database is required");
    }
    let Some(consistency) = Consistency::parse(params.get("consistency").map_or("", |s| s)) else {
        return error(StatusCode::BAD_REQUEST, "invalid consistency level");
    };
    let rp = params.get("rp").filter(|s| !s.is_empty()).cloned();
    if let Some(sync) = api
        .meta_sync
        .as_ref()
        .filter(|_| api.meta.snapshot().database(&database).is_none())
    {
        // Created on another node moments ago? One sync round before answering 404.
        sync.round().await;
    }
    let meta = api.meta.snapshot();
    if meta.database(&database).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("database not found: \"{database}\""),
        );
    }
    // InfluxDB's order: the database's existence, then the WRITE privilege.
    if let Err(user) = may_write(&meta, principal, &database) {
        CoreStats::add(&api.stats.write_errors, 1);
        let text = match user {
            None => format!(
                "user is required to write to database {}",
                go_quote(&database)
            ),
            Some(name) => format!(
                "{} user is not authorized to write to database {}",
                go_quote(name),
                go_quote(&database)
            ),
        };
        return forbidden(api, &text);
    }
    drop(meta);
    match api
        .points_writer
        .write(&database, rp.as_deref(), precision, consistency, body)
        .await
    {
        Ok(outcome) => write_response(api, &outcome),
        Err(e @ WriteError::DatabaseNotFound(_)) => {
            CoreStats::add(&api.stats.write_errors, 1);
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e @ WriteError::RetentionPolicyNotFound(_)) => {
            // InfluxDB 1.x answers this one with a 500; clients key on it.
            CoreStats::add(&api.stats.write_errors, 1);
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Err(e @ WriteError::Timeout { .. }) => {
            CoreStats::add(&api.stats.write_timeouts, 1);
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Err(e) if api.cache.over().is_some() => {
            // An owner's cache filled while this write was on its way: retry later.
            CoreStats::add(&api.stats.write_errors, 1);
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            set_retry_after(api, &mut r);
            r
        }
        Err(e @ WriteError::PartialWrite { .. }) => {
            CoreStats::add(&api.stats.write_partial, 1);
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Err(e) => {
            CoreStats::add(&api.stats.write_errors, 1);
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

/// Maps a write outcome to InfluxDB's answer.
fn write_response(api: &HttpService, outcome: &WriteOutcome) -> Resp {
    let parse_text = || {
        outcome
            .parse_errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    if !outcome.parse_errors.is_empty() && outcome.points_parsed == 0 {
        CoreStats::add(&api.stats.write_errors, 1);
        return error(StatusCode::BAD_REQUEST, &parse_text());
    }
    let mut reasons = Vec::new();
    if let Some(first) = outcome.rejected.first() {
        reasons.push(first.clone());
    }
    if outcome.beyond_retention > 0 {
        reasons.push("points beyond retention policy".to_string());
    }
    if !outcome.parse_errors.is_empty() {
        reasons.push(parse_text());
    }
    if reasons.is_empty() {
        CoreStats::add(&api.stats.write_ok, 1);
        return no_content();
    }
    CoreStats::add(&api.stats.write_errors, 1);
    error(
        StatusCode::BAD_REQUEST,
        &format!(
            "partial write: {} dropped={}",
            reasons.join("\n"),
            outcome.points_dropped()
        ),
    )
}

/// The shape of an answer, from the request's `Accept` and `pretty` (InfluxDB's
/// response writer: CSV, MessagePack, or JSON by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json { pretty: bool },
    Csv,
    Msgpack,
}

impl Format {
    fn of(headers: &hyper::HeaderMap, pretty: bool) -> Format {
        let accept = headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The first media type of the list that we write.
        for media in accept.split(',') {
            match media.split(';').next().unwrap_or("").trim() {
                "application/csv" | "text/csv" => return Format::Csv,
                "application/x-msgpack" => return Format::Msgpack,
                "application/json" => return Format::Json { pretty },
                _ => {}
            }
        }
        Format::Json { pretty }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json { .. } => "application/json",
            Format::Csv => "text/csv",
            Format::Msgpack => "application/x-msgpack",
        }
    }

    /// An error answer in this shape, with `X-Influxdb-Error` (but on a 401).
    fn error(self, status: StatusCode, message: &str) -> Resp {
        let body = match self {
            Format::Json { pretty } => json_text(&serde_json::json!({ "error": message }), pretty),
            Format::Csv => crate::query::output::csv_error(message),
            Format::Msgpack => crate::query::output::msgpack_error(message),
        };
        let mut r = json_bytes(status, body);
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type()));
        set_error_header(&mut r, message);
        r
    }
}

async fn query(api: &Rc<HttpService>, req: Request<Incoming>, principal: Principal) -> Resp {
    CoreStats::add(&api.stats.query_requests, 1);
    let mut params = query_params(req.uri().query().unwrap_or(""));
    // The shape asked for (`pretty` may still come in a form body).
    let asked = Format::of(req.headers(), false);
    let read_only = req.method() == Method::GET;
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if req.method() == Method::POST {
        let body = match read_body(api, req, api.config.max_body_size_bytes).await {
            Ok((b, _)) => b,
            Err(resp) => return resp,
        };
        if is_form {
            for (k, v) in query_params(&String::from_utf8_lossy(&body)) {
                params.insert(k, v);
            }
        }
    }
    let pretty = params.get("pretty").is_some_and(|v| v == "true");
    let format = match asked {
        Format::Json { .. } => Format::Json { pretty },
        other => other,
    };
    let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return format.error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    };
    let chunked = params.get("chunked").is_some_and(|v| v == "true");
    let chunk_size: usize = params
        .get("chunk_size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut options = crate::query::QueryOptions {
        db: params.get("db").filter(|s| !s.is_empty()).cloned(),
        rp: params.get("rp").filter(|s| !s.is_empty()).cloned(),
        epoch: params.get("epoch").filter(|s| !s.is_empty()).cloned(),
        params: serde_json::Map::new(),
        chunked,
        read_only,
        principal,
    };
    if format == Format::Csv && options.epoch.is_none() {
        // CSV times are integers: nanoseconds unless `epoch` says otherwise.
        options.epoch = Some("ns".into());
    }
    if let Some(p) = params.get("params").filter(|s| !s.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(p) {
            Ok(serde_json::Value::Object(m)) => options.params = m,
            other => {
                // Go's encoding/json words, decoding into map[string]interface{}.
                let why = match other {
                    Ok(serde_json::Value::Null) => None,
                    Ok(v) => Some(format!(
                        "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                        match v {
                            serde_json::Value::Array(_) => "array",
                            serde_json::Value::String(_) => "string",
                            serde_json::Value::Bool(_) => "bool",
                            _ => "number",
                        }
                    )),
                    Err(e) if e.is_eof() => Some("unexpected EOF".to_string()),
                    Err(e) => Some(format!("invalid JSON: {e}")),
                };
                if let Some(why) = why {
                    return format.error(
                        StatusCode::BAD_REQUEST,
                        &format!("error parsing query parameters: {why}"),
                    );
                }
            }
        }
    }
    let (results, selects) = match api.executor.execute(q, &options).await {
        Ok(answer) => answer,
        Err(QueryRefused::Parse(e)) => {
            return format.error(
                StatusCode::BAD_REQUEST,
                &format!("error parsing query: {e}"),
            )
        }
        Err(QueryRefused::Forbidden(e)) => {
            CoreStats::add(&api.stats.auth_forbidden, 1);
            return format.error(
                StatusCode::FORBIDDEN,
                &format!("error authorizing query: {e}"),
            );
        }
    };
    let body = match format {
        Format::Csv => crate::query::output::csv(&results),
        Format::Json { pretty } if chunked => {
            crate::query::output::chunked(&results, &selects, chunk_size, pretty)
        }
        // No statement at all (`;`): InfluxDB's answer has no `results`.
        Format::Json { pretty } if results.is_empty() => json_text(&serde_json::json!({}), pretty),
        Format::Json { pretty } => json_text(&serde_json::json!({ "results": results }), pretty),
        // Chunks in MessagePack: one object per chunk, back to back, as InfluxDB.
        Format::Msgpack if chunked => {
            crate::query::output::chunked_msgpack(&results, &selects, chunk_size)
        }
        Format::Msgpack => crate::query::output::msgpack(&results),
    };
    let mut r = json_bytes(StatusCode::OK, body);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

async fn debug_shards(api: &Rc<HttpService>) -> Resp {
    match api.node.shard_stats().await {
        Ok(per_core) => {
            let shards: Vec<serde_json::Value> = per_core
                .into_iter()
                .flat_map(|(core, stats)| {
                    stats.into_iter().map(move |s| {
                        let mut v = serde_json::to_value(s).expect("serialises");
                        v["core"] = core.into();
                        v
                    })
                })
                .collect();
            debug_json(serde_json::json!({ "shards": shards }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /debug/shard-dump?db=D[&rp=R][&measurement=M][&series=KEY][&start=NS][&end=NS]`:
/// the stored points, for tests and operators, before InfluxQL SELECT exists.
async fn debug_shard_dump(api: &Rc<HttpService>, req: &Request<Incoming>) -> Resp {
    let params = query_params(req.uri().query().unwrap_or(""));
    let Some(database) = params.get("db").filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "database is required");
    };
    let parse_ns = |key: &str, default: i64| -> Result<i64, String> {
        match params.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("invalid {key}: {v}")),
        }
    };
    let (start_ns, end_ns) = match (parse_ns("start", i64::MIN), parse_ns("end", i64::MAX)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let request = ReadRequest {
        database: database.clone(),
        retention_policy: params.get("rp").cloned(),
        measurement: params.get("measurement").map(|m| m.as_bytes().to_vec()),
        series_key: params.get("series").map(|m| m.as_bytes().to_vec()),
        start_ns,
        end_ns,
    };
    match api.node.read(&request).await {
        Ok(points) => {
            let rows: Vec<serde_json::Value> = points
                .into_iter()
                .map(|(shard, p)| {
                    serde_json::json!({
                        "shard": shard,
                        "series": p.series_key,
                        "field": p.field,
                        "time": p.timestamp,
                        "value": value_json(&p.value),
                    })
                })
                .collect();
            debug_json(serde_json::json!({ "points": rows }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn value_json(v: &crate::tsdb::shard::Value) -> serde_json::Value {
    use crate::tsdb::shard::Value;
    match v {
        Value::Float(x) => serde_json::json!(x),
        Value::Integer(x) => serde_json::json!(x),
        Value::Unsigned(x) => serde_json::json!(x),
        Value::Boolean(x) => serde_json::json!(x),
        Value::String(s) => serde_json::json!(String::from_utf8_lossy(s)),
    }
}

/// `/metrics`: Prometheus text format of the merged counters and histograms.
async fn prometheus(api: &Rc<HttpService>) -> Resp {
    let (snapshot, gauges) = match api.node.metrics().await {
        Ok(m) => m,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(metrics::prometheus_text(
        &snapshot, &gauges,
    ))));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `/debug/vars`: InfluxDB's expvar layout (`system`, `cmdline`, then one entry per
/// statistics group, `httpd:<bind>`, `write`, `queryExecutor`, ...), every core merged,
/// followed by ShardCore's own sections.
async fn debug_vars(api: &Rc<HttpService>) -> Resp {
    let (snapshot, gauges) = match api.node.metrics().await {
        Ok(m) => m,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let (_, started_at) = metrics::started();
    let now = std::time::SystemTime::now();
    let rfc3339 = |t: std::time::SystemTime| {
        let ns = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        crate::influxql::format::rfc3339_nano(ns)
    };
    let mut vars = serde_json::Map::new();
    vars.insert(
        "system".into(),
        serde_json::json!({
            "currentTime": rfc3339(now),
            "started": rfc3339(started_at),
            "uptime": gauges.uptime_seconds as u64,
        }),
    );
    vars.insert(
        "cmdline".into(),
        serde_json::json!(std::env::args().collect::<Vec<_>>()),
    );
    for group in metrics::stats_groups(&snapshot, &gauges, &api.http_addr.to_string()) {
        if group.name != "latency" && group.name != "hh_processor" {
            vars.insert(group.key(), group.to_json());
        }
    }
    let s = &snapshot.counters;
    let rest = serde_json::json!({
        "core": api.core,
        "cores": api.cores,
        "connectionsPerCore": api
            .connection_counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect::<Vec<_>>(),
        "latencyMicros": metrics::timers_json(&snapshot),
        "hintedHandoff": api.clustered.then(|| {
            snapshot
                .hinted_handoff
                .iter()
                .map(|(core, node, q)| {
                    let mut entry = crate::hh::node_processor::stats_json(&[(*node, q.clone())])[0].clone();
                    entry["core"] = serde_json::json!(core);
                    entry
                })
                .collect::<Vec<_>>()
        }),
        "cluster": {
            "nodeId": api.node_id,
            "remoteWritesServed": s.remote_writes_served,
            "writesRerouted": s.writes_rerouted,
            "rejectedConnections": s.cluster_rejected_connections,
            "mapReq": s.map_requests_served,
            "mapCursorPages": s.map_pages_from_cursor,
            "mapRescans": s.map_rescans,
            "mapCancels": s.map_cancels_received,
            "mapCursorsEvicted": s.map_cursors_evicted,
            "shardWriter": snapshot.shard_writer.map(|w| {
                serde_json::json!({
                    "writeReq": w.requests,
                    "writeReqBytes": w.bytes,
                    "writeFailures": w.failures,
                    "poolWaits": w.pool_waits,
                    "dials": w.dials,
                    "connectionsFailed": w.connections_failed,
                    "lateReplies": w.late_replies,
                    "inFlight": snapshot.shard_writer_in_flight,
                    "peakInFlight": w.peak_in_flight,
                    "rttMicros": snapshot.timer(Timer::ShardWriteRtt).map(|l| l.summary_json()),
                })
            }),
        },
    });
    if let serde_json::Value::Object(rest) = rest {
        vars.extend(rest);
    }
    json(StatusCode::OK, serde_json::Value::Object(vars))
}

#[cfg(test)]
mod steer_tests {
    use super::{query_database, query_params};

    proptest::proptest! {
        /// Request lines and query strings come from the network: no bytes panic them.
        #[test]
        fn arbitrary_request_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = query_database(&bytes);
            let _ = query_params(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = std::str::from_utf8(super::REFUSED_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[test]
    fn the_database_of_a_query_request_line() {
        assert_eq!(
            query_database(b"GET /query?q=SELECT+1&db=my%20db HTTP/1.1\r\nHost: x\r\n"),
            Some("my db".into())
        );
        assert_eq!(
            query_database(b"POST /query?db=telegraf HTTP/1.1\r\n"),
            Some("telegraf".into())
        );
        // A request line cut short by the peek still names its database.
        assert_eq!(query_database(b"GET /query?db=a&q=SEL"), Some("a".into()));
        for other in [
            &b"POST /write?db=telegraf HTTP/1.1\r\n"[..],
            b"GET /query?q=SHOW+DATABASES HTTP/1.1\r\n",
            b"GET /query?db= HTTP/1.1\r\n",
            b"GET /queryx?db=a HTTP/1.1\r\n",
            b"DELETE /query?db=a HTTP/1.1\r\n",
            b"\xff\xfe garbage",
            b"",
        ] {
            assert_eq!(query_database(other), None, "{other:?}");
        }
    }
}
