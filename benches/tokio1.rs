//! Loopback connection throughput on tokio 1: `tk_listen::tokio1` against
//! the accept loops people write by hand, on both runtime flavours.
//!
//! Three servers answer `hello\n` and close:
//!
//! * `plain`: `loop { listener.accept().await; tokio::spawn(..) }`, with no
//!   limit and no error handling (errors are skipped);
//! * `axum_style`: the same with a limit, as axum-style servers do it: a
//!   semaphore permit acquired before `accept`, held by the spawned task;
//! * `tk_listen`: `incoming(listener).sleep_on_error(100 ms).map(..).listen(1000)`.
//!
//! Each runs on a `current_thread` runtime (one server thread) and on a
//! `multi_thread` runtime (`TK_BENCH_THREADS` workers, default 2), the accept
//! loop itself spawned onto a worker. Client threads connect, read to EOF and
//! start over, for a fixed time. The variants run in interleaved rounds
//! (A B C, C B A, ..) so that a burst of noise from other processes hits all of
//! them alike; per flavour and variant the bench prints the median
//! connections/s and the median server CPU seconds per 1000 connections (all
//! the server's threads), then `tk_listen`'s ratios: the median of the
//! per-round conn/s ratios and the ratio of the median CPU per connection.
//!
//! Settings (environment): `TK_BENCH_ROUNDS` (default 5), `TK_BENCH_ROUND_MS`
//! (default 2000), `TK_BENCH_CLIENTS` (client threads, default 4),
//! `TK_BENCH_FLAVOURS` (`current_thread,multi_thread` by default),
//! `TK_BENCH_THREADS` (workers of the multi-thread runtime, default 2).
//!
//! Run: `cargo bench --features tokio1 --bench tokio1`; figures in
//! `benches/README.md`.
//!
//! For instruction counts that load doesn't change, `TK_TOKIO1_BATCH=<variant>`
//! runs one variant without client threads, on a `current_thread` runtime:
//! one server for the whole run; `TK_TOKIO1_BATCHES` (default 50) times, it
//! fills the listener's backlog with `TK_TOKIO1_BATCH_SIZE` (default 100, at
//! most 128) connected clients, then runs the runtime in `turn_until_served`
//! until all of them have been answered. `bash benches/callgrind_tokio1.sh` counts
//! the instructions inside that function only, per connection.
//! `TK_TOKIO1_PEERS` (default 1: all from 127.0.0.1) spreads the clients
//! over that many loopback addresses from 127.0.0.2 (Linux); the batch-only
//! variant `tk_listen_per_peer` is `tk_listen` with `limit_per_peer(8)`.

mod support;

use std::io::Read;
use std::net;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use tk_listen::tokio1::{incoming, ListenExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio_stream::StreamExt;

use support::servers::{self, Round, Server};

/// How long a client waits for a reply before counting an error.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The connection limit of `axum_style` and `tk_listen`.
const LIMIT: usize = 1000;
/// The per-peer cap of `tk_listen_per_peer`.
const MAX_PER_PEER: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    Plain,
    AxumStyle,
    TkListen,
    /// `tk_listen` with `limit_per_peer(MAX_PER_PEER)` before `listen`; in
    /// batch mode only (`TK_TOKIO1_BATCH=tk_listen_per_peer`).
    TkListenPerPeer,
}

const VARIANTS: [Variant; 3] = [Variant::Plain, Variant::AxumStyle, Variant::TkListen];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::AxumStyle => "axum_style",
            Variant::TkListen => "tk_listen",
            Variant::TkListenPerPeer => "tk_listen_per_peer",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavour {
    CurrentThread,
    MultiThread(usize),
}

impl Flavour {
    fn name(self) -> String {
        match self {
            Flavour::CurrentThread => "current_thread".to_string(),
            Flavour::MultiThread(n) => format!("multi_thread({n})"),
        }
    }
}

/// The flavours named in `TK_BENCH_FLAVOURS`, or both.
fn chosen_flavours() -> Vec<Flavour> {
    let workers = support::env_usize("TK_BENCH_THREADS", 2).max(1);
    let names = std::env::var("TK_BENCH_FLAVOURS")
        .unwrap_or_else(|_| "current_thread,multi_thread".to_string());
    names
        .split(',')
        .map(|name| match name.trim() {
            "current_thread" => Flavour::CurrentThread,
            "multi_thread" => Flavour::MultiThread(workers),
            other => panic!("unknown flavour {other:?}; use current_thread, multi_thread"),
        })
        .collect()
}

