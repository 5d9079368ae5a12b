//! `tk_listen::tokio1`'s `limit_per_peer(k)`: on real sockets, on both
//! runtime flavours, clients bound to loopback addresses 127.0.0.2 and up
//! (Linux only, see `support::connect_from`); and the tokio 1 I/O of
//! `PeerConnection`.

mod support;
mod tokio1_support;

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tk_listen::tokio1::{ListenExt, PeerConnection};
use tokio::io::AsyncWrite;

use tokio1_support::{init_logging, poll_stream_once, CountingNotify};

#[cfg(target_os = "linux")]
use {
    std::net::TcpStream,
    std::sync::atomic::{AtomicUsize, Ordering},
    std::sync::mpsc,
    std::time::Duration,
    support::{connect_from, let_through},
    tk_listen::tokio1::{incoming, PeerStats},
    tk_listen::ListenStats,
    tokio::io::{AsyncReadExt, AsyncWriteExt},
    tokio::net::TcpListener,
    tokio1_support::{Flavour, Server, FLAVOURS, GENEROUS},
    tokio_stream::StreamExt,
};

/// What a test sees of a running server: its address, the per-peer and
/// `listen` counters, how many connections reached `map`, and a notice per
/// connection that ended (its `PeerConnection` dropped): the client's
/// address as accepted, and the peer it counted against.
#[cfg(target_os = "linux")]
struct Served {
    server: Server,
    peers: PeerStats,
    listen: ListenStats,
    mapped: Arc<AtomicUsize>,
    released: mpsc::Receiver<(SocketAddr, IpAddr)>,
}

/// A server on `listener` (or, if `None`, the 127.0.0.1 one the helper
/// binds) whose connections say `hello\n`, read until the client closes,
/// then report on `released`: `limit_per_peer(max_per_peer)`
/// before `listen(max_connections)`.
#[cfg(target_os = "linux")]
fn start(
    flavour: Flavour,
    max_per_peer: usize,
    max_connections: usize,
    listener: Option<std::net::TcpListener>,
) -> Served {
    let (stats_tx, stats_rx) = mpsc::channel();
    let (released_tx, released) = mpsc::channel();
    let mapped = Arc::new(AtomicUsize::new(0));
    let counter = mapped.clone();
    let server = Server::start(flavour, move |helper_listener| async move {
        let listener = match listener {
            Some(listener) => TcpListener::from_std(listener).expect("a tokio listener"),
            None => helper_listener,
        };
        let addr = listener.local_addr().unwrap();
        let limited = incoming(listener)
            .sleep_on_error(Duration::from_millis(100))
            .limit_per_peer(max_per_peer);
        let peers = limited.stats();
        let server = limited
            .map(move |(mut connection, addr)| {
                counter.fetch_add(1, Ordering::SeqCst);
                let released = released_tx.clone();
                async move {
                    connection.write_all(b"hello\n").await?;
                    let mut rest = Vec::new();
                    let read = connection.read_to_end(&mut rest).await;
                    let peer = connection.peer();
                    drop(connection); // and its slot
                    let _ = released.send((addr, peer));
                    read.map(drop)
                }
            })
            .listen(max_connections);
        stats_tx.send((addr, peers, server.stats())).unwrap();
        server.await;
    });
    let (addr, peers, listen) = stats_rx.recv_timeout(GENEROUS).expect("the server's stats");
    // The helper's own listener is the one served unless another was given.
    let mut server = server;
    server.addr = addr;
    Served {
        server,
        peers,
        listen,
        mapped,
        released,
    }
}

