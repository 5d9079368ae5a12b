//! Real HTTP clients (`curl`, `wrk`, `h2load`, raw HTTP/1.1 and h2 frames)
//! against the servers of `examples/hyper` and `examples/axum`, for
//! `tests/hyper.rs` and `tests/axum.rs`: the scenarios both run, and the
//! example itself in a child process, for its signal handling (`SIGTERM`,
//! the handover on `SIGHUP`). Linux only (`kill`, clients from 127.0.0.2 and
//! up).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{connect, connect_from, GENEROUS};

/// The body of `GET /` in both examples.
pub const HELLO: &str = "hello from tk-listen\n";

/// A tool from Debian that the tests run; `package` is what installs it.
fn tool(name: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {}", name))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{} is missing; install it (.ci/run does: apt-get install {})",
        name, package
    );
    let mut command = Command::new(name);
    command.stdin(Stdio::null());
    command
}

/// Runs `command` (each client here bounds its own time: curl's
/// `--max-time`, wrk's `-d` and `--timeout`, h2load's `-T`); returns its
/// standard output, failing the test unless it succeeded.
fn output(mut command: Command) -> String {
    let out = command.output().expect("run the client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{:?} failed ({}): {}",
        command,
        out.status,
        stderr
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn curl() -> Command {
    let mut command = tool("curl", "curl");
    command
        .args(["--silent", "--show-error"])
        .args(["--max-time", &GENEROUS.as_secs().to_string()]);
    command
}

/// Two requests in one `curl` run on HTTP/1.1: both `200` with the body,
/// the second on the first one's connection.
pub fn curl_keeps_http1_connections_alive(addr: SocketAddr) {
    let mut command = curl();
    command
        .args([
            "--http1.1",
            "--write-out",
            "|%{http_code} %{num_connects} %{http_version}\\n",
        ])
        .arg(format!("http://{}/", addr))
        .arg(format!("http://{}/", addr));
    let out = output(command);
    let expected = format!("{}|200 1 1.1\n{}|200 0 1.1\n", HELLO, HELLO);
    assert_eq!(
        out, expected,
        "the second request opened a connection of its own"
    );
}

/// `curl --http2-prior-knowledge`: `200` with the body over HTTP/2. (One
/// request per run: curl 7.88, Debian 12's, fails to reuse an h2c
/// connection; `h2load` checks many streams on one connection.)
pub fn curl_gets_h2c_with_prior_knowledge(addr: SocketAddr) {
    let mut command = curl();
    command
        .args([
            "--http2-prior-knowledge",
            "--write-out",
            "|%{http_code} %{http_version}",
        ])
        .arg(format!("http://{}/", addr));
    assert_eq!(output(command), format!("{}|200 2", HELLO));
}

/// `GET /stats` from 127.0.0.`from`, as `name value` pairs (the Prometheus
/// text format: comment lines skipped, labels part of the name).
pub fn stats(addr: SocketAddr, from: u8) -> Vec<(String, f64)> {
    let mut command = curl();
    command
        .args(["--fail", "--interface", &format!("127.0.0.{}", from)])
        .arg(format!("http://{}/stats", addr));
    output(command)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("`name value` lines");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of counter `name` in `stats`.
pub fn counter(stats: &[(String, f64)], name: &str) -> f64 {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {} in {:?}", name, stats))
        .1
}

/// The counters of the contract are on the page, which Python's
/// `prometheus_client` parses, with their types.
pub fn the_stats_page_has_the_contracts_counters(addr: SocketAddr) {
    use crate::support::prometheus::type_of;
    let page = stats(addr, 1);
    assert_eq!(counter(&page, "tk_listen_accepted_total"), 1.0);
    assert_eq!(counter(&page, "tk_listen_connections_running"), 1.0);
    assert_eq!(counter(&page, "tk_listen_peer_rejected_total"), 0.0);
    let parsed = metrics_page(addr, "/stats");
    for (name, kind) in [
        ("tk_listen_accepted_total", "counter"),
        ("tk_listen_connections_running", "gauge"),
        ("tk_listen_peer_rejected_total", "counter"),
        ("tk_listen_queued_connections", "gauge"),
        ("tk_listen_connection_duration_seconds_count", "histogram"),
    ] {
        assert_eq!(
            type_of(&parsed, name).as_deref(),
            Some(kind),
            "{}: {:?}",
            name,
            parsed
        );
    }
}

/// A `GET` on an open HTTP/1.1 connection; returns the status and body.
pub fn get(client: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {} HTTP/1.1\r\nHost: tk-listen\r\n\r\n", path);
    client.write_all(request.as_bytes()).ok()?;
    read_response(client)
}

/// One HTTP/1.1 response with a `content-length`; `None` if the connection
/// ended (or was reset) first.
pub fn read_response(client: &mut TcpStream) -> Option<(u16, String)> {
    let mut reader = BufReader::new(client);
    let mut status_line = String::new();
    match reader.read_line(&mut status_line) {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("no response and no close: {}", e),
    }
    let status = status_line
        .split(' ')
        .nth(1)
        .expect("a status")
        .parse()
        .unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a header line");
        if line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header");
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    // Keep-alive: nothing after the body was read into the buffer.
    assert!(reader.buffer().is_empty(), "bytes after the response");
    Some((status, String::from_utf8(body).unwrap()))
}

/// Waits until `client` reads the end of the stream (or a reset); fails on
/// data or if that takes longer than `GENEROUS`.
pub fn wait_for_close(mut client: TcpStream) -> Instant {
    client.set_read_timeout(Some(GENEROUS)).unwrap();
    match client.read(&mut [0; 256]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to close, got {:?}", other),
    }
    Instant::now()
}

/// An idle h2c connection: the client preface and an empty SETTINGS frame,
/// then the server's first frame read (its SETTINGS).
pub fn idle_h2(addr: SocketAddr) -> TcpStream {
    let mut client = connect(addr);
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    client.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let (kind, _, _) = read_frame(&mut client).expect("the server's SETTINGS");
    assert_eq!(kind, 4, "the server's first frame is SETTINGS");
    client
}

/// Reads h2 frames until the connection ends, acknowledging SETTINGS and
/// PING frames as a client does (the server's graceful shutdown waits for a
/// PING's answer); returns when it ended and whether a GOAWAY came first.
pub fn wait_for_goaway_and_close(mut client: TcpStream) -> (bool, Instant) {
    client.set_read_timeout(Some(GENEROUS)).unwrap();
    let mut goaway = false;
    for _ in 0..100 {
        match read_frame(&mut client) {
            Some((7, _, _)) => goaway = true,
            Some((4, flags, _)) if flags & 1 == 0 => {
                let _ = client.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
            }
            Some((6, flags, payload)) if flags & 1 == 0 => {
                let _ = client.write_all(&[0, 0, 8, 6, 1, 0, 0, 0, 0]);
                let _ = client.write_all(&payload);
            }
            Some(_) => {}
            None => return (goaway, Instant::now()),
        }
    }
    panic!("the idle h2 connection kept sending frames");
}

/// One h2 frame: its type, flags and payload; `None` at the end of the
/// stream.
fn read_frame(client: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut header = [0; 9];
    match client.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return None
        }
        Err(e) => panic!("no h2 frame and no close: {}", e),
    }
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0; length];
    client.read_exact(&mut payload).ok()?;
    Some((header[3], header[4], payload))
}