fn main() {
    if let Ok(name) = std::env::var("TK_TOKIO1_BATCH") {
        batch_mode(&name);
        return;
    }
    let rounds = support::env_usize("TK_BENCH_ROUNDS", 5).max(1);
    let round_time = support::env_millis("TK_BENCH_ROUND_MS", 2000);
    let clients = support::env_usize("TK_BENCH_CLIENTS", 4).max(1);
    for flavour in chosen_flavours() {
        println!(
            "tokio1 {}: {rounds} rounds x {} variants, {:?} each, {clients} client threads",
            flavour.name(),
            VARIANTS.len(),
            round_time
        );
        let labels: Vec<String> = VARIANTS.iter().map(|v| v.name().to_string()).collect();
        let results = servers::interleaved_rounds(&labels, rounds, round_time, clients, |i| {
            start_server(flavour, VARIANTS[i])
        });
        summarise(flavour, &results);
        println!();
    }
}

/// Medians per variant, then `tk_listen` against the other two.
fn summarise(flavour: Flavour, results: &[Vec<Round>]) {
    println!(
        "{:<10} {:>14} {:>20} {:>22}",
        "variant", "median conn/s", "(min..max)", "median CPU-s/1000 conn"
    );
    let mut cpu = Vec::new();
    for (variant, rounds) in VARIANTS.iter().zip(results) {
        let rates: Vec<f64> = rounds.iter().map(|r| r.served.per_second()).collect();
        let cpus: Vec<f64> = rounds.iter().map(|r| r.served.cpu_per_1000()).collect();
        let (lo, hi) = support::min_max(&rates);
        cpu.push(support::median(&cpus));
        println!(
            "{:<10} {:>14.0} {:>20} {:>22.4}",
            variant.name(),
            support::median(&rates),
            format!("({lo:.0}..{hi:.0})"),
            cpu[cpu.len() - 1]
        );
    }
    let tk = VARIANTS.len() - 1;
    for other in 0..tk {
        // Ratios per round (same round, close in time) are less noisy than
        // ratios of medians; the latter is printed for CPU too.
        let per_round = |of: fn(&support::Served) -> f64| -> f64 {
            let ratios: Vec<f64> = results[tk]
                .iter()
                .zip(&results[other])
                .map(|(t, o)| of(&t.served) / of(&o.served))
                .collect();
            support::median(&ratios)
        };
        println!(
            "{} tk_listen/{:<11} conn/s {:.3}, CPU per conn {:.3} (medians of per-round ratios; \
             CPU ratio of medians {:.3})",
            flavour.name(),
            format!("{}:", VARIANTS[other].name()),
            per_round(support::Served::per_second),
            per_round(support::Served::cpu_per_1000),
            cpu[tk] / cpu[other]
        );
    }
    println!("goals: tk_listen/plain conn/s >= 0.97, CPU per conn <= 1.05");
}

/// A runtime of `flavour` whose worker threads add their CPU time to
/// `workers_cpu` when they stop.
fn runtime(flavour: Flavour, workers_cpu: &Arc<Mutex<Duration>>) -> Runtime {
    let cpu = workers_cpu.clone();
    let mut builder = match flavour {
        Flavour::CurrentThread => Builder::new_current_thread(),
        Flavour::MultiThread(workers) => {
            let mut builder = Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    builder
        .enable_all()
        .on_thread_stop(move || *cpu.lock().unwrap() += support::thread_cpu())
        .build()
        .expect("tokio runtime")
}

fn start_server(flavour: Flavour, variant: Variant) -> Server {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        let cpu_before = support::thread_cpu();
        let workers_cpu = Arc::new(Mutex::new(Duration::ZERO));
        let runtime = runtime(flavour, &workers_cpu);
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            // On the multi-thread runtime the accept loop runs on a worker,
            // as the connections do.
            let server = tokio::spawn(serve(variant, listener, || ()));
            let _ = stopped.await;
            server.abort();
        });
        // Waits for the worker threads, which adds their CPU time.
        drop(runtime);
        let workers = *workers_cpu.lock().unwrap();
        support::thread_cpu() - cpu_before + workers
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server thread did not start");
    Server::new(addr, move || {
        let _ = stop.send(());
        thread.join().expect("server thread panicked")
    })
}

