//! The metrics page of `examples/http` (the same server module): `/stats`
//! on the main listener, and `--metrics`' listener of its own, which answers
//! while every slot of the main one is taken and shows who waits.

#![cfg(target_os = "linux")]

mod support;

#[path = "../examples/http/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{self, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio_core::net::TcpListener;

use support::prometheus::{parse, type_of, value};
use support::{connect, init_logging, Server, GENEROUS};

/// Starts the example's server with `max_connections` and a metrics
/// listener; returns it and the metrics listener's address.
fn start(max_connections: usize) -> (Server, SocketAddr) {
    init_logging();
    let config = server::Config {
        max_connections,
        deadline: GENEROUS,
        per_peer: server::MAX_PER_PEER,
    };
    let metrics = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let server = Server::start(move |listener, handle| {
        let metrics = TcpListener::from_listener(metrics, &metrics_addr, handle).unwrap();
        server::serve_until(
            listener,
            Some(metrics),
            handle,
            config,
            futures::future::empty(),
        )
    });
    (server, metrics_addr)
}

/// The body of `GET path` at `addr`, over a plain socket.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut client = connect(addr);
    write!(client, "GET {} HTTP/1.1\r\nHost: test\r\n\r\n", path).unwrap();
    let mut reply = String::new();
    client
        .read_to_string(&mut reply)
        .unwrap_or_else(|e| panic!("GET {} from {}: {}", path, addr, e));
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n"),
        "reply: {:?}",
        reply
    );
    body.to_string()
}

/// The names of 0.1.1's page, which the page keeps.
const NAMES_OF_0_1_1: [&str; 13] = [
    "tk_listen_connections_max",
    "tk_listen_connections_running",
    "tk_listen_connections_started_total",
    "tk_listen_connections_finished_total",
    "tk_listen_connections_failed_total",
    "tk_listen_connections_panicked_total",
    "tk_listen_accepted_total",
    "tk_listen_accept_errors_skipped_total",
    "tk_listen_accept_pauses_total",
    "tk_listen_accept_paused_seconds_total",
    "tk_listen_max_per_peer",
    "tk_listen_peers",
    "tk_listen_peer_rejected_total",
];

#[test]
fn the_stats_route_serves_a_page_that_prometheus_parses() {
    let (server, _metrics) = start(4);
    let samples = parse(&get(server.addr, "/stats"));
    for name in NAMES_OF_0_1_1 {
        assert!(
            type_of(&samples, name).is_some(),
            "no {}: {:?}",
            name,
            samples
        );
    }
    assert_eq!(
        type_of(&samples, "tk_listen_queued_connections").as_deref(),
        Some("gauge")
    );
    // This very request is the one running connection.
    assert_eq!(value(&samples, "tk_listen_connections_running"), Some(1.0));
    assert_eq!(value(&samples, "tk_listen_queued_connections"), Some(0.0));
}

#[test]
fn the_metrics_listener_answers_while_the_main_one_is_full_and_shows_the_clients_waiting() {
    const SLOTS: usize = 2;
    const WAITING: u64 = 3;
    let (server, metrics) = start(SLOTS);
    // Silent clients take every slot (the deadline is GENEROUS); the next
    // ones wait in the accept queue.
    let silent: Vec<_> = (0..SLOTS).map(|_| connect(server.addr)).collect();
    let waiting: Vec<_> = (0..WAITING).map(|_| connect(server.addr)).collect();

    // The kernel queues them promptly but without a signal: poll, bounded.
    let start = std::time::Instant::now();
    let samples = loop {
        let samples = parse(&get(metrics, "/metrics"));
        let running = value(&samples, "tk_listen_connections_running");
        let queued = value(&samples, "tk_listen_queued_connections");
        if running == Some(SLOTS as f64) && queued == Some(WAITING as f64) {
            break samples;
        }
        assert!(
            start.elapsed() < GENEROUS,
            "never {} running and {} queued: {:?}",
            SLOTS,
            WAITING,
            samples
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        value(&samples, "tk_listen_connections_max"),
        Some(SLOTS as f64)
    );
    assert_eq!(
        value(&samples, "tk_listen_accepted_total"),
        Some(SLOTS as f64)
    );
    assert!(
        value(&samples, "tk_listen_queued_connections_limit").unwrap() >= WAITING as f64,
        "{:?}",
        samples
    );
    // Any path of the metrics listener is the page.
    let other = parse(&get(metrics, "/"));
    assert_eq!(
        value(&other, "tk_listen_connections_max"),
        Some(SLOTS as f64)
    );
    drop((silent, waiting));
    server.shutdown().unwrap();
}

/// Kills and reaps the example when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_example_serves_the_page_on_its_metrics_address() {
    let mut example = Running(
        Command::new(support::process::built_example("http"))
            .args(["127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start examples/http"),
    );
    // It prints where it listens: the server's line, then the page's.
    let mut lines = BufReader::new(example.0.stdout.take().unwrap()).lines();
    let mut address_on = |prefix: &str| -> SocketAddr {
        let line = lines.next().expect("a line").expect("UTF-8");
        let rest = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{:?} does not start with {:?}", line, prefix));
        rest.split('/').next().unwrap().parse().expect("an address")
    };
    let _server = address_on("listening on http://");
    let metrics = address_on("metrics on http://");
    let samples = parse(&get(metrics, "/metrics"));
    assert_eq!(value(&samples, "tk_listen_connections_max"), Some(1000.0));
    assert_eq!(value(&samples, "tk_listen_queued_connections"), Some(0.0));
}
