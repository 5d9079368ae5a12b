//! `AcceptQueue`: the clients a full `listen(n)` leaves in the kernel's
//! accept queue, the queue's limit, and a handle that never keeps a closed
//! listener's socket alive. Linux only (the queue is read on Linux only).
#![cfg(target_os = "linux")]

mod support;

use std::io::{self, Read, Write};
use std::net;
use std::sync::mpsc;

use futures::{Future, Stream};
use tk_listen::{AcceptQueue, ListenDrops, ListenExt, ListenStats};
use tokio_core::net::TcpListener;
use tokio_core::reactor::Handle;

use support::queue::{listener_with_backlog, serve_on, wait_until_waiting};
use support::{assert_refused, connect, Server, GENEROUS};

/// A `listen(2)` server whose connections wait for one byte from the
/// client, answer `bye` and close; its `ListenStats` come back on the
/// channel.
fn start_two_slot_server(listener: net::TcpListener) -> (Server, ListenStats) {
    let (stats_tx, stats_rx) = mpsc::channel();
    let server = serve_on(listener, move |listener: TcpListener, handle: &Handle| {
        let server = listener
            .incoming()
            .sleep_on_error(std::time::Duration::from_millis(100), handle)
            .map(|(socket, _peer)| {
                tokio_io::io::read_exact(socket, [0u8; 1])
                    .and_then(|(socket, _)| tokio_io::io::write_all(socket, b"bye"))
                    .map(|_| ())
                    .map_err(|e| panic!("test connection failed: {}", e))
            })
            .listen(2);
        stats_tx.send(server.stats()).unwrap();
        server
    });
    let stats = stats_rx.recv_timeout(GENEROUS).expect("server started");
    (server, stats)
}

/// Sends the byte the server waits for and reads its answer.
fn finish(mut client: net::TcpStream) {
    client.write_all(b"x").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"bye");
}

/// Waits (at most [`GENEROUS`]) until `done` says so of `stats`.
fn wait_for(stats: &ListenStats, what: &str, done: impl Fn(&ListenStats) -> bool) {
    let start = std::time::Instant::now();
    while !done(stats) {
        assert!(start.elapsed() < GENEROUS, "never {}: {:?}", what, stats);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_full_listen_leaves_the_clients_after_it_in_the_queue_until_it_serves_them() {
    let listener = listener_with_backlog(16);
    let addr = listener.local_addr().unwrap();
    let queue = AcceptQueue::of(&listener).unwrap();
    let (server, stats) = start_two_slot_server(listener);
    assert_eq!(queue.read().unwrap().waiting, 0);

    let running: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    wait_for(&stats, "2 running", |stats| stats.running() == 2);
    let waiting: Vec<_> = (0..5).map(|_| connect(addr)).collect();
    let length = wait_until_waiting(&queue, 5);
    assert_eq!(length.limit, 16);
    assert_eq!(stats.started(), 2, "the full listen(2) accepted no more");

    for client in running.into_iter().chain(waiting) {
        finish(client);
    }
    wait_until_waiting(&queue, 0);
    wait_for(&stats, "7 finished", |stats| stats.finished() == 7);
    server.shutdown().unwrap();
}

#[test]
fn the_limit_is_the_backlog_the_listener_was_made_with() {
    for backlog in [1, 7, 100] {
        let listener = listener_with_backlog(backlog);
        let length = AcceptQueue::of(&listener).unwrap().read().unwrap();
        assert_eq!(length.limit, backlog as u64);
        assert_eq!(length.waiting, 0);
    }
}

#[test]
fn the_queue_of_an_ipv6_listener_is_read_too() {
    let listener = match net::TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(e) => panic!("bind [::1]:0: {} (the tests need IPv6 on loopback)", e),
    };
    let queue = AcceptQueue::of(&listener).unwrap();
    let _client = connect(listener.local_addr().unwrap());
    wait_until_waiting(&queue, 1);
}

#[test]
fn the_handle_does_not_keep_a_dropped_listener_listening() {
    let listener = listener_with_backlog(16);
    let addr = listener.local_addr().unwrap();
    let queue = AcceptQueue::of(&listener).unwrap();
    let (server, _stats) = start_two_slot_server(listener);
    server.shutdown().unwrap();
    assert_refused(addr);
    let error = queue.read().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound, "{}", error);
}

#[test]
fn sockets_that_are_not_listening_tcp_sockets_are_refused() {
    let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = connect(listener.local_addr().unwrap());
    let directory = tempfile::tempdir().unwrap();
    let unix = std::os::unix::net::UnixListener::bind(directory.path().join("s")).unwrap();
    let file = std::fs::File::open("/proc/self/status").unwrap();
    for error in [
        AcceptQueue::of(&client).unwrap_err(),
        AcceptQueue::of(&unix).unwrap_err(),
        AcceptQueue::of(&file).unwrap_err(),
    ] {
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{}", error);
    }
}

#[test]
fn the_namespace_counts_of_dropped_connection_attempts_are_read() {
    // They count from boot for every listener; all a test can check is
    // that they are there and that drops include overflows.
    let drops = ListenDrops::read().unwrap();
    assert!(drops.drops >= drops.overflows, "{:?}", drops);
}

#[cfg(feature = "tokio1")]
#[test]
fn the_queue_of_a_tokio1_listener_is_read_too() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
            .unwrap();
        let listener = socket.listen(9).unwrap();
        let incoming = tk_listen::tokio1::incoming(listener);
        let queue = AcceptQueue::of(incoming.get_ref()).unwrap();
        assert_eq!(queue.read().unwrap().limit, 9);
        let addr = incoming.get_ref().local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(wait_until_waiting(&queue, 1).limit, 9);
    });
}