/// Runs `variant`'s server; `answered` is called after each reply.
async fn serve<F>(variant: Variant, listener: TcpListener, answered: F)
where
    F: Fn() + Clone + Send + 'static,
{
    match variant {
        Variant::Plain => loop {
            if let Ok((mut socket, _)) = listener.accept().await {
                let answered = answered.clone();
                tokio::spawn(async move {
                    let _ = socket.write_all(b"hello\n").await;
                    answered();
                });
            }
        },
        Variant::AxumStyle => {
            let limit = Arc::new(Semaphore::new(LIMIT));
            loop {
                let permit = limit.clone().acquire_owned().await.expect("semaphore");
                if let Ok((mut socket, _)) = listener.accept().await {
                    let answered = answered.clone();
                    tokio::spawn(async move {
                        let _ = socket.write_all(b"hello\n").await;
                        answered();
                        drop(permit);
                    });
                }
            }
        }
        Variant::TkListen => {
            incoming(listener)
                .sleep_on_error(Duration::from_millis(100))
                .map(move |(mut socket, _)| {
                    let answered = answered.clone();
                    async move {
                        let written = socket.write_all(b"hello\n").await;
                        answered();
                        written
                    }
                })
                .listen(LIMIT)
                .await
        }
        Variant::TkListenPerPeer => {
            incoming(listener)
                .sleep_on_error(Duration::from_millis(100))
                .limit_per_peer(MAX_PER_PEER)
                .map(move |(mut connection, _)| {
                    let answered = answered.clone();
                    async move {
                        let written = connection.write_all(b"hello\n").await;
                        answered();
                        written
                    }
                })
                .listen(LIMIT)
                .await
        }
    }
}

/// How many replies the batch-mode server has sent, and a wake-up for the
/// batch that waits for the last one.
struct Answered {
    count: AtomicUsize,
    target: AtomicUsize,
    reached: Notify,
}

/// Batch mode: one variant, no client threads, a repeatable amount of work
/// for callgrind.
fn batch_mode(name: &str) {
    let variant = *VARIANTS
        .iter()
        .chain(&[Variant::TkListenPerPeer])
        .find(|v| v.name() == name)
        .unwrap_or_else(|| {
            panic!(
                "TK_TOKIO1_BATCH={name:?}: use plain, axum_style, tk_listen or tk_listen_per_peer"
            )
        });
    let batches = support::env_usize("TK_TOKIO1_BATCHES", 50);
    let size = support::env_usize("TK_TOKIO1_BATCH_SIZE", 100).clamp(1, 128);
    let peers = support::env_usize("TK_TOKIO1_PEERS", 1).clamp(1, 250);
    assert!(
        variant != Variant::TkListenPerPeer || peers * MAX_PER_PEER >= size,
        "{size} clients from {peers} peer(s) are over the cap of {MAX_PER_PEER} per peer"
    );
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(Answered {
        count: AtomicUsize::new(0),
        target: AtomicUsize::new(usize::MAX),
        reached: Notify::new(),
    });
    let counter = answered.clone();
    runtime.spawn(serve(variant, listener, move || {
        let count = counter.count.fetch_add(1, Ordering::SeqCst) + 1;
        if count == counter.target.load(Ordering::SeqCst) {
            counter.reached.notify_one();
        }
    }));
    for batch in 1..=batches {
        let clients: Vec<net::TcpStream> =
            (0..size).map(|i| connect(addr, i % peers, peers)).collect();
        turn_until_served(&runtime, &answered, batch * size);
        for mut client in clients {
            let mut reply = Vec::new();
            client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            let _ = client.read_to_end(&mut reply);
            assert_eq!(reply, b"hello\n", "a client got no reply");
        }
    }
    println!(
        "{} answered {} connections in batches of {size}, one server",
        variant.name(),
        answered.count.load(Ordering::SeqCst)
    );
}

/// A client connected to `addr`: from 127.0.0.1 if `peers` is 1, else
/// from the `n`-th loopback address after 127.0.0.2.
fn connect(addr: net::SocketAddr, n: usize, peers: usize) -> net::TcpStream {
    if peers == 1 {
        return net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect");
    }
    support::connect_from_loopback(addr, n, CLIENT_TIMEOUT)
}

/// Runs the runtime until `target` replies have been sent (at most 10 s).
#[inline(never)]
fn turn_until_served(runtime: &Runtime, answered: &Answered, target: usize) {
    answered.target.store(target, Ordering::SeqCst);
    runtime.block_on(async {
        let wait = async {
            while answered.count.load(Ordering::SeqCst) < target {
                answered.reached.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "served only {} of {target}",
                    answered.count.load(Ordering::SeqCst)
                )
            });
    });
}
