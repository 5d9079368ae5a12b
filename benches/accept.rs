//! Loopback connection throughput: `tk_listen` against the loops people write
//! by hand.
//!
//! Three servers, each on its own thread, answer `hello\n` and close:
//!
//! * `raw_std`: a blocking `std::net::TcpListener` accept loop, the practical
//!   upper bound for one core;
//! * `raw_core`: tokio-core `incoming().for_each(..)` spawning one task per
//!   connection, with no limit and no error handling;
//! * `tk_listen`: `incoming().sleep_on_error(100 ms).map(..).listen(1000)`.
//!
//! A fourth, `tk_listen_per_peer`, is `tk_listen` with `.limit_per_peer(8)`
//! after `sleep_on_error`; it runs only when named in `TK_BENCH_VARIANTS` or
//! `TK_ACCEPT_BATCH` (persistent mode only), to price that adapter.
//!
//! Client threads connect, read to EOF and start over, for a fixed time. The
//! variants run in interleaved rounds (A B C A B C ..) so that a burst of
//! noise from other processes hits all of them alike; per variant the bench
//! prints the median connections/s and the median server-thread CPU seconds
//! per 1000 connections, then the ratios.
//!
//! Settings (environment): `TK_BENCH_ROUNDS` (default 5), `TK_BENCH_ROUND_MS`
//! (default 2000), `TK_BENCH_CLIENTS` (client threads, default 4),
//! `TK_BENCH_VARIANTS` (comma-separated subset, e.g. `raw_core,tk_listen`). With one variant and one
//! round, the server is the second thread started, which is how
//! `valgrind --tool=callgrind --separate-threads=yes` numbers it (`-02`).
//!
//! Then `multicore`: the `tk_listen` server on 1 thread against N threads
//! (default: the number of CPUs, `TK_BENCH_THREADS`), each thread with its own
//! `Core` and its own `SO_REUSEPORT` listener on one address, as in
//! `examples/multicore/main.rs`; also in interleaved rounds. `TK_BENCH_MULTICORE=0`
//! skips it.
//!
//! Run: `cargo bench --bench accept`
//!
//! For instruction counts that load doesn't change, `TK_ACCEPT_BATCH=<variant>`
//! runs one variant without client threads: `TK_ACCEPT_BATCHES` (default 50)
//! times, it fills a fresh listener's backlog with `TK_ACCEPT_BATCH_SIZE`
//! (default 100) connected clients and
//! then lets the server accept and answer them all on the same thread, inside
//! a function named `serve_batch_<variant>`. `benches/callgrind.sh` counts the
//! instructions of those functions only, per connection. That includes
//! building and dropping the server once per batch; with
//! `TK_ACCEPT_PERSISTENT=1` (`raw_core` or `tk_listen`) the server is built
//! once and each batch only turns the event loop until it is served, in
//! `turn_until_served`, which isolates the cost per turn of the loop from the
//! cost per server. `TK_ACCEPT_PEERS=<k>` (default 1) has the batch's
//! clients connect from k loopback addresses in turn (127.0.0.2, 127.0.0.3,
//! ..., bound before connecting; Linux accepts all of 127.0.0.0/8), so that
//! `tk_listen_per_peer` sees k peers: with k at least the batch size, every
//! connection adds its peer to the table and removes it again.

mod support;

#[path = "../examples/multicore/listener.rs"]
mod listener;

use std::io::{Read, Write};
use std::net::{self, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

/// Upper bound on the connections one client thread makes in one round, so
/// that every loop is bounded in count as well as in time.
const MAX_CONNECTIONS_PER_CLIENT: usize = 10_000_000;
/// How long a client waits for a reply before counting an error.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    RawStd,
    RawCore,
    TkListen,
    TkListenPerPeer,
}

/// The variants run by default.
const VARIANTS: [Variant; 3] = [Variant::RawStd, Variant::RawCore, Variant::TkListen];
/// Every variant, for lookup by name.
const ALL_VARIANTS: [Variant; 4] = [
    Variant::RawStd,
    Variant::RawCore,
    Variant::TkListen,
    Variant::TkListenPerPeer,
];
/// `limit_per_peer`'s cap in `tk_listen_per_peer`, as in `examples/http`.
const MAX_PER_PEER: usize = 8;

