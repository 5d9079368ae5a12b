//! Restarts under load: failed connections per restart for three ways to
//! restart a server, and the handover's time from the request to the
//! successor's first answer.
//!
//! The server is this binary again (`restart serve MODE MAX`), in a child
//! process: `incoming().sleep_on_error(100 ms).map(hold 20 ms, answer
//! "hello PID").listen(MAX).with_graceful_shutdown(SIGTERM, or a handover on
//! SIGHUP)`, on 127.0.0.1. Closed-loop clients (threads: connect, read the
//! answer to the end, again) count every connection that is refused, reset
//! or closed without the answer. The ways to restart:
//!
//! * `stop-start`: SIGTERM the old process (graceful: stop accepting,
//!   drain), wait for its exit, start the new one;
//! * `reuseport`: start the new process beside the old one (both bind with
//!   `SO_REUSEPORT`), then SIGTERM the old one (graceful);
//! * `handover`: SIGHUP: `tk_listen::Handover` starts the successor with the
//!   socket, waits for it to report ready, and the old process drains.
//!
//! Each runs below the cap (`listen(1000)`, 16 clients) and at the cap
//! (`listen(4)`, 16 clients: 12 wait in the backlog all the time).
//!
//! Settings: `TK_BENCH_RESTARTS` (20), `TK_BENCH_SETTLE_MS` (300: load
//! between restarts). Figures: `benches/README.md`.
//!
//! Run: `cargo bench --features handover --bench restart`

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures::{Future, Stream};
use tk_listen::{Handover, ListenExt};
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Core, Timeout};

/// How long each connection is held before its answer.
const HOLD: Duration = Duration::from_millis(20);
const CLIENTS: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    let restarts = setting("TK_BENCH_RESTARTS", 20);
    let settle = Duration::from_millis(setting("TK_BENCH_SETTLE_MS", 300));
    println!(
        "restarts under load: {} restarts each, {} clients, {:?} held per connection",
        restarts, CLIENTS, HOLD
    );
    println!("| restart | listen(n) | connections | failed | failed per restart | handover: request to first answer of the successor, median / max |");
    println!("|---|---|---|---|---|---|");
    for max in [1000, 4] {
        for mode in ["stop-start", "reuseport", "handover"] {
            run(mode, max, restarts as usize, settle);
        }
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One mode: start the server, load it, restart it `restarts` times.
fn run(mode: &str, max: usize, restarts: usize, settle: Duration) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{}", port).parse().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let mut servers = vec![Server::start(mode, max, port, lines_tx.clone())];
    let mut pid = wait_listening(&lines);
    let clients = Clients::start(addr);
    let mut handover_times = Vec::new();
    thread::sleep(settle);
    for _ in 0..restarts {
        match mode {
            "stop-start" => {
                let mut old = servers.pop().unwrap();
                signal("TERM", old.pid());
                old.child.wait().unwrap();
                servers.push(Server::start(mode, max, port, lines_tx.clone()));
                pid = wait_listening(&lines);
            }
            "reuseport" => {
                let mut old = servers.pop().unwrap();
                servers.push(Server::start(mode, max, port, lines_tx.clone()));
                pid = wait_listening(&lines);
                signal("TERM", old.pid());
                old.child.wait().unwrap();
            }
            _ => {
                let asked = Instant::now();
                signal("HUP", pid);
                let next = wait_listening(&lines);
                let first = clients.first_answer_from(next, asked);
                handover_times.push(first.saturating_duration_since(asked));
                // The first process is our child; the others are not.
                if let Some(mut first) = servers.pop() {
                    first.child.wait().unwrap();
                }
                pid = next;
            }
        }
        thread::sleep(settle);
    }
    let (served, failed) = clients.stop();
    if mode == "handover" {
        signal("TERM", pid);
        wait_gone(pid);
    }
    drop(servers);
    handover_times.sort();
    let times = match handover_times.len() {
        0 => "".to_string(),
        n => format!(
            "{:.1} ms / {:.1} ms",
            handover_times[n / 2].as_secs_f64() * 1e3,
            handover_times[n - 1].as_secs_f64() * 1e3
        ),
    };
    println!(
        "| {} | {} | {} | {} | {:.2} | {} |",
        mode,
        max,
        served + failed,
        failed,
        failed as f64 / restarts as f64,
        times
    );
}

struct Server {
    child: Child,
}

impl Server {
    fn start(mode: &str, max: usize, port: u16, lines: mpsc::Sender<String>) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["serve", mode, &max.to_string(), &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        Server { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a server's `listening PID` line; its pid.
fn wait_listening(lines: &mpsc::Receiver<String>) -> u32 {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a server that says it listens");
        if let Some(pid) = line.strip_prefix("listening ") {
            return pid.parse().unwrap();
        }
    }
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{}", pid)).exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{}", name))
        .arg(pid.to_string())
        .status();
}

/// The server process: prints `listening PID` once it serves.
fn serve(mode: &str, max: usize, port: u16) {
    let handover = Handover::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", port).parse().unwrap();
    let listener = match mode {
        "reuseport" => {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_reuse_address(true).unwrap();
            socket.set_reuse_port(true).unwrap();
            socket.bind(&addr.into()).unwrap();
            socket.listen(128).unwrap();
            socket.set_nonblocking(true).unwrap();
            std::net::TcpListener::from(socket)
        }
        _ => handover.listener(addr).unwrap(),
    };
    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let listener = TcpListener::from_listener(listener, &addr, &handle).unwrap();
    let answer = format!("hello {}\n", std::process::id());
    let conn_handle = handle.clone();
    let server = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(move |(socket, _)| {
            let answer = answer.clone();
            Timeout::new(HOLD, &conn_handle)
                .unwrap()
                .map_err(|_| ())
                .and_then(move |()| {
                    tokio_io::io::write_all(socket, answer.into_bytes())
                        .map(|_| ())
                        .map_err(|_| ())
                })
        })
        .listen(max)
        .with_graceful_shutdown(handover.shutdown_signal());
    println!("listening {}", std::process::id());
    handover.ready();
    core.run(server).unwrap();
}

/// Closed-loop clients.
struct Clients {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// (pid, when) of each answer from a pid not seen before.
    firsts: Arc<Mutex<Vec<(u32, Instant)>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Clients {
    fn start(addr: SocketAddr) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (stop, served, failed, firsts) =
                    (stop.clone(), served.clone(), failed.clone(), firsts.clone());
                thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(600);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match fetch(addr) {
                            Some(pid) => {
                                served.fetch_add(1, Ordering::Relaxed);
                                let mut firsts = firsts.lock().unwrap();
                                if !firsts.iter().any(|(p, _)| *p == pid) {
                                    firsts.push((pid, Instant::now()));
                                }
                            }
                            None => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                // Don't spin while nothing listens.
                                thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                })
            })
            .collect();
        Clients {
            stop,
            served,
            failed,
            firsts,
            threads,
        }
    }

    /// When the first answer from `pid` arrived (waits for it, bounded).
    fn first_answer_from(&self, pid: u32, since: Instant) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some((_, at)) = self.firsts.lock().unwrap().iter().find(|(p, _)| *p == pid) {
                return *at;
            }
            thread::sleep(Duration::from_millis(1));
        }
        since
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One connection: the pid in the answer, or `None` if it failed.
fn fetch(addr: SocketAddr) -> Option<u32> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.trim().strip_prefix("hello ")?.parse().ok()
}
