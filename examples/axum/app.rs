//! The server of `examples/axum`: a `Router` served by `axum::serve` on
//! tk-listen's `axum_listener`. `tests/axum.rs` runs this same module (with
//! `#[path]`).

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::Router;
use tk_listen::tokio1::{axum_listener, incoming, Drain, ListenExt};
use tk_listen::{AcceptQueue, Metrics};
use tokio::net::TcpListener;

#[path = "../common/metrics_tokio1.rs"]
mod metrics_tokio1;

/// The body of `GET /`.
pub const BODY: &str = "hello from tk-listen\n";

/// What the server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// At most this many connections open at once; others wait in the backlog.
    pub max_connections: usize,
    /// At most this many connections at once from one peer.
    pub per_peer: usize,
    /// After the shutdown signal, `serve` returns this long later at most.
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

/// Serves `listener` until `shutdown` resolves, then drains with axum's
/// graceful shutdown for at most `config.drain_deadline`. With
/// `metrics_listener`, the metrics page is served there too, by a `listen`
/// of its own (see `examples/common/metrics_tokio1.rs`).
pub async fn serve(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local_addr = listener.local_addr()?;
    let queue = AcceptQueue::of(&listener).ok(); // None on other systems than Linux
    let accepts = incoming(listener).sleep_on_error(Duration::from_millis(100));
    let accept = accepts.stats();
    let accepts = accepts.limit_per_peer(config.per_peer);
    let peers = accepts.stats();
    // axum spawns the connections itself: the cap is the stream's.
    let accepts = accepts.limit_open(config.max_connections);
    let open = accepts.stats();
    // Without `listen`, the page counts `limit_open`'s connections as the
    // server's (`tk_listen_connections_running` and the rest).
    let mut metrics = Metrics::new().accept(&accept).peers(&peers).open(&open);
    if let Some(queue) = &queue {
        metrics = metrics.queue(queue);
    }
    let app = router(metrics.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // One drain for axum's graceful shutdown, the metrics listener and the
    // deadline's start.
    let drain = Drain::new(async move {
        shutdown.await;
        log::info!("shutting down: no new connections, draining the open ones");
    });
    // No accept after the drain began, even before axum's loop hears of it.
    let accepts = drain.stop_accepting(accepts);
    let server = axum::serve(axum_listener(accepts, local_addr), app)
        .with_graceful_shutdown(drain.clone())
        .into_future();
    let scrapes = async {
        if let Some(listener) = metrics_listener {
            metrics_tokio1::serve_metrics(listener, metrics, drain.clone()).await
        }
    };
    let deadline = async {
        drain.clone().await;
        tokio::time::sleep(config.drain_deadline).await;
    };
    tokio::select! {
        (served, ()) = async { tokio::join!(server, scrapes) } => served,
        () = deadline => {
            log::info!(
                "drain deadline: dropping the {} connections still open after {:?}",
                open.open(),
                config.drain_deadline
            );
            Ok(())
        }
    }
}

/// `GET /`, `GET /delay/MS` and `GET /stats`.
fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/", get(|| async { BODY }))
        .route("/delay/{ms}", get(delay))
        .route(
            "/stats",
            get(move || std::future::ready(metrics_tokio1::page_response(&metrics))),
        )
}

async fn delay(Path(ms): Path<u64>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    log::debug!("{}: waiting {} ms", peer, ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("waited {} ms\n", ms)
}
