//! A server that greets every client with `hello` after half a second, with
//! at most 1000 connections at once.
//!
//! ```sh
//! cargo run --example simple              # listens on 127.0.0.1:8080
//! cargo run --example simple 0.0.0.0:9000 # or anywhere else
//! nc 127.0.0.1 8080                       # in another terminal
//! RUST_LOG=debug cargo run --example simple   # more detail
//! ```

use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use futures::{Future, IntoFuture, Stream};
use log::{error, info};
use tk_listen::ListenExt;
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Handle, Timeout};

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const USAGE: &str = "usage: simple [ADDRESS:PORT]   (default 127.0.0.1:8080)";

fn main() {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{}", USAGE);
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = address_from_args();
    let mut core = Core::new().expect("cannot create the event loop");
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });
    info!(
        "listening on {}; try: nc {} {}",
        addr,
        addr.ip(),
        addr.port()
    );

    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(move |(socket, peer)| greet(socket, peer, &handle))
        .listen(1000);

    core.run(server).expect("the accept stream never fails");
}

/// One connection: wait 500 ms, say hello, close.
fn greet(
    socket: TcpStream,
    peer: SocketAddr,
    handle: &Handle,
) -> impl Future<Item = (), Error = ()> {
    Timeout::new(Duration::from_millis(500), handle)
        .into_future()
        .flatten()
        .and_then(move |()| tokio_io::io::write_all(socket, b"hello\n"))
        .map(move |_| info!("said hello to {}", peer))
        .map_err(move |e| error!("connection with {} failed: {}", peer, e))
}

fn address_from_args() -> SocketAddr {
    let arg = std::env::args().nth(1);
    let text = arg.as_deref().unwrap_or(DEFAULT_ADDR);
    text.parse().unwrap_or_else(|e| {
        eprintln!(
            "usage: simple [ADDRESS:PORT] (default {}): {:?}: {}",
            DEFAULT_ADDR, text, e
        );
        process::exit(2);
    })
}
