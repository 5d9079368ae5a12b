//! An HTTP server on hyper 1 and tk-listen's tokio 1 `listen(1000)`:
//! HTTP/1.1 with keep-alive and HTTP/2 cleartext (prior knowledge), at most
//! `N` connections per peer, `sleep_on_error(100 ms)`, and a graceful
//! shutdown on `SIGTERM` or `SIGINT` that closes idle keep-alive connections
//! at once and waits at most 10 s for the requests in flight. `SIGHUP` hands
//! the socket over to a new process started from the same path with the
//! same arguments (`tk_listen::tokio1::Handover`), which has 10 s to report
//! ready; this one then drains the same way and exits 0. The socket may also
//! come from systemd (`READY=1` and the successor's `MAINPID` go to
//! `NOTIFY_SOCKET`). `--metrics ADDR` serves the metrics page of `/stats`
//! on a listener of its own too, answered while every slot is taken.
//!
//! ```sh
//! cargo run --features tokio1,handover,accept-queue --example hyper -- [ADDR] [--metrics ADDR] [--per-peer N]
//! curl http://127.0.0.1:8080/                              # hello
//! curl --http2-prior-knowledge http://127.0.0.1:8080/      # the same over h2c
//! curl http://127.0.0.1:8080/delay/2000                    # answers after 2 s
//! curl http://127.0.0.1:8080/stats                         # Prometheus text
//! curl http://127.0.0.1:9090/metrics                       # with --metrics 127.0.0.1:9090
//! wrk -c 64 http://127.0.0.1:8080/                         # with --per-peer 64
//! kill -HUP <pid>                                          # a new process serves
//! ```
//!
//! The server is in `server.rs`, which `tests/hyper.rs` runs too.

#[path = "../common/args.rs"]
mod args;
mod server;
#[path = "../common/start_tokio1.rs"]
mod start_tokio1;

#[tokio::main]
async fn main() {
    let started = start_tokio1::start("hyper");
    let config = server::config(started.args.per_peer);
    started.announce(config.max_connections);
    started.handover.ready(); // READY=1 to systemd, or to the predecessor
    server::serve(started.listener, started.metrics, config, started.shutdown).await;
}
