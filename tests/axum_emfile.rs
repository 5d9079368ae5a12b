//! Running out of file descriptors under `axum::serve` through
//! `axum_listener`: the server pauses quietly (`sleep_on_error`'s 100 ms,
//! not axum's 1 s sleeps, and no spin), and once descriptors are free it
//! serves the HTTP clients waiting in the backlog, then new ones.
//!
//! The server runs in a child process (this same test binary, started with
//! an environment variable) whose `RLIMIT_NOFILE` is lowered, so that the
//! limit hits only the server and its CPU time can be read from `/proc`
//! (`support::emfile_child`). Linux only.
#![cfg(target_os = "linux")]

mod support;
mod tokio1_support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tk_listen::tokio1::{axum_listener, incoming, ListenExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use support::connect;
use support::emfile_child::{assert_not_served, ChildServer, CLIENTS, DESCRIPTORS};
use tokio1_support::http::{get as http_get, HELLO};

/// Set in the child's environment.
const CHILD: &str = "TK_LISTEN_AXUM_EMFILE_SERVER";

/// The server, run only as the child of the test below.
#[test]
#[ignore = "run by the descriptor_exhaustion test"]
fn emfile_server_child() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    env_logger::builder()
        .filter_level(log::LevelFilter::Warn)
        .init();
    // The parent stops us by closing our stdin.
    thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local_addr = listener.local_addr().unwrap();
        println!("listening on {}", local_addr);
        let mut accepted = 0;
        let mut first_error = true;
        let accepts = incoming(listener)
            // Seen before the policy under test, as in tests/tokio1_emfile.rs.
            .map(move |result| {
                if let Err(e) = &result {
                    if first_error {
                        first_error = false;
                        eprintln!("accept failed: {}", e);
                    }
                }
                result
            })
            .sleep_on_error(Duration::from_millis(100))
            .map(move |accepted_pair| {
                accepted += 1;
                eprintln!("accepted {}", accepted);
                accepted_pair
            });
        let app = Router::new().route("/", get(|| async { HELLO }));
        axum::serve(axum_listener(accepts, local_addr), app)
            .await
            .unwrap();
    });
}

/// A client that has sent its request; the server answers once it accepts.
fn request(addr: SocketAddr) -> TcpStream {
    use std::io::Write;
    let mut client = connect(addr);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: tk-listen\r\n\r\n")
        .unwrap();
    client
}

fn assert_hello(client: &mut TcpStream) {
    assert_eq!(
        tokio1_support::http::read_response(client),
        Some((200, HELLO.to_string()))
    );
}

#[test]
fn descriptor_exhaustion_under_axum_serve_pauses_quietly_and_serves_the_backlog_and_new_clients() {
    let server = ChildServer::start(CHILD, "1", DESCRIPTORS);

    // More clients than the server has descriptors, each with its request
    // sent; they all complete the handshake in the kernel's backlog.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| request(server.addr)).collect();
    let served = server.accepted_before_first_error();
    assert!(
        served > 0 && served < CLIENTS,
        "accepted {} before running out of descriptors",
        served
    );

    // Exhausted: the server must sit quietly, not retry accept() in a loop.
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    thread::sleep(Duration::from_millis(1500));
    let cpu_share =
        (server.cpu_time() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    eprintln!(
        "server CPU while out of descriptors: {:.1}% of a core",
        cpu_share * 100.0
    );
    assert!(
        cpu_share < 0.5,
        "server used {:.0}% of a core while out of descriptors",
        cpu_share * 100.0
    );

    // The first clients were answered (and keep their connections open);
    // the rest still wait in the backlog.
    for client in &mut clients[..served] {
        assert_hello(client);
    }
    for client in &clients[served..] {
        assert_not_served(client);
    }

    // Free the descriptors: the waiting clients are accepted and answered
    // without any new client arriving.
    let mut waiting = clients.split_off(served);
    drop(clients);
    for client in &mut waiting {
        assert_hello(client);
    }
    server.wait_for_accepts(CLIENTS);
    drop(waiting);

    // And new clients are served too, on fresh and kept-alive connections.
    for _ in 0..3 {
        let mut client = request(server.addr);
        assert_hello(&mut client);
        assert_eq!(http_get(&mut client, "/"), Some((200, HELLO.to_string())));
    }
    server.stop();
}