/// The variants named in `TK_BENCH_VARIANTS` (comma-separated), or all.
fn chosen_variants() -> Vec<Variant> {
    match std::env::var("TK_BENCH_VARIANTS") {
        Ok(names) => names
            .split(',')
            .map(|name| {
                *ALL_VARIANTS
                    .iter()
                    .find(|v| v.name() == name.trim())
                    .unwrap_or_else(|| {
                        panic!(
                            "unknown variant {name:?}; use raw_std, raw_core, tk_listen, \
                             tk_listen_per_peer"
                        )
                    })
            })
            .collect(),
        Err(_) => VARIANTS.to_vec(),
    }
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::RawStd => "raw_std",
            Variant::RawCore => "raw_core",
            Variant::TkListen => "tk_listen",
            Variant::TkListenPerPeer => "tk_listen_per_peer",
        }
    }
}

/// What one round of one variant measured.
struct Round {
    served: support::Served,
    errors: usize,
}

fn main() {
    if let Ok(name) = std::env::var("TK_ACCEPT_BATCH") {
        batch_mode(&name);
        return;
    }
    let rounds = support::env_usize("TK_BENCH_ROUNDS", 5).max(1);
    let round_time = support::env_millis("TK_BENCH_ROUND_MS", 2000);
    let clients = support::env_usize("TK_BENCH_CLIENTS", 4).max(1);
    let variants = chosen_variants();
    println!(
        "accept: {rounds} rounds x {} variants, {:?} each, {clients} client threads",
        variants.len(),
        round_time
    );

    let mut results: Vec<Vec<Round>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, &variant) in variants.iter().enumerate() {
            let r = run_round(start_server(variant), clients, round_time);
            println!(
                "  round {round} {:<9} {:>8.0} conn/s  {:.4} CPU-s/1000 conns  ({} conns, {} errors)",
                variant.name(),
                r.served.per_second(),
                r.served.cpu_per_1000(),
                r.served.connections,
                r.errors
            );
            results[i].push(r);
        }
    }

    println!();
    println!(
        "{:<9} {:>14} {:>20} {:>22}",
        "variant", "median conn/s", "(min..max)", "median CPU-s/1000 conn"
    );
    let mut rate = Vec::new();
    let mut cpu = Vec::new();
    for (variant, rounds) in variants.iter().zip(&results) {
        let rates: Vec<f64> = rounds.iter().map(|r| r.served.per_second()).collect();
        let cpus: Vec<f64> = rounds.iter().map(|r| r.served.cpu_per_1000()).collect();
        let (lo, hi) = support::min_max(&rates);
        rate.push(support::median(&rates));
        cpu.push(support::median(&cpus));
        println!(
            "{:<9} {:>14.0} {:>20} {:>22.4}",
            variant.name(),
            rate[rate.len() - 1],
            format!("({lo:.0}..{hi:.0})"),
            cpu[cpu.len() - 1]
        );
    }
    print_ratios(&variants, &results, &rate, &cpu);
    if std::env::var("TK_BENCH_MULTICORE").as_deref() != Ok("0") {
        compare_threads(rounds, round_time, clients);
    }
}

/// `tk_listen` against each other variant that ran.
fn print_ratios(variants: &[Variant], results: &[Vec<Round>], rate: &[f64], cpu: &[f64]) {
    let Some(tk) = variants.iter().position(|&v| v == Variant::TkListen) else {
        return;
    };
    // Ratios per round (same round, adjacent in time) are less noisy than
    // ratios of medians; print both.
    let per_round = |a: usize, b: usize| -> f64 {
        let ratios: Vec<f64> = results[a]
            .iter()
            .zip(&results[b])
            .map(|(x, y)| x.served.per_second() / y.served.per_second())
            .collect();
        support::median(&ratios)
    };
    println!();
    for (other, variant) in variants.iter().enumerate().filter(|&(i, _)| i != tk) {
        println!(
            "tk_listen/{:<9} {:.3} conn/s (median of per-round ratios {:.3}), CPU per conn {:.3}",
            format!("{}:", variant.name()),
            rate[tk] / rate[other],
            per_round(tk, other),
            cpu[tk] / cpu[other]
        );
    }
    println!("goal: tk_listen/raw_core conn/s >= 0.97");
}

