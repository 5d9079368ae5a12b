//! The `simple` server with a forced shutdown: when standard input closes
//! (Ctrl-D), the listener and every connection still running are dropped at
//! once.
//!
//! ```sh
//! cargo run --example shutdown    # listens on 127.0.0.1:8080
//! nc 127.0.0.1 8080               # in another terminal; then Ctrl-D in the first
//! ```

use std::env;
use std::io::Read;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use futures::sync::oneshot;
use futures::{Future, IntoFuture, Stream};
use tk_listen::ListenExt;
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Core, Timeout};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = env::args().nth(1).unwrap_or("127.0.0.1:8080".to_string());
    let addr = addr.parse::<SocketAddr>().unwrap();

    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap();
    println!(
        "listening on {}; Ctrl-D stops it at once",
        listener.local_addr().unwrap()
    );

    // The trigger: the end of stdin. A dropped sender counts too.
    let (stop, stopped) = oneshot::channel::<()>();
    thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = stop.send(());
    });

    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(move |(socket, peer)| {
            Timeout::new(Duration::from_millis(500), &handle)
                .into_future()
                .flatten()
                .and_then(move |()| tokio_io::io::write_all(socket, b"hello\n"))
                .map(|_| ())
                .map_err(move |e| log::error!("connection with {} failed: {}", peer, e))
        })
        .listen(1000);
    let stats = server.stats();

    // Whichever finishes first wins; the loser is dropped, and with the
    // server go the listening socket and every open connection.
    let stopped = stopped.then(|_| Ok(()));
    core.run(server.select(stopped).map(|_| ()).map_err(|_| ()))
        .unwrap();
    println!(
        "stopped: {} connections served, {} cut off",
        stats.finished(),
        stats.running()
    );
}
