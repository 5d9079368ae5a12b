//! `limit_per_peer(n)` on real sockets: several peers on one machine, each
//! client bound to its own loopback address (Linux routes all of
//! 127.0.0.0/8 to the loopback interface) before it connects. Those tests
//! run on Linux only: macOS and the BSDs have only 127.0.0.1 on the
//! loopback interface unless it is given more, and the others are not
//! tried. The IPv6 test connects from `::1` and runs everywhere.

mod support;

use std::net;
use std::sync::mpsc;

use futures::{Future, Stream};
use tk_listen::ListenExt;

use support::{init_logging, let_through, GENEROUS};

// What only the tests of peers at 127.0.0.2 and up use.
#[cfg(target_os = "linux")]
use {
    std::time::Duration,
    support::{connect_from, Server},
    tk_listen::PeerStats,
};

/// A server whose connections say `hello\n`, then wait for the client to
/// close, then report on `released` once their `PeerConnection` is dropped.
#[cfg(target_os = "linux")]
fn start(max_per_peer: usize, max_connections: usize) -> (Server, PeerStats, mpsc::Receiver<()>) {
    let (stats_tx, stats_rx) = mpsc::channel();
    let (released_tx, released) = mpsc::channel();
    let server = Server::start(move |listener, handle| {
        let limited = listener
            .incoming()
            .sleep_on_error(Duration::from_millis(100), handle)
            .limit_per_peer(max_per_peer);
        stats_tx.send(limited.stats()).unwrap();
        limited
            .map(move |(connection, _peer)| {
                let released = released_tx.clone();
                tokio_io::io::write_all(connection, b"hello\n")
                    .and_then(|(connection, _)| tokio_io::io::read_to_end(connection, Vec::new()))
                    .then(move |result| {
                        drop(result); // the connection, and its slot
                        let _ = released.send(());
                        Ok(())
                    })
            })
            .listen(max_connections)
    });
    let stats = stats_rx.recv_timeout(GENEROUS).expect("the server's stats");
    (server, stats, released)
}

#[cfg(target_os = "linux")]
#[test]
fn a_peer_over_its_cap_is_closed_at_once_while_other_peers_are_served() {
    init_logging();
    let (server, stats, _released) = start(2, 100);
    let mut a: Vec<_> = (0..2).map(|_| connect_from(2, server.addr)).collect();
    for client in &mut a {
        assert!(let_through(client));
    }
    let mut over = connect_from(2, server.addr);
    assert!(!let_through(&mut over), "the third connection of 127.0.0.2");
    let mut b: Vec<_> = (0..2).map(|_| connect_from(3, server.addr)).collect();
    for client in &mut b {
        assert!(let_through(client), "127.0.0.3 is served");
    }
    let mut over = connect_from(3, server.addr);
    assert!(!let_through(&mut over), "the third connection of 127.0.0.3");
    assert_eq!(
        (stats.peers(), stats.connections(), stats.rejected()),
        (2, 4, 2)
    );
    assert_eq!(stats.connections_of("127.0.0.2".parse().unwrap()), 2);
    server.shutdown().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn closing_a_connection_lets_the_next_one_from_that_peer_in() {
    init_logging();
    let (server, stats, released) = start(1, 100);
    let mut first = connect_from(2, server.addr);
    assert!(let_through(&mut first));
    assert!(!let_through(&mut connect_from(2, server.addr)));

    drop(first);
    released
        .recv_timeout(GENEROUS)
        .expect("the first connection ended");
    assert_eq!(
        (stats.peers(), stats.connections()),
        (0, 0),
        "the peer holds nothing, so no peer is counted"
    );
    let mut second = connect_from(2, server.addr);
    assert!(let_through(&mut second), "the slot was released");
    assert_eq!((stats.accepted(), stats.rejected()), (2, 1));
    server.shutdown().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn rejected_connections_never_take_a_slot_of_listen() {
    init_logging();
    // listen(3): peer .2 may hold 2, so the third slot is free for another
    // peer however many more connections .2 opens.
    let (server, stats, _released) = start(2, 3);
    let mut held: Vec<_> = (0..2).map(|_| connect_from(2, server.addr)).collect();
    for client in &mut held {
        assert!(let_through(client));
    }
    for _ in 0..20 {
        assert!(!let_through(&mut connect_from(2, server.addr)));
    }
    let mut other = connect_from(4, server.addr);
    assert!(
        let_through(&mut other),
        "127.0.0.4 gets the last slot of listen(3)"
    );
    assert_eq!((stats.connections(), stats.rejected()), (3, 20));
    server.shutdown().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_flood_from_one_peer_is_closed_and_the_other_peers_are_still_served() {
    init_logging();
    let (server, stats, _released) = start(1, 1000);
    let mut held = connect_from(2, server.addr);
    assert!(let_through(&mut held));
    // 200 connections from .2 wait in the backlog together, more than three
    // poll budgets' worth, then one from .5.
    let mut flood: Vec<_> = (0..200).map(|_| connect_from(2, server.addr)).collect();
    let mut other = connect_from(5, server.addr);
    assert!(let_through(&mut other));
    for client in &mut flood {
        assert!(!let_through(client));
    }
    assert_eq!(stats.rejected(), 200);
    server.shutdown().unwrap();
}

#[test]
fn an_ipv6_client_counts_as_its_64_and_is_capped_the_same_way() {
    init_logging();
    init_logging();
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop, stopped) = futures::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut core = tokio_core::reactor::Core::new().expect("event loop");
        let handle = core.handle();
        let any_port = "[::1]:0".parse().unwrap();
        let listener =
            tokio_core::net::TcpListener::bind(&any_port, &handle).expect("bind [::1]:0");
        let addr = listener.local_addr().unwrap();
        let limited = listener.incoming().limit_per_peer(1);
        addr_tx.send((addr, limited.stats())).unwrap();
        let server = limited
            .map_err(|e| panic!("accept failed: {}", e))
            .map(|(connection, _peer)| {
                tokio_io::io::write_all(connection, b"hello\n")
                    .and_then(|(connection, _)| tokio_io::io::read_to_end(connection, Vec::new()))
                    .then(|_| Ok(()))
            })
            .listen(10);
        let _ = core.run(server.select(stopped.then(|_| Ok(()))));
    });
    let (addr, stats) = addr_rx
        .recv_timeout(GENEROUS)
        .expect("the server's address");

    let mut first = net::TcpStream::connect(addr).expect("connect to [::1]");
    first.set_read_timeout(Some(GENEROUS)).unwrap();
    assert!(let_through(&mut first));
    let mut second = net::TcpStream::connect(addr).expect("connect to [::1]");
    second.set_read_timeout(Some(GENEROUS)).unwrap();
    assert!(
        !let_through(&mut second),
        "::1 already holds its one connection"
    );
    assert_eq!(
        stats.connections_of("::".parse().unwrap()),
        1,
        "::1 is in ::/64"
    );
    assert_eq!(stats.rejected(), 1);

    let _ = stop.send(());
    server.join().expect("server thread");
}