fn start_server(variant: Variant) -> Server {
    match variant {
        Variant::RawStd => start_std_server(),
        Variant::RawCore | Variant::TkListen | Variant::TkListenPerPeer => {
            start_core_server(variant)
        }
    }
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
        served: support::Served {
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

/// A server thread; stopping it returns the CPU time its thread used while
/// serving.
struct Server {
    addr: SocketAddr,
    stop: Box<dyn FnOnce() -> Duration>,
}

impl Server {
    fn stop(self) -> Duration {
        (self.stop)()
    }
}

fn start_std_server() -> Server {
    let listener = net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    let thread = thread::spawn(move || {
        let cpu_before = support::thread_cpu();
        for _ in 0..usize::MAX {
            let accepted = listener.accept();
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Ok((mut socket, _)) = accepted {
                let _ = socket.write_all(b"hello\n");
            }
        }
        support::thread_cpu() - cpu_before
    });
    Server {
        addr,
        stop: Box::new(move || {
            stopping.store(true, Ordering::SeqCst);
            // Wake the blocking accept() so that it sees the flag.
            let _ = net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT);
            thread.join().expect("server thread panicked")
        }),
    }
}

fn start_core_server(variant: Variant) -> Server {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        let mut core = Core::new().expect("event loop");
        let handle = core.handle();
        let any_port = "127.0.0.1:0".parse().unwrap();
        let listener = TcpListener::bind(&any_port, &handle).expect("bind 127.0.0.1:0");
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        let stop = stop_rx.then(|_| Ok::<(), ()>(()));
        let cpu_before = support::thread_cpu();
        match variant {
            Variant::RawCore => {
                let spawner = handle.clone();
                let server = listener
                    .incoming()
                    .for_each(move |(socket, _)| {
                        spawner.spawn(
                            tokio_io::io::write_all(socket, b"hello\n")
                                .map(|_| ())
                                .map_err(|_| ()),
                        );
                        Ok(())
                    })
                    .map_err(|_| ());
                let _ = core.run(server.select(stop));
            }
            Variant::TkListen => {
                let _ = core.run(tk_listen_server(listener, &handle).select(stop));
            }
            Variant::TkListenPerPeer => {
                let server = tk_listen_per_peer_server(listener, &handle);
                let _ = core.run(server.select(stop));
            }
            Variant::RawStd => unreachable!("raw_std has its own server"),
        }
        support::thread_cpu() - cpu_before
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server thread did not start");
    Server {
        addr,
        stop: Box::new(move || {
            let _ = stop_tx.send(());
            thread.join().expect("server thread panicked")
        }),
    }
}

/// The `tk_listen` server: `hello\n` to each connection, at most 1000 at once.
fn tk_listen_server(
    listener: TcpListener,
    handle: &tokio_core::reactor::Handle,
) -> impl Future<Item = (), Error = ()> {
    listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), handle)
        .map(|(socket, _)| {
            tokio_io::io::write_all(socket, b"hello\n")
                .map(|_| ())
                .map_err(|_| ())
        })
        .listen(1000)
}

/// [`tk_listen_server`] with at most [`MAX_PER_PEER`] connections per peer.
fn tk_listen_per_peer_server(
    listener: TcpListener,
    handle: &tokio_core::reactor::Handle,
) -> impl Future<Item = (), Error = ()> {
    listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), handle)
        .limit_per_peer(MAX_PER_PEER)
        .map(|(socket, _)| {
            tokio_io::io::write_all(socket, b"hello\n")
                .map(|_| ())
                .map_err(|_| ())
        })
        .listen(1000)
}

/// `threads` threads, each with its own `Core` running [`tk_listen_server`]
/// on its own `SO_REUSEPORT` listener, all on one address; stopping returns
/// the CPU time of all of them.
fn start_multicore_server(threads: usize) -> Server {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let first = listener::reuseport_listener(&any_port).expect("bind 127.0.0.1:0");
    let addr = first.local_addr().unwrap();
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(listener::reuseport_listener(&addr).expect("bind with SO_REUSEPORT"));
    }
    let (stops, workers): (Vec<_>, Vec<_>) = sockets
        .into_iter()
        .map(|socket| {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let worker = thread::spawn(move || {
                let mut core = Core::new().expect("event loop");
                let handle = core.handle();
                let listener =
                    TcpListener::from_listener(socket, &addr, &handle).expect("register");
                let stop = stop_rx.then(|_| Ok::<(), ()>(()));
                let cpu_before = support::thread_cpu();
                let _ = core.run(tk_listen_server(listener, &handle).select(stop));
                support::thread_cpu() - cpu_before
            });
            (stop_tx, worker)
        })
        .unzip();
    Server {
        addr,
        stop: Box::new(move || {
            for stop in stops {
                let _ = stop.send(());
            }
            workers
                .into_iter()
                .map(|w| w.join().expect("server thread panicked"))
                .sum()
        }),
    }
}

