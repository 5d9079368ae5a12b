//! Graceful shutdown: stop accepting on a trigger, let the running connections
//! finish for at most a few seconds, then cut the rest.
//!
//! ```sh
//! cargo run --example graceful    # 127.0.0.1:8080; stops when stdin closes (Ctrl-D)
//! nc 127.0.0.1 8080               # an echo session; Ctrl-D ends it
//! ```
//!
//! Each connection is an echo session that lasts until the client closes its
//! side. Open a few with `nc`, then close the server's stdin: new clients are
//! refused at once, sessions you close (Ctrl-D in `nc`) within 5 seconds count
//! as drained, and those still open then are cut.

use std::cell::Cell;
use std::env;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Timeout};
use tokio_io::AsyncRead;

/// How long the running connections may take to finish after the signal.
const DRAIN: Duration = Duration::from_secs(5);

/// How many connections finished after the shutdown signal.
#[derive(Default)]
struct Counts {
    stopping: Cell<bool>,
    drained: Cell<usize>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = env::args().nth(1).unwrap_or("127.0.0.1:8080".to_string());
    let addr = addr.parse::<SocketAddr>().unwrap();

    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap();
    println!(
        "listening on {}; close stdin (Ctrl-D) to stop",
        listener.local_addr().unwrap()
    );
    let signal = stdin_closed().shared();

    let counts = Rc::new(Counts::default());
    let conn_counts = counts.clone();
    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(move |(socket, peer)| {
            let counts = conn_counts.clone();
            echo(socket).then(move |result| {
                match result {
                    Ok(bytes) => log::debug!("{}: echoed {} bytes", peer, bytes),
                    Err(e) => log::debug!("{}: {}", peer, e),
                }
                if counts.stopping.get() {
                    counts.drained.set(counts.drained.get() + 1);
                }
                Ok(())
            })
        })
        .listen(1000);
    let stats = server.stats();
    // Stops accepting on the signal, even with all 1000 slots taken; resolves
    // when the last running connection has finished.
    let drained = server.with_graceful_shutdown(signal.clone());

    let (on_signal, signal_stats) = (counts.clone(), stats.clone());
    handle.spawn(signal.clone().then(move |_| {
        on_signal.stopping.set(true);
        println!(
            "stopped accepting; draining {} connection(s) for at most {:?}",
            signal_stats.running(),
            DRAIN
        );
        Ok(())
    }));

    let timer_handle = handle.clone();
    let deadline = signal
        .then(move |_| Timeout::new(DRAIN, &timer_handle))
        .flatten()
        .map_err(|e| log::error!("drain timer failed: {}", e));

    // Whichever comes first: every connection finished, or the deadline. The
    // server future is dropped with the rest of `select`, which closes the
    // connections still open.
    let _ = core.run(drained.select(deadline));
    println!(
        "done: {} connection(s) drained, {} cut at the deadline",
        counts.drained.get(),
        stats.running()
    );
}

/// Greets, then echoes what the client sends until it closes its side.
fn echo(socket: TcpStream) -> impl Future<Item = u64, Error = io::Error> {
    tokio_io::io::write_all(socket, &b"echo; close your side (Ctrl-D) to finish\n"[..]).and_then(
        |(socket, _)| {
            let (reader, writer) = socket.split();
            tokio_io::io::copy(reader, writer).map(|(bytes, _, _)| bytes)
        },
    )
}

/// Resolves when standard input closes (or fails).
fn stdin_closed() -> impl Future<Item = (), Error = ()> {
    let (stop, stopped) = oneshot::channel::<()>();
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = stop.send(());
    });
    // A dropped sender counts as the signal too.
    stopped.map_err(|_| ())
}