/// The example `name` (built with all features) in a child process, on
/// 127.0.0.1 port 0 with `--per-peer per_peer`, logging at `debug`, in a
/// process group of its own: the group (the child and its successors) is
/// killed, and the child reaped, when this is dropped.
pub struct ChildServer {
    child: Option<Child>,
    /// The child's pid, which is also its process group's id.
    pid: u32,
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl ChildServer {
    pub fn start(name: &str, per_peer: usize) -> ChildServer {
        ChildServer::start_with(name, &["127.0.0.1:0", "--per-peer", &per_peer.to_string()])
    }

    /// The example `name` with the command line `args`.
    pub fn start_with(name: &str, args: &[&str]) -> ChildServer {
        let mut child = Command::new(crate::support::process::built_example(name))
            .args(args)
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server process");
        // Both pipes (which successors share) are read to their end, so
        // that no server writes into a closed one.
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let stdout_tx = tx.clone();
        thread::spawn(move || {
            stdout
                .lines()
                .map_while(Result::ok)
                .for_each(|l| drop(stdout_tx.send(l)))
        });
        thread::spawn(move || {
            stderr
                .lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        let mut server = ChildServer {
            pid: child.id(),
            child: Some(child),
            addr: ([127, 0, 0, 1], 0).into(),
            lines,
        };
        server.addr = server.wait_for_address("listening on http://");
        server
    }

    /// Waits for a line `... {prefix}ADDR/...`; returns the `ADDR`.
    pub fn wait_for_address(&self, prefix: &str) -> SocketAddr {
        let line = self.wait_for_log(prefix);
        line.split(prefix)
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("the address")
            .parse()
            .unwrap()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until the child prints a line containing `text`; returns it.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + GENEROUS;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => assert!(!line.contains("panicked"), "server: {}", line),
                Err(_) => panic!("the server never printed {:?}", text),
            }
        }
    }

    /// Sends the child `SIGTERM`.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends the child `SIGHUP`.
    pub fn hang_up(&self) {
        self.signal("-HUP");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {} {} failed", signal, pid);
    }

    /// Waits (at most `GENEROUS`) for the child to exit by itself.
    pub fn wait_for_exit(&mut self) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + GENEROUS;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit after the signal"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // The whole group: the successors of a handover too.
        let group = format!("-{}", self.pid);
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The metrics page at `http://{addr}{path}`, parsed by Python's
/// `prometheus_client` (see `support::prometheus`).
pub fn metrics_page(addr: SocketAddr, path: &str) -> Vec<String> {
    let mut command = curl();
    command
        .arg("--fail")
        .arg(format!("http://{}{}", addr, path));
    crate::support::prometheus::parse(&output(command))
}

/// A server on its own thread (`serve` gets its main listener and a
/// metrics listener, both on 127.0.0.1 port 0); returns it and the metrics
/// listener's address.
pub fn start_with_metrics_listener<F, Fut>(serve: F) -> (crate::tokio1_support::Server, SocketAddr)
where
    F: FnOnce(tokio::net::TcpListener, tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    crate::support::init_logging();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    metrics.set_nonblocking(true).unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let server = crate::tokio1_support::Server::start(
        crate::tokio1_support::Flavour::MultiThread,
        move |listener| {
            serve(
                listener,
                tokio::net::TcpListener::from_std(metrics).unwrap(),
            )
        },
    );
    (server, metrics_addr)
}

/// With every one of the `slots` of the server at `addr` held by a silent
/// client and three more clients in its accept queue, the page at
/// `metrics` (a listener of its own) still answers, on any path, and shows
/// both: `slots` running, 3 queued.
pub fn the_metrics_listener_answers_while_the_main_one_is_full(
    addr: SocketAddr,
    metrics: SocketAddr,
    slots: usize,
) {
    use crate::support::prometheus::value;
    const WAITING: usize = 3;
    let silent: Vec<_> = (0..slots).map(|_| connect(addr)).collect();
    let waiting: Vec<_> = (0..WAITING).map(|_| connect(addr)).collect();
    // The kernel queues them promptly, but nothing signals it: poll, bounded.
    let deadline = Instant::now() + GENEROUS;
    let samples = loop {
        let samples = metrics_page(metrics, "/metrics");
        let running = value(&samples, "tk_listen_connections_running");
        let queued = value(&samples, "tk_listen_queued_connections");
        if running == Some(slots as f64) && queued == Some(WAITING as f64) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "never {} running and {} queued: {:?}",
            slots,
            WAITING,
            samples
        );
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        value(&samples, "tk_listen_connections_max"),
        Some(slots as f64)
    );
    assert_eq!(
        value(&samples, "tk_listen_accepted_total"),
        Some(slots as f64)
    );
    let other = metrics_page(metrics, "/");
    assert_eq!(
        value(&other, "tk_listen_connections_max"),
        Some(slots as f64)
    );
    drop((silent, waiting));
}

/// The example `name` started with `--metrics 127.0.0.1:0` prints the
/// metrics address and serves the page there, with the contract's names.
pub fn the_example_serves_the_page_on_its_metrics_address(name: &str) {
    use crate::support::prometheus::value;
    let server = ChildServer::start_with(name, &["127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let metrics = server.wait_for_address("metrics on http://");
    assert_ne!(metrics, server.addr);
    let samples = metrics_page(metrics, "/metrics");
    for name in [
        "tk_listen_accepted_total",
        "tk_listen_connections_running",
        "tk_listen_peer_rejected_total",
        "tk_listen_queued_connections",
    ] {
        assert_eq!(value(&samples, name), Some(0.0), "{}: {:?}", name, samples);
    }
}

/// How long the request in flight during the drain takes.
const IN_FLIGHT: Duration = Duration::from_secs(2);

/// `SIGTERM` with an idle HTTP/1.1 keep-alive connection, an idle h2c
/// connection and a request in flight: the idle ones close before the
/// request in flight is answered (h2 with a GOAWAY), new clients are
/// refused, the request in flight gets its `200`, and the server exits 0
/// after that.
pub fn sigterm_drains(mut server: ChildServer) {
    let addr = server.addr;
    let mut idle = connect(addr);
    assert_eq!(get(&mut idle, "/"), Some((200, HELLO.to_string())));
    let idle_h2 = idle_h2(addr);
    let mut busy = connect(addr);
    let path = format!("/delay/{}", IN_FLIGHT.as_millis());
    busy.write_all(format!("GET {} HTTP/1.1\r\nHost: tk-listen\r\n\r\n", path).as_bytes())
        .unwrap();
    // The handler has the request: it logs before it waits.
    server.wait_for_log(&format!("waiting {} ms", IN_FLIGHT.as_millis()));
    let in_flight = thread::spawn(move || (read_response(&mut busy), Instant::now()));
    let h2_closed = thread::spawn(move || wait_for_goaway_and_close(idle_h2));

    server.terminate();
    let idle_closed = wait_for_close(idle);
    let (goaway, idle_h2_closed) = h2_closed.join().unwrap();
    // New clients are refused once the listener has closed (it closes at
    // the signal; a connect just before that may still be queued).
    let refused = (0..500).any(|_| match std::net::TcpStream::connect(addr) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => true,
        _ => {
            thread::sleep(Duration::from_millis(10));
            false
        }
    });
    let (answer, answered) = in_flight.join().unwrap();
    let (status, exited) = server.wait_for_exit();

    assert!(goaway, "the idle h2 connection got no GOAWAY");
    assert!(
        idle_closed < answered,
        "the idle HTTP/1.1 connection stayed open during the drain"
    );
    assert!(
        idle_h2_closed < answered,
        "the idle h2 connection stayed open during the drain"
    );
    assert!(refused, "new clients were still accepted after SIGTERM");
    assert_eq!(
        answer,
        Some((200, format!("waited {} ms\n", IN_FLIGHT.as_millis())))
    );
    assert!(
        status.success(),
        "the server exited with {}; its last words: {:?}",
        status,
        server.lines.try_iter().collect::<Vec<_>>()
    );
    assert!(
        exited >= answered,
        "the server exited before the request in flight was answered"
    );
}

/// How many closed-loop keep-alive clients run through a handover.
const LOOP_CLIENTS: usize = 4;

/// `SIGHUP` under closed-loop keep-alive clients: the old process names its
/// successor (another pid, alive) and exits 0 once drained, the clients'
/// next requests are served (by the successor: nothing else holds the
/// socket), and no request fails.
pub fn sighup_hands_over_under_keep_alive_clients(server: ChildServer) {
    let mut server = server;
    let (addr, old) = (server.addr, server.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..LOOP_CLIENTS)
        .map(|_| {
            let (stop, served) = (stop.clone(), served.clone());
            thread::spawn(move || closed_loop_client(addr, &stop, &served))
        })
        .collect();
    let wait_for = |count: u64, what: &str| {
        let deadline = Instant::now() + GENEROUS;
        while served.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "{}", what);
            thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(100, "the clients were not served before the handover");

    server.hang_up();
    let line = server.wait_for_log("handed over to process ");
    let successor: u32 = line
        .split("handed over to process ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {:?}", line));
    let (status, _) = server.wait_for_exit();
    let after_exit = served.load(Ordering::SeqCst);
    wait_for(
        after_exit + 100,
        "nobody served after the old process exited",
    );
    stop.store(true, Ordering::SeqCst);
    let (failed, connections): (Vec<u64>, Vec<u64>) =
        clients.into_iter().map(|c| c.join().unwrap()).unzip();

    assert_ne!(successor, old, "the successor is the old process");
    let alive = Command::new("kill")
        .args(["-0", &successor.to_string()])
        .status()
        .unwrap();
    assert!(alive.success(), "the successor {} is gone", successor);
    assert!(status.success(), "the old process exited with {}", status);
    assert_eq!(failed, [0; LOOP_CLIENTS], "failed requests per client");
    let requests = served.load(Ordering::SeqCst);
    assert!(
        requests > connections.iter().sum::<u64>(),
        "no connection was kept alive: {} requests on {:?} connections",
        requests,
        connections
    );
}

/// One closed-loop client of [`sighup_hands_over_under_keep_alive_clients`]:
/// `GET /` again as soon as the answer is in, on the same connection while
/// the server keeps it open, until `stop` (at most `GENEROUS` and 100 000
/// requests). A request that a reused connection ends without any answer is
/// sent again on a new one, as HTTP clients do with idempotent requests
/// (RFC 9110, 9.2.2): the server may close an idle connection just as the
/// request leaves. Any other request without its `200` failed. Returns the
/// failures and the connections opened.
fn closed_loop_client(addr: SocketAddr, stop: &AtomicBool, served: &AtomicU64) -> (u64, u64) {
    let deadline = Instant::now() + GENEROUS;
    let (mut failed, mut connections) = (0, 0);
    let mut client: Option<TcpStream> = None;
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        let answer = match client.as_mut().map(|c| get(c, "/")) {
            Some(Some(answer)) => Some(answer),
            // A fresh connection, or the reused one ended unanswered.
            _ => {
                connections += 1;
                let fresh = client.insert(connect(addr));
                get(fresh, "/")
            }
        };
        if answer == Some((200, HELLO.to_string())) {
            served.fetch_add(1, Ordering::SeqCst);
        } else {
            failed += 1;
            client = None;
        }
    }
    (failed, connections)
}

