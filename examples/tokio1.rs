//! `examples/simple.rs` on tokio 1: a server that greets every client with
//! `hello` after half a second, with at most 1000 connections at once, using
//! every core. `SIGTERM` or Ctrl-C stops accepting and lets the running
//! connections finish (within 10 s); `SIGHUP` hands the socket over to a new process
//! started from the same path, then drains (`tk_listen::Handover`; the
//! socket may also come from systemd).
//!
//! ```sh
//! cargo run --features tokio1,handover --example tokio1              # listens on 127.0.0.1:8080
//! cargo run --features tokio1,handover --example tokio1 -- 0.0.0.0:9000 # or anywhere else
//! nc 127.0.0.1 8080                                         # in another terminal
//! RUST_LOG=debug cargo run --features tokio1,handover --example tokio1   # more detail
//! ```

use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use log::{error, info};
use tk_listen::tokio1::{incoming, Handover, ListenExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const USAGE: &str = "usage: tokio1 [ADDRESS:PORT]   (default 127.0.0.1:8080)";

#[tokio::main]
async fn main() {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{}", USAGE);
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = address_from_args();
    let handover = Handover::new().ready_timeout(Duration::from_secs(10));
    let listener = handover.listener(addr).and_then(TcpListener::from_std);
    let listener = listener.unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });
    let addr = listener.local_addr().unwrap_or(addr);
    let stop = handover.shutdown_signal(); // SIGHUP: hand over; SIGTERM, SIGINT: stop
    info!(
        "listening on {}; try: nc {} {}; Ctrl-C stops",
        addr,
        addr.ip(),
        addr.port()
    );

    let server = incoming(listener)
        .sleep_on_error(Duration::from_millis(100))
        .map(|(socket, peer)| greet(socket, peer))
        .listen(1000)
        .with_graceful_shutdown(stop)
        .drain_deadline(Duration::from_secs(10));
    let stats = server.stats();
    handover.ready();
    server.await;
    info!(
        "stopped: {} connections served, {} failed",
        stats.finished(),
        stats.failed()
    );
}

/// One connection: wait 500 ms, say hello, close.
async fn greet(mut socket: TcpStream, peer: SocketAddr) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    match socket.write_all(b"hello\n").await {
        Ok(()) => info!("said hello to {}", peer),
        Err(e) => error!("connection with {} failed: {}", peer, e),
    }
}

/// `[ADDRESS:PORT]`; exits 2 with the usage line on anything else.
fn address_from_args() -> SocketAddr {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [] => Ok(DEFAULT_ADDR.parse().unwrap()),
        [addr] => addr
            .parse()
            .map_err(|e| format!("{:?}: {} (expected ADDRESS:PORT)", addr, e)),
        [_, extra, ..] => Err(format!("unexpected argument {:?}", extra)),
    };
    parsed.unwrap_or_else(|e| {
        eprintln!("{}\n{}", e, USAGE);
        process::exit(2);
    })
}
