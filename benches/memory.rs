//! Per-connection memory and scaling with the number of connections in
//! flight.
//!
//! A counting global allocator counts only what the server thread allocates.
//! The server answers each connection once the client has sent one byte: it
//! reads that byte, writes `hello\n` and closes, so a client decides how long a
//! connection stays in flight. (The server closes first, so the `TIME_WAIT`
//! state stays on the server's side; if the clients closed first, their
//! ephemeral ports, not the server, would cap the connection rate at about
//! 28 000 per `TIME_WAIT` reuse interval.) Clients run in a child process (this binary
//! re-run as `memory client <hold|loop> <address> <K> <ms>`), so that each process needs only one
//! descriptor per connection: both processes raise their soft
//! `RLIMIT_NOFILE` to the hard limit.
//!
//! 1. Memory: for K in 10, 100, 1000, 10 000, the client opens K connections
//!    and holds them; once the server has accepted all K and is idle, the
//!    bench reads the bytes the server thread holds, minus what it held with
//!    no connection, divided by K. Two servers run the same connection future:
//!    `incoming().sleep_on_error(100 ms).map(..).listen(10_000)`, and
//!    `incoming().for_each(|c| { handle.spawn(..); Ok(()) })`.
//! 2. Throughput: for the same K, the client keeps K connections in flight
//!    (connect, send a byte, read to EOF, again) against the `listen(10_000)`
//!    server for a fixed time; the bench prints connections/s, server-thread
//!    CPU seconds per 1000 connections, and allocations and bytes allocated
//!    per connection. Rounds are interleaved over K.
//!
//! A K that needs more descriptors than the hard `RLIMIT_NOFILE` allows is
//! skipped, with a note.
//!
//! Settings (`TK_BENCH_ROUNDS`, `TK_BENCH_ROUND_MS`) and figures:
//! `benches/README.md`.
//!
//! Run: `cargo bench --bench memory`

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{self, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::{self, Loop};
use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Handle};

/// Counts allocations made on threads that opted in with [`count_this_thread`].
struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without a destructor: reading it never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn count_this_thread() {
    COUNTED.with(|c| c.set(true));
}

// SAFETY: every method forwards to `System` unchanged and only updates
// atomic counters on the side.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && counted() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && counted() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            ALLOCATED_BYTES.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Connections in flight, K.
const LEVELS: [usize; 4] = [10, 100, 1000, 10_000];
/// Descriptors a process needs besides one per connection.
const SPARE_DESCRIPTORS: u64 = 64;
/// Bound on every wait for something the bench itself set in motion.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Listen,
    Spawn,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Listen => "listen(10_000)",
            Variant::Spawn => "Handle::spawn",
        }
    }
}

fn main() {
    let nofile = raise_nofile();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("client") {
        client(&args[1..]);
        return;
    }
    let rounds = support::env_usize("TK_BENCH_ROUNDS", 3).max(1);
    let round_time = support::env_millis("TK_BENCH_ROUND_MS", 2000);
    let (levels, skipped): (Vec<usize>, Vec<usize>) = LEVELS
        .into_iter()
        .partition(|&k| k as u64 + SPARE_DESCRIPTORS <= nofile);
    println!(
        "memory: RLIMIT_NOFILE soft limit {nofile} (hard {}), in-flight levels {levels:?}",
        support::nofile_limit().1
    );
    if !skipped.is_empty() {
        println!("  note: skipped K = {skipped:?}: more descriptors than RLIMIT_NOFILE allows");
    }

    println!();
    println!("Bytes held by the server thread per in-flight connection:");
    println!(
        "{:>7} {:>16} {:>16}",
        "K",
        Variant::Listen.name(),
        Variant::Spawn.name()
    );
    for &k in &levels {
        let listen = bytes_per_connection(Variant::Listen, k);
        let spawn = bytes_per_connection(Variant::Spawn, k);
        println!("{k:>7} {listen:>16.0} {spawn:>16.0}");
    }

    println!();
    println!("Throughput with K connections in flight, listen(10_000), {rounds} rounds of {round_time:?}:");
    let mut results: Vec<Vec<Throughput>> = levels.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, &k) in levels.iter().enumerate() {
            let t = throughput(k, round_time);
            println!(
                "  round {round} K={k:<6} {:>8.0} conn/s  {:.4} CPU-s/1000 conns  ({} conns)",
                t.served.per_second(),
                t.served.cpu_per_1000(),
                t.served.connections
            );
            results[i].push(t);
        }
    }
    println!();
    println!(
        "{:>7} {:>14} {:>22} {:>12} {:>16}",
        "K", "median conn/s", "median CPU-s/1000 conn", "allocs/conn", "bytes alloc/conn"
    );
    for (k, rounds) in levels.iter().zip(&results) {
        let rates: Vec<f64> = rounds.iter().map(|t| t.served.per_second()).collect();
        let cpus: Vec<f64> = rounds.iter().map(|t| t.served.cpu_per_1000()).collect();
        let allocs: Vec<f64> = rounds
            .iter()
            .map(|t| t.allocations as f64 / t.served.connections.max(1) as f64)
            .collect();
        let bytes: Vec<f64> = rounds
            .iter()
            .map(|t| t.allocated as f64 / t.served.connections.max(1) as f64)
            .collect();
        println!(
            "{k:>7} {:>14.0} {:>22.4} {:>12.1} {:>16.0}",
            support::median(&rates),
            support::median(&cpus),
            support::median(&allocs),
            support::median(&bytes)
        );
    }
}

