//! The `simple` server with a forced shutdown: when the trigger fires, the
//! listener and every connection still running are dropped at once.
//!
//! ```sh
//! cargo run --example shutdown                      # stops when stdin closes (Ctrl-D)
//! cargo run --example shutdown -- 127.0.0.1:8080 10 # stops after 10 seconds
//! nc 127.0.0.1 8080                                 # in another terminal
//! ```

use std::cell::Cell;
use std::io::Read;
use std::net::SocketAddr;
use std::process;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use futures::future::Either;
use futures::sync::oneshot;
use futures::{Future, IntoFuture, Stream};
use log::{error, info};
use tk_listen::ListenExt;
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Core, Timeout};

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const USAGE: &str = "usage: shutdown [ADDRESS:PORT [SECONDS]]";

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{}", USAGE);
        return;
    }
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = parse_or_exit(args.next().as_deref().unwrap_or(DEFAULT_ADDR));
    let seconds: Option<u64> = args.next().map(|s| parse_or_exit(&s));

    let mut core = Core::new().expect("cannot create the event loop");
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });

    // The trigger: a timer, or the end of stdin, both ending in a oneshot.
    let (stop, stopped) = oneshot::channel::<&'static str>();
    let trigger = match seconds {
        Some(seconds) => {
            info!("listening on {}; stopping in {} s", addr, seconds);
            let timer = Timeout::new(Duration::from_secs(seconds), &handle)
                .into_future()
                .flatten();
            handle.spawn(
                timer
                    .then(move |_| stop.send("the timer fired"))
                    .map_err(|_| ()),
            );
            stopped
        }
        None => {
            info!("listening on {}; stopping when stdin closes (Ctrl-D)", addr);
            thread::spawn(move || {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
                let _ = stop.send("stdin closed");
            });
            stopped
        }
    };

    let running = Rc::new(Cell::new(0usize));
    let served = Rc::new(Cell::new(0usize));
    let (counting, served_count) = (running.clone(), served.clone());
    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(move |(socket, peer)| {
            counting.set(counting.get() + 1);
            let (running, served) = (counting.clone(), served_count.clone());
            Timeout::new(Duration::from_millis(500), &handle)
                .into_future()
                .flatten()
                .and_then(move |()| tokio_io::io::write_all(socket, b"hello\n"))
                .then(move |result| {
                    running.set(running.get() - 1);
                    match result {
                        Ok(_) => served.set(served.get() + 1),
                        Err(e) => error!("connection with {} failed: {}", peer, e),
                    }
                    Ok(())
                })
        })
        .listen(1000);

    // Whichever finishes first wins; the loser is dropped, and with the
    // server go the listening socket and every open connection.
    let reason = match core.run(server.select2(trigger)) {
        Ok(Either::A(_)) | Err(Either::A(_)) => "the server ended by itself",
        Ok(Either::B((reason, _))) => reason,
        Err(Either::B(_)) => "the trigger was dropped",
    };
    println!(
        "stopped: {}; {} connections served, {} cut off",
        reason,
        served.get(),
        running.get()
    );
}

fn parse_or_exit<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Display,
{
    text.parse().unwrap_or_else(|e| {
        eprintln!("{}: {:?}: {}", USAGE, text, e);
        process::exit(2);
    })
}
