//! The child-process server of the `EMFILE` tests (`tests/emfile.rs`,
//! `tests/tokio1_emfile.rs`): started with a lowered `RLIMIT_NOFILE`, it
//! reports its accepts and accept errors on stderr, and the test reads its CPU
//! time from `/proc`; and the scenario both tests run against it
//! ([`exhaust_and_recover`]). Linux only.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::process::process_cpu;
use super::{connect, GENEROUS};

/// The child's limit on open descriptors.
pub const DESCRIPTORS: u32 = 64;
/// Clients connected at once: more than the child has descriptors.
pub const CLIENTS: usize = 100;
/// How long CPU use is measured while descriptors are exhausted.
const WINDOW: Duration = Duration::from_millis(1500);

/// The scenario of both tests against the child started with
/// `child_var=value`: fills the backlog past the descriptor limit, checks
/// the CPU use while exhausted, frees the descriptors and checks that the
/// backlog is served, then new clients.
pub fn exhaust_and_recover(child_var: &str, value: &str) {
    let server = ChildServer::start(child_var, value, DESCRIPTORS);

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
        value,
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

/// What the child reports on stderr.
pub enum Event {
    Accepted(usize),
    AcceptFailed,
    Other(String),
}

pub struct ChildServer {
    /// `None` once stopped.
    child: Option<Child>,
    pub pid: u32,
    pub addr: SocketAddr,
    events: mpsc::Receiver<Event>,
}

impl ChildServer {
    /// Re-runs this test binary's ignored `emfile_server_child` test with
    /// `child_var=value` in its environment and `RLIMIT_NOFILE` lowered to
    /// `descriptors`, and waits until it says where it listens.
    pub fn start(child_var: &str, value: &str, descriptors: u32) -> ChildServer {
        let test_binary = std::env::current_exe().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -Sn {} && exec \"$@\"", descriptors))
            .arg("sh")
            .arg(test_binary)
            .args(["emfile_server_child", "--exact", "--ignored", "--nocapture"])
            .env(child_var, value)
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
    pub fn accepted_before_first_error(&self) -> usize {
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
    pub fn wait_for_accepts(&self, total: usize) {
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
    pub fn cpu_time(&self) -> Duration {
        process_cpu(self.pid).expect("the server's /proc/<pid>/stat")
    }

    pub fn stop(mut self) {
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

pub fn panic_if_bad(line: &str) {
    assert!(
        !line.contains("panicked") && !line.contains("ERROR"),
        "server: {}",
        line
    );
}

pub fn read_hello(client: &mut TcpStream) {
    let mut hello = [0; 6];
    client.read_exact(&mut hello).expect("no greeting");
    assert_eq!(&hello, b"hello\n");
}

pub fn assert_not_served(client: &TcpStream) {
    client.set_nonblocking(true).unwrap();
    let error = client.peek(&mut [0; 1]).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::WouldBlock,
        "a backlogged client was served"
    );
    client.set_nonblocking(false).unwrap();
}