#[cfg(target_os = "linux")]
fn ip(ip: &str) -> IpAddr {
    ip.parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_peers_connection_over_its_cap_is_closed_at_once_and_never_reaches_map() {
    init_logging();
    for flavour in FLAVOURS {
        let served = start(flavour, 2, 100, None);
        let mut held: Vec<TcpStream> = (0..2)
            .map(|_| connect_from(2, served.server.addr))
            .collect();
        for client in &mut held {
            assert!(let_through(client), "{flavour:?}: within the cap");
        }
        let mut over = connect_from(2, served.server.addr);
        assert!(
            !let_through(&mut over),
            "{flavour:?}: the third from 127.0.0.2"
        );
        assert_eq!(
            served.mapped.load(Ordering::SeqCst),
            2,
            "{flavour:?}: reached map"
        );
        assert_eq!(
            (served.peers.connections(), served.peers.rejected()),
            (2, 1),
            "{flavour:?}"
        );
        served.server.shutdown();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn other_peers_are_served_while_one_is_at_its_cap() {
    init_logging();
    for flavour in FLAVOURS {
        let served = start(flavour, 1, 100, None);
        let mut held = connect_from(2, served.server.addr);
        assert!(let_through(&mut held), "{flavour:?}");
        assert!(
            !let_through(&mut connect_from(2, served.server.addr)),
            "{flavour:?}"
        );
        for host in 3..6 {
            let mut other = connect_from(host, served.server.addr);
            assert!(
                let_through(&mut other),
                "{flavour:?}: 127.0.0.{host} is served"
            );
        }
        assert_eq!(
            served.peers.connections_of(ip("127.0.0.2")),
            1,
            "{flavour:?}"
        );
        served.server.shutdown();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_released_slot_lets_the_peers_next_connection_in() {
    init_logging();
    for flavour in FLAVOURS {
        let served = start(flavour, 1, 100, None);
        let mut first = connect_from(2, served.server.addr);
        assert!(let_through(&mut first), "{flavour:?}");
        assert!(
            !let_through(&mut connect_from(2, served.server.addr)),
            "{flavour:?}"
        );
        drop(first);
        let (_, peer) = served
            .released
            .recv_timeout(GENEROUS)
            .expect("the first one ended");
        assert_eq!(peer, ip("127.0.0.2"), "{flavour:?}");
        let mut next = connect_from(2, served.server.addr);
        assert!(let_through(&mut next), "{flavour:?}: the slot was released");
        assert_eq!(
            (served.peers.accepted(), served.peers.rejected()),
            (2, 1),
            "{flavour:?}"
        );
        served.server.shutdown();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_flood_from_one_peer_takes_no_slot_of_listen() {
    init_logging();
    for flavour in FLAVOURS {
        // listen(2): 127.0.0.2 may hold 1, so the second slot stays free for
        // another peer however many more connections .2 opens.
        let served = start(flavour, 1, 2, None);
        let mut held = connect_from(2, served.server.addr);
        assert!(let_through(&mut held), "{flavour:?}");
        // More than a poll budget (64) waiting in the backlog at once.
        let mut flood: Vec<TcpStream> = (0..100)
            .map(|_| connect_from(2, served.server.addr))
            .collect();
        let mut other = connect_from(3, served.server.addr);
        assert!(
            let_through(&mut other),
            "{flavour:?}: 127.0.0.3 gets listen's last slot"
        );
        for client in &mut flood {
            assert!(!let_through(client), "{flavour:?}: the flood is closed");
        }
        assert_eq!(served.peers.rejected(), 100, "{flavour:?}");
        assert_eq!(
            served.listen.started(),
            2,
            "{flavour:?}: only two reached listen"
        );
        assert_eq!(served.mapped.load(Ordering::SeqCst), 2, "{flavour:?}");
        served.server.shutdown();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_dual_stack_listener_counts_ipv4_mapped_peers_as_their_ipv4_address() {
    use socket2::{Domain, Socket, Type};

    init_logging();
    for flavour in FLAVOURS {
        // An IPv6 socket that takes IPv4 connections too, bound to the
        // IPv4-mapped loopback address: its peers arrive as
        // `::ffff:127.0.0.2`.
        let socket = Socket::new(Domain::IPV6, Type::STREAM, None).expect("an IPv6 socket");
        socket.set_only_v6(false).expect("dual-stack");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:0".parse().unwrap();
        socket
            .bind(&mapped.into())
            .expect("bind [::ffff:127.0.0.1]:0");
        socket.listen(128).expect("listen");
        socket.set_nonblocking(true).unwrap();
        let served = start(flavour, 1, 100, Some(socket.into()));
        let v4 = SocketAddr::from(([127, 0, 0, 1], served.server.addr.port()));

        let mut first = connect_from(2, v4);
        assert!(let_through(&mut first), "{flavour:?}");
        assert!(
            !let_through(&mut connect_from(2, v4)),
            "{flavour:?}: the same peer"
        );
        let mut other = connect_from(3, v4);
        assert!(
            let_through(&mut other),
            "{flavour:?}: 127.0.0.3 is another peer"
        );
        assert_eq!(served.peers.peers(), 2, "{flavour:?}");
        assert_eq!(
            served.peers.connections_of(ip("127.0.0.2")),
            1,
            "{flavour:?}"
        );
        drop(first);
        let (addr, peer) = served
            .released
            .recv_timeout(GENEROUS)
            .expect("the first one ended");
        assert_eq!(
            addr.ip(),
            ip("::ffff:127.0.0.2"),
            "{flavour:?}: accepted as IPv6"
        );
        assert_eq!(
            peer,
            ip("127.0.0.2"),
            "{flavour:?}: PeerConnection::peer is IPv4"
        );
        served.server.shutdown();
    }
}

#[test]
#[should_panic(expected = "limit_per_peer(0) would close every connection")]
fn a_cap_of_zero_panics_with_a_message() {
    let accepts = tokio_stream::iter(Vec::<((), SocketAddr)>::new());
    let _ = accepts.limit_per_peer(0);
}

/// A socket that records the write calls it gets.
#[derive(Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.calls.lock().unwrap().push("poll_write");
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.calls.lock().unwrap().push("poll_flush");
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.calls.lock().unwrap().push("poll_shutdown");
        Poll::Ready(Ok(()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.calls.lock().unwrap().push("poll_write_vectored");
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        self.calls.lock().unwrap().push("is_write_vectored");
        true
    }
}

#[test]
fn a_peer_connection_forwards_vectored_writes_to_its_socket() {
    let recorder = Recorder::default();
    let calls = recorder.calls.clone();
    let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let mut limited = tokio_stream::iter(vec![(recorder, client)]).limit_per_peer(1);
    let (_count, waker) = CountingNotify::waker();
    let (mut connection, _): (PeerConnection<Recorder>, _) =
        match poll_stream_once(&mut limited, &waker) {
            Poll::Ready(Some(item)) => item,
            _ => panic!("the connection is let through"),
        };
    let mut cx = Context::from_waker(&waker);
    assert!(connection.is_write_vectored());
    let bufs = [IoSlice::new(b"head"), IoSlice::new(b"body")];
    let written = Pin::new(&mut connection).poll_write_vectored(&mut cx, &bufs);
    assert!(matches!(written, Poll::Ready(Ok(8))), "{written:?}");
    assert!(Pin::new(&mut connection)
        .poll_write(&mut cx, b"x")
        .is_ready());
    assert!(Pin::new(&mut connection).poll_flush(&mut cx).is_ready());
    assert!(Pin::new(&mut connection).poll_shutdown(&mut cx).is_ready());
    assert_eq!(
        *calls.lock().unwrap(),
        [
            "is_write_vectored",
            "poll_write_vectored",
            "poll_write",
            "poll_flush",
            "poll_shutdown"
        ]
    );
}
