//! The accept loops the benches compare, written once: `accept.rs` and
//! `multicore.rs` run them live on their own threads against client threads,
//! `callgrind.rs` runs them in batches for `benches/callgrind.sh`.
//!
//! Every server answers `hello\n` to each connection and closes it:
//!
//! * `raw_std`: a blocking `std::net::TcpListener` accept loop, the practical
//!   upper bound for one core;
//! * `raw_core`: tokio-core `incoming().for_each(..)` spawning one task per
//!   connection, with no limit and no error handling;
//! * `tk_listen`: `incoming().sleep_on_error(100 ms).map(..).listen(1000)`;
//! * `tk_listen_per_peer`: `tk_listen` with `.limit_per_peer(8)` after
//!   `sleep_on_error`, to price that adapter.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{self, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::Either;
use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Handle};
use tokio_io::AsyncWrite;

use super::Served;

/// `sleep_on_error`'s pause in every `tk_listen` server.
pub const PAUSE: Duration = Duration::from_millis(100);
/// `listen`'s limit of connections in flight in every `tk_listen` server.
pub const IN_FLIGHT: usize = 1000;
/// `limit_per_peer`'s cap in `tk_listen_per_peer`, as in `examples/http`.
pub const MAX_PER_PEER: usize = 8;
/// How long a client waits to connect or for a reply before giving up.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on the connections one client thread makes in one round, so
/// that every loop is bounded in count as well as in time.
const MAX_CONNECTIONS_PER_CLIENT: usize = 10_000_000;

/// One of the accept loops above.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    RawStd,
    RawCore,
    TkListen,
    TkListenPerPeer,
}

impl Variant {
    /// Every variant, for lookup by name.
    pub const ALL: [Variant; 4] = [
        Variant::RawStd,
        Variant::RawCore,
        Variant::TkListen,
        Variant::TkListenPerPeer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::RawStd => "raw_std",
            Variant::RawCore => "raw_core",
            Variant::TkListen => "tk_listen",
            Variant::TkListenPerPeer => "tk_listen_per_peer",
        }
    }

    /// The variant called `name`.
    ///
    /// # Panics
    ///
    /// Panics if no variant has that name.
    pub fn named(name: &str) -> Variant {
        *Variant::ALL
            .iter()
            .find(|v| v.name() == name.trim())
            .unwrap_or_else(|| {
                panic!(
                    "unknown variant {name:?}; use raw_std, raw_core, tk_listen or \
                     tk_listen_per_peer"
                )
            })
    }
}

/// What every tokio-core server does with a connection: write `hello\n`,
/// close, and count it as served.
#[derive(Clone, Default)]
pub struct Hello {
    served: Rc<Cell<usize>>,
}

impl Hello {
    /// The connections answered so far.
    pub fn served(&self) -> usize {
        self.served.get()
    }

    /// Answers `socket`.
    pub fn reply<S: AsyncWrite>(&self, socket: S) -> impl Future<Item = (), Error = ()> {
        let served = self.served.clone();
        tokio_io::io::write_all(socket, b"hello\n")
            .map(move |_| served.set(served.get() + 1))
            .map_err(|_| ())
    }
}

/// The tokio-core server `variant` (not `raw_std`) on `connections`, usually
/// `listener.incoming()`; it ends when `connections` does.
///
/// # Panics
///
/// Panics for `raw_std`, which is a blocking loop of its own.
pub fn core_server<C>(
    variant: Variant,
    connections: C,
    handle: &Handle,
    hello: Hello,
) -> impl Future<Item = (), Error = ()>
where
    C: Stream<Item = (TcpStream, SocketAddr), Error = io::Error>,
{
    match variant {
        Variant::RawCore => {
            let spawner = handle.clone();
            Either::A(
                connections
                    .for_each(move |(socket, _)| {
                        spawner.spawn(hello.reply(socket));
                        Ok(())
                    })
                    .map_err(|_| ()),
            )
        }
        Variant::TkListen => Either::B(Either::A(
            connections
                .sleep_on_error(PAUSE, handle)
                .map(move |(socket, _)| hello.reply(socket))
                .listen(IN_FLIGHT),
        )),
        Variant::TkListenPerPeer => Either::B(Either::B(
            connections
                .sleep_on_error(PAUSE, handle)
                .limit_per_peer(MAX_PER_PEER)
                .map(move |(connection, _)| hello.reply(connection))
                .listen(IN_FLIGHT),
        )),
        Variant::RawStd => panic!("raw_std is a blocking loop, not a tokio-core server"),
    }
}

/// A server running on threads of its own; stopping it returns the CPU time
/// its threads used while serving.
pub struct Server {
    pub addr: SocketAddr,
    stop: Box<dyn FnOnce() -> Duration>,
}

impl Server {
    /// A server from its address and a function that stops it and returns
    /// its CPU time.
    pub fn new(addr: SocketAddr, stop: impl FnOnce() -> Duration + 'static) -> Server {
        Server {
            addr,
            stop: Box::new(stop),
        }
    }

