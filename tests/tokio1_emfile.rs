//! Running out of file descriptors on tokio 1: the server pauses quietly
//! instead of spinning, and recovers the clients waiting in the backlog by
//! itself, on both runtime flavours.
//!
//! The server runs in a child process (this same test binary, started with an
//! environment variable) whose `RLIMIT_NOFILE` is lowered, so that the limit
//! hits only the server and its CPU time can be read from `/proc`.

mod support;
mod tokio1_support;

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tk_listen::tokio1::{incoming, ListenExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use tokio1_support::{connect, Flavour, GENEROUS};

/// Set in the child's environment to the runtime flavour it runs.
const CHILD: &str = "TK_LISTEN_TOKIO1_EMFILE_SERVER";
const DESCRIPTORS: u32 = 64;
const CLIENTS: usize = 100;
const PAUSE: Duration = Duration::from_millis(100);
/// How long CPU use is measured while descriptors are exhausted.
const WINDOW: Duration = Duration::from_millis(1500);

/// The server, run only as the child of the tests below.
#[test]
#[ignore = "run by the descriptor_exhaustion_* tests"]
fn emfile_server_child() {
    let flavour = match std::env::var(CHILD).as_deref() {
        Ok("current_thread") => Flavour::CurrentThread,
        Ok("multi_thread") => Flavour::MultiThread,
        _ => return,
    };
    env_logger::builder()
        .filter_level(log::LevelFilter::Warn)
        .init();
    // The parent stops us by closing our stdin.
    thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    flavour.runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        let mut accepted = 0;
        let mut first_error = true;
        let server = incoming(listener)
            // Seen before the policy under test, so the parent learns that
            // descriptors ran out whatever the policy does about it.
            .map(move |result| {
                if let Err(e) = &result {
                    if first_error {
                        first_error = false;
                        eprintln!("accept failed: {}", e);
                    }
                }
                result
            })
            .sleep_on_error(PAUSE)
            .map(move |(mut socket, _peer)| {
                // Reported here, in the accepting task, in accept order.
                accepted += 1;
                eprintln!("accepted {}", accepted);
                // Greet, then hold the descriptor until the client closes.
                async move {
                    socket.write_all(b"hello\n").await?;
                    socket.read_to_end(&mut Vec::new()).await.map(|_| ())
                }
            })
            .listen(1000);
        // Spawned, so that on the multi-thread runtime the accepting task
        // runs on a worker like the connections.
        tokio::spawn(server).await.unwrap();
    });
}

/// What the child reports on stderr.
enum Event {
    Accepted(usize),
    AcceptFailed,
    Other(String),
}

struct ChildServer {
    /// `None` once stopped.
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    events: mpsc::Receiver<Event>,
}

impl ChildServer {
    fn start(flavour: &str) -> ChildServer {
        let test_binary = std::env::current_exe().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -Sn {} && exec \"$@\"", DESCRIPTORS))
            .arg("sh")
            .arg(test_binary)
            .args(["emfile_server_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD, flavour)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "child ended early");
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                break addr.parse().unwrap();
            }
        };
        let (tx, events) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let event = if let Some(n) = line.strip_prefix("accepted ") {
                    Event::Accepted(n.parse().unwrap())
                } else if line.starts_with("accept failed: ") {
                    Event::AcceptFailed
                } else {
                    Event::Other(line)
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        ChildServer {
            pid: child.id(),
            child: Some(child),
            addr,
            events,
        }
    }

    /// Waits for the first accept error; returns how many were accepted
    /// before it.
    fn accepted_before_first_error(&self) -> usize {
        let deadline = Instant::now() + GENEROUS;
        let mut accepted = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left).expect("accept never failed") {
                Event::Accepted(n) => accepted = n,
                Event::AcceptFailed => return accepted,
                Event::Other(line) => panic_if_bad(&line),
            }
        }
    }

    /// Waits until the server has accepted `total` connections since it
    /// started.
    fn wait_for_accepts(&self, total: usize) {
        let deadline = Instant::now() + GENEROUS;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Accepted(n)) if n >= total => return,
                Ok(Event::Other(line)) => panic_if_bad(&line),
                Ok(_) => {}
                Err(_) => panic!("the server did not reach {} accepts", total),
            }
        }
    }

    /// CPU time the server process used so far, user and system.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        assert!(
            child.try_wait().unwrap().is_none(),
            "the server process died"
        );
        drop(child.stdin.take());
        // Wait for the exit on another thread, so that the wait is bounded.
        let (exited_tx, exited) = mpsc::channel();
        thread::spawn(move || exited_tx.send(child.wait()));
        let Ok(status) = exited.recv_timeout(GENEROUS) else {
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
            panic!("the server did not stop when asked");
        };
        let status = status.unwrap();
        assert!(status.success(), "server exited with {}", status);
        for event in self.events.try_iter() {
            if let Event::Other(line) = event {
                panic_if_bad(&line);
            }
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn panic_if_bad(line: &str) {
    assert!(
        !line.contains("panicked") && !line.contains("ERROR"),
        "server: {}",
        line
    );
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn read_hello(client: &mut TcpStream) {
    let mut hello = [0; 6];
    client.read_exact(&mut hello).expect("no greeting");
    assert_eq!(&hello, b"hello\n");
}

fn assert_not_served(client: &TcpStream) {
    client.set_nonblocking(true).unwrap();
    let error = client.peek(&mut [0; 1]).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::WouldBlock,
        "a backlogged client was served"
    );
    client.set_nonblocking(false).unwrap();
}

/// Fills the backlog past the descriptor limit, checks the CPU use while
/// exhausted, frees the descriptors and checks that the backlog is served.
fn exhaust_and_recover(flavour: &str) {
    let server = ChildServer::start(flavour);

    // More clients than the server has descriptors; they all complete the
    // handshake in the kernel's backlog.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    let served = server.accepted_before_first_error();
    assert!(
        served > 0 && served < CLIENTS,
        "accepted {} before running out of descriptors",
        served
    );

    // Exhausted: the server must sit quietly, not retry accept() in a loop.
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    thread::sleep(WINDOW);
    let cpu_share =
        (server.cpu_time() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    eprintln!(
        "{} server CPU while out of descriptors: {:.1}% of a core",
        flavour,
        cpu_share * 100.0
    );
    assert!(
        cpu_share < 0.5,
        "server used {:.0}% of a core while out of descriptors",
        cpu_share * 100.0
    );

    // The backlog is accepted in order: the first `served` clients were
    // greeted, the rest still wait.
    for client in &mut clients[..served] {
        read_hello(client);
    }
    for client in &clients[served..] {
        assert_not_served(client);
    }

    // Free the descriptors. No new client arrives, yet the ones waiting in
    // the backlog must be accepted and served.
    let waiting = clients.split_off(served);
    drop(clients);
    for mut client in waiting {
        read_hello(&mut client);
    }
    server.wait_for_accepts(CLIENTS);

    // And new clients are served too.
    for _ in 0..3 {
        read_hello(&mut connect(server.addr));
    }
    server.stop();
}

#[test]
fn descriptor_exhaustion_on_a_current_thread_runtime_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover("current_thread");
}

#[test]
fn descriptor_exhaustion_on_a_multi_thread_runtime_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover("multi_thread");
}
