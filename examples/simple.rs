//! Greets every client with `hello` after half a second, with at most 1000
//! connections at once.
//!
//! ```sh
//! cargo run --example simple                  # listens on 127.0.0.1:8080
//! cargo run --example simple -- 0.0.0.0:9000  # or anywhere else
//! nc 127.0.0.1 8080                           # in another terminal
//! ```

use std::env;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{Future, IntoFuture, Stream};
use tk_listen::ListenExt;
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Handle, Timeout};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = env::args().nth(1).unwrap_or("127.0.0.1:8080".to_string());
    let addr = addr.parse::<SocketAddr>().unwrap();

    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap();
    println!("listening on {}", listener.local_addr().unwrap());

    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(move |(socket, peer)| greet(socket, peer, &handle))
        .listen(1000);

    // The error is `()`: only a broken event-loop timer produces it.
    core.run(server).unwrap();
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
        .map(move |_| log::info!("said hello to {}", peer))
        .map_err(move |e| log::error!("connection with {} failed: {}", peer, e))
}
