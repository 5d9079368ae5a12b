//! The server of `examples/hyper`: hyper 1 through hyper-util's auto
//! builder (HTTP/1.1 with keep-alive, and HTTP/2 over cleartext with prior
//! knowledge) on tk-listen's tokio 1 `listen`. `tests/hyper.rs` runs this same
//! module (with `#[path]`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tk_listen::tokio1::{incoming, Drain, ListenExt, PeerConnection};
use tk_listen::{AcceptQueue, Metrics};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

#[path = "../common/metrics_tokio1.rs"]
mod metrics_tokio1;

/// The body of `GET /`.
pub const BODY: &str = "hello from tk-listen\n";

/// What the server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// At most this many connections at once; others wait in the backlog.
    pub max_connections: usize,
    /// At most this many connections at once from one peer.
    pub per_peer: usize,
    /// After the shutdown signal, connections still open this long later
    /// are dropped.
    pub drain_deadline: Duration,
}

/// The contract's settings, with `per_peer` connections per peer.
pub fn config(per_peer: usize) -> Config {
    Config {
        max_connections: 1000,
        per_peer,
        drain_deadline: Duration::from_secs(10),
    }
}

/// Serves `listener` until `shutdown` resolves, then drains: the listener
/// closes, idle keep-alive connections close at once (h2: a GOAWAY), the
/// requests in flight complete; the connections still open
/// `config.drain_deadline` after the signal are dropped. With
/// `metrics_listener`, the metrics page is served there too, by a `listen`
/// of its own (see `examples/common/metrics_tokio1.rs`).
pub async fn serve(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let queue = AcceptQueue::of(&listener).ok(); // None on other systems than Linux
    let accepts = incoming(listener).sleep_on_error(Duration::from_millis(100));
    let accept = accepts.stats();
    let accepts = accepts.limit_per_peer(config.per_peer);
    let peers = accepts.stats();
    let drain = Drain::new(async move {
        shutdown.await;
        log::info!("shutting down: no new connections, draining the open ones");
    });
    let watching = drain.clone();
    // `/stats` needs the server's counters, which exist once it is built.
    let page = Arc::new(OnceLock::new());
    let conn_page = page.clone();
    let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let server = accepts
        .map(move |(socket, peer)| {
            let page = conn_page.clone();
            connection(socket, peer, http.clone(), page, watching.clone())
        })
        .listen(config.max_connections)
        .with_graceful_shutdown(drain.clone())
        .drain_deadline(config.drain_deadline);
    let mut metrics = Metrics::new()
        .listen(&server.stats())
        .accept(&accept)
        .peers(&peers);
    if let Some(queue) = &queue {
        metrics = metrics.queue(queue);
    }
    let _ = page.set(metrics.clone());
    match metrics_listener {
        None => server.await,
        Some(listener) => {
            let scrapes = metrics_tokio1::serve_metrics(listener, metrics, drain);
            tokio::join!(server, scrapes);
        }
    }
}

/// The metrics page of `GET /stats`, once the server is built.
pub(crate) type Page = Arc<OnceLock<Metrics>>;

/// One connection's whole life: HTTP/1.1 or h2c requests until the client
/// closes, or until the drain begins and the connection is idle.
async fn connection(
    socket: PeerConnection<TcpStream>,
    peer: SocketAddr,
    http: Arc<auto::Builder<TokioExecutor>>,
    page: Page,
    drain: Drain,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let service = service_fn(move |request| respond(request, peer, page.clone()));
    let conn = http.serve_connection(TokioIo::new(socket), service);
    drain
        .watch(conn, |conn| conn.graceful_shutdown())
        .await
        .inspect_err(|e| log::debug!("{}: {}", peer, e))
}

/// The answer to one request (`benches/http.rs` serves it on a plain loop).
pub(crate) async fn respond(
    request: Request<Incoming>,
    peer: SocketAddr,
    page: Page,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (status, body) = match (request.method(), path) {
        (&Method::GET, "/") => (StatusCode::OK, BODY.to_string()),
        (&Method::GET, "/stats") => match page.get() {
            Some(page) => return Ok(metrics_tokio1::page_response(page)),
            None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string()),
        },
        (&Method::GET, _) if path.starts_with("/delay/") => match path["/delay/".len()..].parse() {
            Ok(ms) => {
                log::debug!("{}: waiting {} ms", peer, ms);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (StatusCode::OK, format!("waited {} ms\n", ms))
            }
            Err(_) => (
                StatusCode::BAD_REQUEST,
                "usage: GET /delay/MS\n".to_string(),
            ),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}
