//! An axum `Router` served through tk-listen's `axum_listener`:
//! `sleep_on_error(100 ms)` instead of axum's fixed 1 s sleep on accept
//! errors, at most 1000 connections and `N` per peer, and axum's graceful
//! shutdown on `SIGTERM` or `SIGINT` (idle keep-alive connections closed at
//! once, requests in flight completed) with a 10 s drain deadline. `SIGHUP`
//! hands the socket over to a new process started from the same path with
//! the same arguments (`tk_listen::tokio1::Handover`, 10 s to report ready),
//! then drains the same way and exits 0; with `NOTIFY_SOCKET`, systemd hears
//! `READY=1` and the successor's `MAINPID`.
//!
//! ```sh
//! cargo run --features axum,handover --example axum -- [ADDR] [--per-peer N]
//! curl http://127.0.0.1:8080/                              # hello
//! curl --http2-prior-knowledge http://127.0.0.1:8080/      # the same over h2c
//! curl http://127.0.0.1:8080/delay/2000                    # answers after 2 s
//! curl http://127.0.0.1:8080/stats                         # Prometheus text
//! kill -HUP <pid>                                          # a new process serves
//! ```
//!
//! The server is in `app.rs`, which `tests/axum.rs` runs too.

mod app;

use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use tk_listen::tokio1::Handover;
use tokio::net::TcpListener;

const USAGE: &str = "usage: axum [ADDR] [--per-peer N]   (default 127.0.0.1:8080, 8 per peer)";

#[tokio::main]
async fn main() {
    let (addr, per_peer) = parse_args(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{}\n{}", e, USAGE);
        process::exit(2);
    });
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let handover = Handover::new().ready_timeout(Duration::from_secs(10));
    // SIGHUP: hand over; SIGTERM, SIGINT: drain.
    let shutdown = handover.shutdown_signal();
    // The socket inherited for `addr` (systemd, a predecessor), or a new one
    // with a backlog of 1024, not tokio's 128.
    let listener = handover.listener(addr).and_then(TcpListener::from_std);
    let listener = listener.unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });
    let config = app::config(per_peer);
    println!(
        "listening on http://{}/ ({} connections at most, {} per peer)",
        listener.local_addr().unwrap_or(addr),
        config.max_connections,
        config.per_peer
    );
    handover.ready(); // READY=1 to systemd, or to the predecessor
    if let Err(e) = app::serve(listener, config, shutdown).await {
        eprintln!("server failed: {}", e);
        process::exit(1);
    }
}

/// `[ADDR] [--per-peer N]`, in any order.
fn parse_args(args: impl Iterator<Item = String>) -> Result<(SocketAddr, usize), String> {
    let (mut addr, mut per_peer) = (None, 8);
    let mut args = args;
    while let Some(arg) = args.next() {
        if arg == "--per-peer" {
            let n = args.next().ok_or("--per-peer needs a number")?;
            per_peer = n
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("--per-peer {}: not a number above 0", n))?;
        } else if addr.is_none() && !arg.starts_with('-') {
            addr = Some(
                arg.parse()
                    .map_err(|_| format!("{}: not an ADDR:PORT", arg))?,
            );
        } else {
            return Err(format!("unexpected argument {:?}", arg));
        }
    }
    Ok((addr.unwrap_or(([127, 0, 0, 1], 8080).into()), per_peer))
}