/// `tk_listen` on one thread against `TK_BENCH_THREADS` threads (default:
/// the number of CPUs), in interleaved rounds.
fn compare_threads(rounds: usize, round_time: Duration, clients: usize) {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let many = support::env_usize("TK_BENCH_THREADS", cpus).max(2);
    println!();
    println!("multicore: {rounds} rounds x [1, {many}] server threads, {clients} client threads");
    let mut results: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (i, threads) in [1, many].into_iter().enumerate() {
            let r = run_round(start_multicore_server(threads), clients, round_time);
            println!(
                "  round {round} {threads:>2} threads {:>8.0} conn/s  {:.4} CPU-s/1000 conns  ({} conns, {} errors)",
                r.served.per_second(),
                r.served.cpu_per_1000(),
                r.served.connections,
                r.errors
            );
            results[i].push(r);
        }
    }
    let median = |rounds: &[Round]| {
        let rates: Vec<f64> = rounds.iter().map(|r| r.served.per_second()).collect();
        support::median(&rates)
    };
    let (one, all) = (median(&results[0]), median(&results[1]));
    println!(
        "multicore: 1 thread {one:.0} conn/s, {many} threads {all:.0} conn/s, ratio {:.2}",
        all / one
    );
}

/// Connections per batch in batch mode (`TK_ACCEPT_BATCH_SIZE`, default 100,
/// at most 128: the backlog that `std::net::TcpListener::bind` asks for).
fn batch_size() -> usize {
    support::env_usize("TK_ACCEPT_BATCH_SIZE", 100).clamp(1, 128)
}

/// Batch mode: the same servers, serving connections already waiting in the
/// backlog, on one thread, so that a profiler sees a repeatable amount of work.
fn batch_mode(name: &str) {
    let variant = *ALL_VARIANTS
        .iter()
        .find(|v| v.name() == name)
        .unwrap_or_else(|| {
            panic!(
                "TK_ACCEPT_BATCH={name:?}: use raw_std, raw_core, tk_listen or tk_listen_per_peer"
            )
        });
    let batches = support::env_usize("TK_ACCEPT_BATCHES", 50);
    let size = batch_size();
    if std::env::var("TK_ACCEPT_PERSISTENT").as_deref() == Ok("1") {
        persistent_batch_mode(variant, batches, size);
        return;
    }
    let mut core = Core::new().expect("event loop");
    let handle = core.handle();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut served = 0;
    for _ in 0..batches {
        let std_listener = net::TcpListener::bind(any_port).expect("bind 127.0.0.1:0");
        let addr = std_listener.local_addr().unwrap();
        let clients = connect_clients(addr, size);
        served += match variant {
            Variant::RawStd => serve_batch_raw_std(&std_listener, size),
            Variant::RawCore => {
                let listener = TcpListener::from_listener(std_listener, &addr, &handle)
                    .expect("register the listener");
                serve_batch_raw_core(&mut core, listener, size)
            }
            Variant::TkListen => {
                let listener = TcpListener::from_listener(std_listener, &addr, &handle)
                    .expect("register the listener");
                serve_batch_tk_listen(&mut core, listener, size)
            }
            Variant::TkListenPerPeer => {
                panic!("tk_listen_per_peer runs in persistent mode only: TK_ACCEPT_PERSISTENT=1")
            }
        };
        expect_replies(clients);
    }
    println!(
        "{} served {served} connections in batches of {size}",
        variant.name()
    );
}

/// `size` clients connected to `addr`, waiting in its backlog; from
/// `TK_ACCEPT_PEERS` loopback addresses in turn if that is over 1.
fn connect_clients(addr: SocketAddr, size: usize) -> Vec<net::TcpStream> {
    let peers = support::env_usize("TK_ACCEPT_PEERS", 1).clamp(1, 250);
    (0..size)
        .map(|i| {
            if peers == 1 {
                return net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect");
            }
            let host = 2 + (i % peers) as u8;
            let source = SocketAddr::from((std::net::Ipv4Addr::new(127, 0, 0, host), 0));
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket
                .bind(&source.into())
                .expect("bind a loopback address");
            socket
                .connect_timeout(&addr.into(), CLIENT_TIMEOUT)
                .expect("connect");
            socket.into()
        })
        .collect()
}

/// Reads each client's reply to the end; every one must be `hello\n`.
fn expect_replies(clients: Vec<net::TcpStream>) {
    for mut client in clients {
        let mut reply = Vec::new();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let _ = client.read_to_end(&mut reply);
        assert_eq!(reply, b"hello\n", "a client got no reply");
    }
}

