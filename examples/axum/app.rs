//! The server of `examples/axum`: a `Router` served by `axum::serve` on
//! tk-listen's `axum_listener`. `tests/axum.rs` runs this same module (with
//! `#[path]`).

use std::fmt::Write;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::Router;
use tk_listen::tokio1::OpenStats;
use tk_listen::tokio1::{axum_listener, incoming, Drain, ListenExt};
use tk_listen::{AcceptStats, PeerStats};
use tokio::net::TcpListener;

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
/// graceful shutdown for at most `config.drain_deadline`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local_addr = listener.local_addr()?;
    let accepts = incoming(listener).sleep_on_error(Duration::from_millis(100));
    let accept = accepts.stats();
    let accepts = accepts.limit_per_peer(config.per_peer);
    let peers = accepts.stats();
    // axum spawns the connections itself: the cap is the stream's.
    let accepts = accepts.limit_open(config.max_connections);
    let open = accepts.stats();
    let stats = Stats {
        accept,
        peers,
        open: open.clone(),
    };
    let app = router(stats).into_make_service_with_connect_info::<SocketAddr>();
    // One drain for axum's graceful shutdown and the deadline's start.
    let drain = Drain::new(async move {
        shutdown.await;
        log::info!("shutting down: no new connections, draining the open ones");
    });
    let server =
        axum::serve(axum_listener(accepts, local_addr), app).with_graceful_shutdown(drain.clone());
    tokio::select! {
        served = server => served,
        () = async {
            drain.await;
            tokio::time::sleep(config.drain_deadline).await;
        } => {
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
fn router(stats: Stats) -> Router {
    Router::new()
        .route("/", get(|| async { BODY }))
        .route("/delay/{ms}", get(delay))
        .route("/stats", get(move || async move { stats_page(&stats) }))
}

async fn delay(Path(ms): Path<u64>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    log::debug!("{}: waiting {} ms", peer, ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("waited {} ms\n", ms)
}

/// The counters `GET /stats` shows.
#[derive(Clone, Debug)]
struct Stats {
    accept: AcceptStats,
    peers: PeerStats,
    open: OpenStats,
}

/// The body of `GET /stats`: the counters in the Prometheus text format.
fn stats_page(stats: &Stats) -> String {
    let (a, p, o) = (&stats.accept, &stats.peers, &stats.open);
    let mut page = String::new();
    for (name, value) in [
        ("tk_listen_accepted_total", a.accepted() as f64),
        ("tk_listen_accept_errors_skipped_total", a.skipped() as f64),
        ("tk_listen_accept_pauses_total", a.pauses() as f64),
        ("tk_listen_connections_max", o.max_open() as f64),
        ("tk_listen_connections_running", o.open() as f64),
        ("tk_listen_connections_started_total", o.accepted() as f64),
        ("tk_listen_max_per_peer", p.max_per_peer() as f64),
        ("tk_listen_peers", p.peers() as f64),
        ("tk_listen_peer_rejected_total", p.rejected() as f64),
    ] {
        let _ = writeln!(page, "{} {}", name, value);
    }
    page
}