/// Raises the soft descriptor limit to the hard limit; returns the soft limit.
fn raise_nofile() -> u64 {
    let (soft, hard) = support::nofile_limit();
    support::set_nofile_soft(hard).unwrap_or(soft)
}

/// A server on its own thread; only its thread's allocations are counted.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    thread: thread::JoinHandle<Duration>,
}

impl Server {
    fn start(variant: Variant) -> Server {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let thread = thread::spawn(move || {
            count_this_thread();
            let mut core = Core::new().expect("event loop");
            let handle = core.handle();
            let any_port = "127.0.0.1:0".parse().unwrap();
            let listener = TcpListener::bind(&any_port, &handle).expect("bind 127.0.0.1:0");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let stop = stop_rx.then(|_| Ok::<(), ()>(()));
            let cpu_before = support::thread_cpu();
            match variant {
                Variant::Listen => {
                    let server = listener
                        .incoming()
                        .sleep_on_error(Duration::from_millis(100), &handle)
                        .map(move |(socket, _)| {
                            counter.fetch_add(1, Ordering::Relaxed);
                            connection(socket)
                        })
                        .listen(10_000);
                    let _ = core.run(server.select(stop));
                }
                Variant::Spawn => {
                    let spawner = handle.clone();
                    let server = listener
                        .incoming()
                        .for_each(move |(socket, _)| {
                            counter.fetch_add(1, Ordering::Relaxed);
                            spawner.spawn(connection(socket));
                            Ok(())
                        })
                        .map_err(|_| ());
                    let _ = core.run(server.select(stop));
                }
            }
            support::thread_cpu() - cpu_before
        });
        let addr = addr_rx
            .recv_timeout(PATIENCE)
            .expect("server thread did not start");
        Server {
            addr,
            accepted,
            stop,
            thread,
        }
    }

    /// Stops the server; returns the CPU time its thread used.
    fn stop(self) -> Duration {
        let _ = self.stop.send(());
        self.thread.join().expect("server thread panicked")
    }
}

/// One connection: wait for the client's byte, answer, close.
fn connection(socket: TcpStream) -> impl Future<Item = (), Error = ()> {
    tokio_io::io::read_exact(socket, [0u8; 1])
        .and_then(|(socket, _)| tokio_io::io::write_all(socket, b"hello\n"))
        .map(|_| ())
        .map_err(|_| ())
}