/// Batch mode with one server for all batches.
fn persistent_batch_mode(variant: Variant, batches: usize, size: usize) {
    let mut core = Core::new().expect("event loop");
    let handle = core.handle();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = TcpListener::bind(&any_port, &handle).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let served = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = served.clone();
    let reply = move |socket| counted_hello(socket, &counter);
    match variant {
        Variant::RawCore => {
            let spawner = handle.clone();
            handle.spawn(
                listener
                    .incoming()
                    .for_each(move |(socket, _)| {
                        spawner.spawn(reply(socket));
                        Ok(())
                    })
                    .map_err(|_| ()),
            );
        }
        Variant::TkListen => handle.spawn(
            listener
                .incoming()
                .sleep_on_error(Duration::from_millis(100), &handle)
                .map(move |(socket, _)| reply(socket))
                .listen(1000),
        ),
        Variant::TkListenPerPeer => {
            let peers = support::env_usize("TK_ACCEPT_PEERS", 1).clamp(1, 250);
            assert!(
                peers * MAX_PER_PEER >= size,
                "{size} clients from {peers} peer(s) are over the cap of {MAX_PER_PEER} per peer; \
                 set TK_ACCEPT_PEERS to at least {}",
                size.div_ceil(MAX_PER_PEER)
            );
            let counter = served.clone();
            handle.spawn(
                listener
                    .incoming()
                    .sleep_on_error(Duration::from_millis(100), &handle)
                    .limit_per_peer(MAX_PER_PEER)
                    .map(move |(connection, _)| counted_hello(connection, &counter))
                    .listen(1000),
            )
        }
        Variant::RawStd => {
            panic!("TK_ACCEPT_PERSISTENT is for raw_core, tk_listen and tk_listen_per_peer")
        }
    }
    for batch in 1..=batches {
        let clients = connect_clients(addr, size);
        turn_until_served(&mut core, &served, batch * size);
        expect_replies(clients);
    }
    println!(
        "{} served {} connections in batches of {size}, one server",
        variant.name(),
        served.get()
    );
}

/// Writes `hello\n` to `socket`, then counts it in `served`.
fn counted_hello<S: tokio_io::AsyncWrite>(
    socket: S,
    served: &std::rc::Rc<std::cell::Cell<usize>>,
) -> impl Future<Item = (), Error = ()> {
    let served = served.clone();
    tokio_io::io::write_all(socket, b"hello\n")
        .map(move |_| served.set(served.get() + 1))
        .map_err(|_| ())
}

/// Turns the event loop until `served` reaches `target` (at most 10 000
/// turns).
#[inline(never)]
fn turn_until_served(core: &mut Core, served: &std::cell::Cell<usize>, target: usize) {
    for _ in 0..10_000 {
        if served.get() >= target {
            return;
        }
        core.turn(Some(Duration::from_millis(100)));
    }
    panic!("served only {} of {target}", served.get());
}

#[inline(never)]
fn serve_batch_raw_std(listener: &net::TcpListener, size: usize) -> usize {
    let mut served = 0;
    for _ in 0..size {
        let (mut socket, _) = listener.accept().expect("accept");
        socket.write_all(b"hello\n").expect("write");
        served += 1;
    }
    served
}

#[inline(never)]
fn serve_batch_raw_core(core: &mut Core, listener: TcpListener, size: usize) -> usize {
    let served = std::rc::Rc::new(std::cell::Cell::new(0));
    let (spawner, counter) = (core.handle(), served.clone());
    let server = listener
        .incoming()
        .take(size as u64)
        .for_each(move |(socket, _)| {
            let counter = counter.clone();
            spawner.spawn(
                tokio_io::io::write_all(socket, b"hello\n")
                    .map(move |_| counter.set(counter.get() + 1))
                    .map_err(|_| ()),
            );
            Ok(())
        });
    core.run(server).expect("accept");
    // The spawned tasks finish on the next turns of the event loop.
    for _ in 0..1000 {
        if served.get() == size {
            break;
        }
        core.turn(Some(Duration::from_millis(10)));
    }
    served.get()
}

#[inline(never)]
fn serve_batch_tk_listen(core: &mut Core, listener: TcpListener, size: usize) -> usize {
    let served = std::rc::Rc::new(std::cell::Cell::new(0));
    let (handle, counter) = (core.handle(), served.clone());
    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .take(size as u64)
        .map(move |(socket, _)| {
            let counter = counter.clone();
            tokio_io::io::write_all(socket, b"hello\n")
                .map(move |_| counter.set(counter.get() + 1))
                .map_err(|_| ())
        })
        .listen(1000);
    core.run(server).expect("serve");
    served.get()
}
