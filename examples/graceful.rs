//! Graceful shutdown: stop accepting on a trigger, let the running connections
//! finish for at most a few seconds, then cut the rest.
//!
//! ```sh
//! cargo run --example graceful                          # 127.0.0.1:8080, stops when stdin closes (Ctrl-D)
//! cargo run --example graceful -- 127.0.0.1:8080 5 30   # drain for up to 5 s, stop after 30 s
//! ```
//!
//! Each connection is an echo session that lasts until the client closes its
//! side. Open a few with `nc 127.0.0.1 8080`, then trigger the shutdown: new
//! clients are refused at once, sessions you close (Ctrl-D in `nc`) within the
//! drain time count as drained, and those still open at the deadline are cut.

use std::cell::Cell;
use std::env;
use std::io;
use std::net::SocketAddr;
use std::process;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Handle, Timeout};
use tokio_io::AsyncRead;

const USAGE: &str = "usage: graceful [ADDR] [DRAIN_SECONDS] [STOP_AFTER_SECONDS]\n\
    Stops accepting after STOP_AFTER_SECONDS, or when standard input closes\n\
    if that is not given; then lets connections finish for DRAIN_SECONDS\n\
    (default 5) and closes the rest.";

/// How many connections finished after the shutdown signal.
#[derive(Default)]
struct Counts {
    stopping: Cell<bool>,
    drained: Cell<usize>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", USAGE);
        return;
    }
    if args.len() > 3 {
        eprintln!("{}", USAGE);
        process::exit(2);
    }
    let addr: SocketAddr = parse(args.first(), "127.0.0.1:8080", "address");
    let drain = Duration::from_secs(parse(args.get(1), "5", "drain seconds"));
    let stop_after: Option<u64> = args.get(2).map(|s| parse(Some(s), "", "seconds"));

    let mut core = Core::new().expect("cannot create the event loop");
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });

    let signal = shutdown_signal(stop_after, &handle).shared();
    let addr = listener.local_addr().expect("the listener's address");
    match stop_after {
        Some(secs) => println!("listening on {}; stopping in {} s", addr, secs),
        None => println!("listening on {}; close stdin (Ctrl-D) to stop", addr),
    }

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
            drain
        );
        Ok(())
    }));

    let timer_handle = handle.clone();
    let deadline = signal
        .then(move |_| Timeout::new(drain, &timer_handle))
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

/// Resolves when it is time to stop: after `stop_after` seconds, or when
/// standard input closes.
fn shutdown_signal(
    stop_after: Option<u64>,
    handle: &Handle,
) -> Box<dyn Future<Item = (), Error = ()>> {
    match stop_after {
        Some(secs) => Box::new(
            Timeout::new(Duration::from_secs(secs), handle)
                .expect("cannot create the stop timer")
                .map_err(|e| log::error!("stop timer failed: {}", e)),
        ),
        None => {
            let (stop, stopped) = oneshot::channel::<()>();
            thread::spawn(move || {
                // Read and discard until EOF (or an error); then stop.
                let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
                let _ = stop.send(());
            });
            // A dropped sender counts as the signal too.
            Box::new(stopped.map_err(|_| ()))
        }
    }
}

fn parse<T: std::str::FromStr>(arg: Option<&String>, default: &str, what: &str) -> T {
    let text = arg.map(String::as_str).unwrap_or(default);
    text.parse().unwrap_or_else(|_| {
        eprintln!("invalid {}: {:?}\n{}", what, text, USAGE);
        process::exit(2);
    })
}