    /// `variant` on 127.0.0.1, on a thread of its own.
    pub fn start(variant: Variant) -> Server {
        match variant {
            Variant::RawStd => start_std_server(),
            _ => Server::start_core(variant, loopback_listener()),
        }
    }

    /// The tokio-core server `variant` on a thread of its own, with its own
    /// `Core`, accepting from `socket`.
    pub fn start_core(variant: Variant, socket: net::TcpListener) -> Server {
        let addr = socket.local_addr().expect("listener address");
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let mut core = Core::new().expect("event loop");
            let handle = core.handle();
            let listener =
                TcpListener::from_listener(socket, &addr, &handle).expect("register the listener");
            ready_tx.send(()).unwrap();
            let stop = stop_rx.then(|_| Ok::<(), ()>(()));
            let cpu_before = super::thread_cpu();
            let server = core_server(variant, listener.incoming(), &handle, Hello::default());
            let _ = core.run(server.select(stop));
            super::thread_cpu() - cpu_before
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server thread did not start");
        Server::new(addr, move || {
            let _ = stop_tx.send(());
            thread.join().expect("server thread panicked")
        })
    }

    /// Stops the server; returns the CPU time its threads used.
    pub fn stop(self) -> Duration {
        (self.stop)()
    }
}

/// A listening socket on 127.0.0.1, any port, set up as tokio-core's
/// `TcpListener::bind` does it (`SO_REUSEADDR`, a backlog of 1024).
pub fn loopback_listener() -> net::TcpListener {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.bind(&any_port.into()).expect("bind 127.0.0.1:0");
    socket.listen(1024).expect("listen");
    socket.into()
}

fn start_std_server() -> Server {
    let listener = net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    let thread = thread::spawn(move || {
        let cpu_before = super::thread_cpu();
        for _ in 0..usize::MAX {
            let accepted = listener.accept();
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Ok((mut socket, _)) = accepted {
                let _ = socket.write_all(b"hello\n");
            }
        }
        super::thread_cpu() - cpu_before
    });
    Server::new(addr, move || {
        stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so that it sees the flag.
        let _ = net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT);
        thread.join().expect("server thread panicked")
    })
}

/// What one round of one server measured.
pub struct Round {
    pub served: Served,
    pub errors: usize,
}

/// Runs the servers that `start` makes, one round each in turn
/// (A B C, C B A, .., see [`round_order`](super::round_order)), `rounds`
/// times, so that a burst of noise from other processes hits all of them
/// alike. Each round, `clients` threads connect,
/// read to EOF and start over for `round_time`. Prints every round; returns
/// the rounds of each server, in the order of `labels`.
pub fn interleaved_rounds(
    labels: &[String],
    rounds: usize,
    round_time: Duration,
    clients: usize,
    mut start: impl FnMut(usize) -> Server,
) -> Vec<Vec<Round>> {
    let mut results: Vec<Vec<Round>> = labels.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for i in super::round_order(round, labels.len()) {
            let label = &labels[i];
            let r = run_round(start(i), clients, round_time);
            println!(
                "  round {round} {label:<18} {:>8.0} conn/s  {:.4} CPU-s/1000 conns  \
                 ({} conns, {} errors)",
                r.served.per_second(),
                r.served.cpu_per_1000(),
                r.served.connections,
                r.errors
            );
            results[i].push(r);
        }
    }
    results
}

/// The median connections/s and server CPU-s per 1000 connections of
/// `rounds`.
pub fn medians(rounds: &[Round]) -> (f64, f64) {
    let rates: Vec<f64> = rounds.iter().map(|r| r.served.per_second()).collect();
    let cpus: Vec<f64> = rounds.iter().map(|r| r.served.cpu_per_1000()).collect();
    (super::median(&rates), super::median(&cpus))
}

/// The median over rounds of `a`'s connections/s divided by `b`'s in the same
/// round: adjacent in time, so less noisy than a ratio of medians.
pub fn median_ratio(a: &[Round], b: &[Round]) -> f64 {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.served.per_second() / y.served.per_second())
        .collect();
    super::median(&ratios)
}

fn run_round(server: Server, clients: usize, round_time: Duration) -> Round {
    let addr = server.addr;
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                client_loop(addr, Instant::now() + round_time)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let (mut connections, mut errors) = (0, 0);
    for t in threads {
        let (ok, failed) = t.join().expect("client thread panicked");
        connections += ok;
        errors += failed;
    }
    let elapsed = began.elapsed();
    let server_cpu = server.stop();
    Round {
        served: Served {
            connections,
            elapsed,
            server_cpu,
        },
        errors,
    }
}

/// Connects, reads to EOF and starts over until `deadline`; returns the
/// number of good replies and of failures.
fn client_loop(addr: SocketAddr, deadline: Instant) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    let mut reply = Vec::with_capacity(16);
    for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
        if Instant::now() >= deadline {
            break;
        }
        reply.clear();
        let result = net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).and_then(|mut s| {
            s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            s.read_to_end(&mut reply)
        });
        match result {
            Ok(_) if reply == b"hello\n" => ok += 1,
            _ => failed += 1,
        }
    }
    (ok, failed)
}
