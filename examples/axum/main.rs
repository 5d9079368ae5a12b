//! An axum `Router` served through tk-listen's `axum_listener`:
//! `sleep_on_error(100 ms)` instead of axum's fixed 1 s sleep on accept
//! errors, at most 1000 connections and `N` per peer, and axum's graceful
//! shutdown on `SIGTERM` or `SIGINT` (idle keep-alive connections closed at
//! once, requests in flight completed) with a 10 s drain deadline. `SIGHUP`
//! hands the socket over to a new process started from the same path with
//! the same arguments (`tk_listen::tokio1::Handover`, 10 s to report ready),
//! then drains the same way and exits 0; with `NOTIFY_SOCKET`, systemd hears
//! `READY=1` and the successor's `MAINPID`. `--metrics ADDR` serves the
//! metrics page of `/stats` on a listener of its own too, answered while
//! every slot is taken.
//!
//! ```sh
//! cargo run --features axum,handover,accept-queue --example axum -- [ADDR] [--metrics ADDR] [--per-peer N]
//! curl http://127.0.0.1:8080/                              # hello
//! curl --http2-prior-knowledge http://127.0.0.1:8080/      # the same over h2c
//! curl http://127.0.0.1:8080/delay/2000                    # answers after 2 s
//! curl http://127.0.0.1:8080/stats                         # Prometheus text
//! curl http://127.0.0.1:9090/metrics                       # with --metrics 127.0.0.1:9090
//! kill -HUP <pid>                                          # a new process serves
//! ```
//!
//! The server is in `app.rs`, which `tests/axum.rs` runs too.

mod app;
#[path = "../common/args.rs"]
mod args;
#[path = "../common/start_tokio1.rs"]
mod start_tokio1;

#[tokio::main]
async fn main() {
    let started = start_tokio1::start("axum");
    let config = app::config(started.args.per_peer);
    started.announce(config.max_connections);
    started.handover.ready(); // READY=1 to systemd, or to the predecessor
    let served = app::serve(started.listener, started.metrics, config, started.shutdown).await;
    if let Err(e) = served {
        eprintln!("server failed: {}", e);
        std::process::exit(1);
    }
}