/// With a cap of `per_peer` (at least 2) per peer: 127.0.0.2's connection
/// over the cap is closed at once while its others are served, another peer
/// (127.0.0.3) is served and sees the rejection counted, and a connection
/// that 127.0.0.2 closes lets its next one in.
pub fn the_per_peer_cap_closes_a_peers_extra_connection(addr: SocketAddr, per_peer: usize) {
    let mut held: Vec<TcpStream> = (0..per_peer)
        .map(|_| {
            let mut client = connect_from(2, addr);
            assert_eq!(get(&mut client, "/"), Some((200, HELLO.to_string())));
            client
        })
        .collect();
    let mut extra = connect_from(2, addr);
    assert_eq!(
        get(&mut extra, "/"),
        None,
        "the peer's extra connection was served"
    );

    let page = stats(addr, 3);
    assert_eq!(counter(&page, "tk_listen_peer_rejected_total"), 1.0);
    assert_eq!(counter(&page, "tk_listen_max_per_peer"), per_peer as f64);
    for client in &mut held {
        assert_eq!(
            get(client, "/"),
            Some((200, HELLO.to_string())),
            "a held connection"
        );
    }

    // Closing one frees its place once the server has seen the close; the
    // places that are not free yet close the new connection at once.
    drop(held.pop());
    let deadline = Instant::now() + GENEROUS;
    loop {
        let mut next = connect_from(2, addr);
        if get(&mut next, "/") == Some((200, HELLO.to_string())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the peer's freed place was never given back"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A short `wrk` run (keep-alive, or `Connection: close` with `close`): it
/// completes requests and reports no socket error and no non-2xx answer.
pub fn wrk_runs_without_errors(addr: SocketAddr, close: bool) {
    let mut command = tool("wrk", "wrk");
    command.args(["-t", "1", "-c", "16", "-d", "1s", "--timeout", "5s"]);
    if close {
        command.args(["-H", "Connection: close"]);
    }
    command.arg(format!("http://{}/", addr));
    let out = output(command);
    let requests: u64 = out
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .map(|(n, _)| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no request count in {:?}", out));
    assert!(requests > 0, "wrk completed no request: {}", out);
    assert!(!out.contains("Socket errors"), "wrk: {}", out);
    assert!(!out.contains("Non-2xx"), "wrk: {}", out);
}

/// A short `h2load` run over h2c: every request succeeds.
pub fn h2load_runs_without_errors(addr: SocketAddr) {
    const REQUESTS: u32 = 2000;
    let mut command = tool("h2load", "nghttp2-client");
    command
        .args(["-n", &REQUESTS.to_string(), "-c", "8", "-m", "8"])
        .args(["-T", &GENEROUS.as_secs().to_string()])
        .arg(format!("http://{}/", addr));
    let out = output(command);
    let expected = format!(
        "requests: {n} total, {n} started, {n} done, {n} succeeded, 0 failed, 0 errored, 0 timeout",
        n = REQUESTS
    );
    assert!(out.contains(&expected), "h2load: {}", out);
    assert!(out.contains("status codes: 2000 2xx"), "h2load: {}", out);
}
