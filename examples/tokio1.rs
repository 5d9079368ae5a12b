//! `examples/simple.rs` on tokio 1: a server that greets every client with
//! `hello` after half a second, with at most 1000 connections at once, using
//! every core. Ctrl-C stops accepting and lets the running connections
//! finish.
//!
//! ```sh
//! cargo run --features tokio1 --example tokio1              # listens on 127.0.0.1:8080
//! cargo run --features tokio1 --example tokio1 0.0.0.0:9000 # or anywhere else
//! nc 127.0.0.1 8080                                         # in another terminal
//! RUST_LOG=debug cargo run --features tokio1 --example tokio1   # more detail
//! ```

use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use log::{error, info};
use tk_listen::tokio1::{bind, incoming, ListenExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
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
    let listener = bind(addr).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });
    let addr = listener.local_addr().unwrap_or(addr);
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
        .with_graceful_shutdown(tokio::signal::ctrl_c());
    let stats = server.stats();
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

fn address_from_args() -> SocketAddr {
    let arg = std::env::args().nth(1);
    let text = arg.as_deref().unwrap_or(DEFAULT_ADDR);
    text.parse().unwrap_or_else(|e| {
        eprintln!(
            "usage: tokio1 [ADDRESS:PORT] (default {}): {:?}: {}",
            DEFAULT_ADDR, text, e
        );
        process::exit(2);
    })
}