/// The server thread's live bytes, once they have not changed for 100 ms.
fn settled_live_bytes() -> isize {
    let mut last = LIVE_BYTES.load(Ordering::SeqCst);
    for _ in 0..100 {
        thread::sleep(Duration::from_millis(100));
        let now = LIVE_BYTES.load(Ordering::SeqCst);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn bytes_per_connection(variant: Variant, k: usize) -> f64 {
    let server = Server::start(variant);
    let baseline = settled_live_bytes();
    let (mut child, mut stdin, mut lines) = start_client("hold", server.addr, k, Duration::ZERO);
    expect_line(&mut lines, "held");
    let deadline = Instant::now() + PATIENCE;
    while server.accepted.load(Ordering::SeqCst) < k && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let accepted = server.accepted.load(Ordering::SeqCst);
    assert_eq!(accepted, k, "server accepted {accepted} of {k} connections");
    let held = settled_live_bytes();
    writeln!(stdin, "release").expect("tell the client to release");
    let replies = expect_line(&mut lines, "replies ");
    assert_eq!(
        replies, k,
        "only {replies} of {k} connections were answered"
    );
    wait_for(&mut child);
    server.stop();
    (held - baseline) as f64 / k as f64
}

struct Throughput {
    served: support::Served,
    allocations: usize,
    allocated: usize,
}

fn throughput(k: usize, round_time: Duration) -> Throughput {
    let server = Server::start(Variant::Listen);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let allocated = ALLOCATED_BYTES.load(Ordering::SeqCst);
    let began = Instant::now();
    let (mut child, _stdin, mut lines) = start_client("loop", server.addr, k, round_time);
    let connections = expect_line(&mut lines, "done ");
    let elapsed = began.elapsed();
    wait_for(&mut child);
    let server_cpu = server.stop();
    Throughput {
        served: support::Served {
            connections,
            elapsed,
            server_cpu,
        },
        allocations: ALLOCATIONS.load(Ordering::SeqCst) - allocations,
        allocated: ALLOCATED_BYTES.load(Ordering::SeqCst) - allocated,
    }
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

fn start_client(
    mode: &str,
    addr: SocketAddr,
    k: usize,
    time: Duration,
) -> (Child, ChildStdin, Lines) {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let mut child = Command::new(exe)
        .arg("client")
        .arg(mode)
        .arg(addr.to_string())
        .arg(k.to_string())
        .arg(time.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client process");
    let stdin = child.stdin.take().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, stdin, lines)
}

/// Reads the client's next line, which must start with `prefix`; returns the
/// number after the prefix (0 if none).
fn expect_line(lines: &mut Lines, prefix: &str) -> usize {
    match lines.next() {
        Some(Ok(line)) if line.starts_with(prefix) => {
            line[prefix.len()..].trim().parse().unwrap_or(0)
        }
        other => panic!("client said {other:?}, expected {prefix:?}"),
    }
}

fn wait_for(child: &mut Child) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("client process did not finish in {PATIENCE:?}");
}

/// The client process: `args` are the mode (`hold` or `loop`), the server's
/// address, K and the time in milliseconds, as [`start_client`] passes them.
fn client(args: &[String]) {
    let [mode, addr, k, ms] = args else {
        panic!("client arguments {args:?}: expected <hold|loop> <address> <K> <ms>");
    };
    let addr: SocketAddr = addr.parse().expect("client: the server's address");
    let k: usize = k.parse().expect("client: K");
    let time = Duration::from_millis(ms.parse().expect("client: milliseconds"));
    match mode.as_str() {
        "hold" => hold(addr, k),
        "loop" => keep_busy(addr, k, time),
        other => panic!("unknown client mode {other:?}"),
    }
}

/// Opens `k` connections and holds them until told to release them on
/// standard input; then sends each its byte and reads the replies.
fn hold(addr: SocketAddr, k: usize) {
    let sockets: Vec<net::TcpStream> = (0..k)
        .map(|_| net::TcpStream::connect_timeout(&addr, PATIENCE).expect("connect"))
        .collect();
    println!("held");
    let mut command = String::new();
    let _ = std::io::stdin().read_line(&mut command);
    for mut socket in &sockets {
        let _ = socket.write_all(b"x");
    }
    let mut replies = 0;
    for mut socket in sockets {
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reply = Vec::new();
        if socket.read_to_end(&mut reply).is_ok() && reply == b"hello\n" {
            replies += 1;
        }
    }
    println!("replies {replies}");
}

/// Keeps `k` connections in flight for `time`; prints how many completed.
fn keep_busy(addr: SocketAddr, k: usize, time: Duration) {
    let mut core = Core::new().expect("event loop");
    let handle = core.handle();
    let deadline = Instant::now() + time;
    let done = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let loops = (0..k).map(|_| {
        let (handle, done, failed) = (handle.clone(), done.clone(), failed.clone());
        future::loop_fn((), move |()| {
            let (done, failed) = (done.clone(), failed.clone());
            one_request(&addr, &handle).then(move |result| {
                match result {
                    Ok(()) => done.set(done.get() + 1),
                    Err(_) => failed.set(failed.get() + 1),
                }
                if Instant::now() < deadline {
                    Ok(Loop::Continue(()))
                } else {
                    Ok::<_, ()>(Loop::Break(()))
                }
            })
        })
    });
    core.run(future::join_all(loops.collect::<Vec<_>>()))
        .expect("client loops");
    if failed.get() > 0 {
        eprintln!("client: {} connections failed", failed.get());
    }
    println!("done {}", done.get());
}

fn one_request(
    addr: &SocketAddr,
    handle: &Handle,
) -> impl Future<Item = (), Error = std::io::Error> {
    TcpStream::connect(addr, handle)
        .and_then(|socket| tokio_io::io::write_all(socket, b"x"))
        .and_then(|(socket, _)| tokio_io::io::read_to_end(socket, Vec::new()))
        .and_then(|(_, reply)| {
            if reply == b"hello\n" {
                Ok(())
            } else {
                Err(std::io::Error::other("wrong reply"))
            }
        })
}
