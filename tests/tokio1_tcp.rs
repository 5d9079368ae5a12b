//! The tokio 1 pipeline on real sockets on 127.0.0.1 (and a Unix socket):
//! `incoming`, `sleep_on_error`, `listen`; the limit, failures, panics,
//! graceful shutdown of an idle, a busy and a full server, forced shutdown.
//! Every test runs on both runtime flavours.

mod support;
mod tokio1_support;

use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tk_listen::tokio1::{incoming, ListenExt};
use tk_listen::ListenStats;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;

use tokio1_support::{
    assert_refused, connect, fetch, init_logging, read_reply, Flavour, Gauge, OnDrop, Server,
    FLAVOURS, GENEROUS,
};

const PAUSE: Duration = Duration::from_millis(100);

/// Connects every client before any is served, so that the server finds them
/// all waiting in its backlog.
fn connect_all(server: &Server, clients: usize) -> Vec<TcpStream> {
    (0..clients).map(|_| connect(server.addr)).collect()
}

#[test]
fn forty_clients_against_listen_four_run_exactly_four_at_once_and_all_get_replies() {
    for flavour in FLAVOURS {
        let gauge = Arc::new(Gauge::default());
        let running = gauge.clone();
        let (stats_tx, stats) = mpsc::channel::<ListenStats>();
        let server = Server::start(flavour, move |listener| {
            let server = incoming(listener)
                .sleep_on_error(PAUSE)
                .take(40)
                .map(move |(mut socket, _peer)| {
                    let running = running.clone();
                    async move {
                        running.enter();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let written = socket.write_all(b"hello\n").await;
                        running.leave();
                        written
                    }
                })
                .listen(4);
            stats_tx.send(server.stats()).unwrap();
            server
        });
        let stats = stats.recv().unwrap();
        let clients = connect_all(&server, 40);
        for client in clients {
            assert_eq!(read_reply(client).unwrap(), b"hello\n");
        }
        server.wait();
        assert_eq!(gauge.finished(), 40);
        assert_eq!(gauge.max(), 4, "{:?}: connections running at once", flavour);
        assert_eq!(
            (stats.started(), stats.finished(), stats.running()),
            (40, 40, 0)
        );
        assert_eq!(stats.max_connections(), 4);
    }
}

#[test]
fn every_other_connection_failing_does_not_disturb_the_rest() {
    for flavour in FLAVOURS {
        let (stats_tx, stats) = mpsc::channel::<ListenStats>();
        let server = Server::start(flavour, move |listener| {
            let mut accepted = 0;
            let server = incoming(listener)
                .sleep_on_error(PAUSE)
                .take(40)
                .map(move |(mut socket, _peer)| {
                    accepted += 1;
                    let fail = accepted % 2 == 0;
                    async move {
                        if fail {
                            return Err("failed on purpose");
                        }
                        socket.write_all(b"hello\n").await.map_err(|_| "write")
                    }
                })
                .listen(4);
            stats_tx.send(server.stats()).unwrap();
            server
        });
        let stats = stats.recv().unwrap();
        let replies: Vec<Vec<u8>> = connect_all(&server, 40)
            .into_iter()
            .map(|c| read_reply(c).unwrap())
            .collect();
        let served = replies
            .iter()
            .filter(|r| r.as_slice() == b"hello\n")
            .count();
        let dropped = replies.iter().filter(|r| r.is_empty()).count();
        assert_eq!((served, dropped), (20, 20), "{:?}", flavour);
        server.wait();
        assert_eq!((stats.finished(), stats.failed()), (20, 20));
    }
}

#[test]
fn a_panicking_connection_does_not_stop_the_server() {
    init_logging();
    for flavour in FLAVOURS {
        let (stats_tx, stats) = mpsc::channel::<ListenStats>();
        let server = Server::start(flavour, move |listener| {
            let server = incoming(listener)
                .sleep_on_error(PAUSE)
                .map(|(mut socket, _peer)| async move {
                    let mut first = [0; 1];
                    use tokio::io::AsyncReadExt;
                    let _ = socket.read_exact(&mut first).await;
                    if first[0] == b'!' {
                        panic!("a client asked this connection to panic");
                    }
                    socket.write_all(b"hello\n").await
                })
                .listen(1);
            stats_tx.send(server.stats()).unwrap();
            server
        });
        let stats = stats.recv().unwrap();
        for _ in 0..2 {
            let mut client = connect(server.addr);
            std::io::Write::write_all(&mut client, b"!").unwrap();
            assert_eq!(read_reply(client).unwrap(), b"", "{:?}", flavour);
        }
        // One slot, so this is served only if the panics freed it.
        let mut client = connect(server.addr);
        std::io::Write::write_all(&mut client, b"?").unwrap();
        assert_eq!(read_reply(client).unwrap(), b"hello\n");
        assert_eq!(stats.panicked(), 2);
        server.shutdown();
    }
}

#[test]
fn ending_the_accept_stream_drains_running_connections_then_resolves() {
    for flavour in FLAVOURS {
        let server = Server::start(flavour, move |listener| {
            incoming(listener)
                .sleep_on_error(PAUSE)
                .take(5)
                .map(|(mut socket, _peer)| async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    socket.write_all(b"hello\n").await
                })
                .listen(10)
        });
        let clients = connect_all(&server, 5);
        // The server ends by itself, after its five connections ...
        server.wait();
        // ... so each of them got its full reply, none was cut.
        for client in clients {
            assert_eq!(read_reply(client).unwrap(), b"hello\n", "{:?}", flavour);
        }
        assert_refused(server.addr);
    }
}

#[test]
fn forced_shutdown_returns_promptly_and_clients_see_eof() {
    for flavour in FLAVOURS {
        let (accepted_tx, accepted) = mpsc::channel();
        let server = Server::start(flavour, move |listener| {
            incoming(listener)
                .sleep_on_error(PAUSE)
                .map(move |(socket, _peer)| {
                    accepted_tx.send(()).unwrap();
                    // A connection that would never finish by itself.
                    async move {
                        let _socket = socket;
                        std::future::pending::<()>().await;
                    }
                })
                .listen(10)
        });
        let clients = connect_all(&server, 3);
        for _ in 0..3 {
            accepted
                .recv_timeout(GENEROUS)
                .expect("server did not accept");
        }
        let asked = Instant::now();
        server.shutdown();
        let took = asked.elapsed();
        assert!(took < GENEROUS, "{:?}: shutdown took {:?}", flavour, took);
        for client in clients {
            assert_eq!(
                read_reply(client).unwrap(),
                b"",
                "connection was not closed"
            );
        }
    }
}

/// A server whose connections each report their acceptance, then wait for
/// `release` before they answer; it stops accepting on `stop`.
struct HeldServer {
    server: Server,
    stop: Option<oneshot::Sender<()>>,
    release: watch::Sender<bool>,
    accepted: mpsc::Receiver<()>,
    /// Gets a message when the accept stream, and so the listener, is
    /// dropped.
    closed: mpsc::Receiver<()>,
    stats: ListenStats,
}

impl HeldServer {
    fn start(flavour: Flavour, max_connections: usize) -> HeldServer {
        init_logging();
        let (stop, stopped) = oneshot::channel::<()>();
        let (release, released) = watch::channel(false);
        let (accepted_tx, accepted) = mpsc::channel();
        let (stats_tx, stats) = mpsc::channel::<ListenStats>();
        let (closed_tx, closed) = mpsc::channel();
        let server = Server::start(flavour, move |listener: TcpListener| {
            let on_close = OnDrop::new(move || {
                let _ = closed_tx.send(());
            });
            let server = incoming(listener)
                .sleep_on_error(PAUSE)
                .map(move |(mut socket, _peer)| {
                    let _ = &on_close;
                    let _ = accepted_tx.send(());
                    let mut released = released.clone();
                    async move {
                        let _ = released.wait_for(|&r| r).await;
                        socket.write_all(b"hello\n").await
                    }
                })
                .listen(max_connections)
                .with_graceful_shutdown(stopped);
            stats_tx.send(server.stats()).unwrap();
            server
        });
        HeldServer {
            server,
            stop: Some(stop),
            release,
            accepted,
            closed,
            stats: stats.recv().unwrap(),
        }
    }

    /// Starts `n` clients that each read until EOF, and waits until the
    /// server has accepted all of them.
    fn clients_in_flight(&self, n: usize) -> Vec<thread::JoinHandle<Vec<u8>>> {
        let addr = self.server.addr;
        let clients = (0..n)
            .map(|_| thread::spawn(move || fetch(addr).expect("client read")))
            .collect();
        for i in 0..n {
            self.accepted
                .recv_timeout(GENEROUS)
                .unwrap_or_else(|_| panic!("only {} of {} clients were accepted", i, n));
        }
        clients
    }

    fn signal(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    /// Waits until the signal has closed the listener, then checks that
    /// new clients are refused.
    fn wait_until_refused(&self) {
        self.closed
            .recv_timeout(GENEROUS)
            .expect("the signal did not close the listener");
        assert_refused(self.server.addr);
    }
}

#[test]
fn an_idle_server_stops_and_refuses_clients_on_the_signal() {
    for flavour in FLAVOURS {
        let mut held = HeldServer::start(flavour, 4);
        held.signal();
        held.wait_until_refused();
        held.server.wait();
        assert_eq!(held.stats.started(), 0, "{:?}", flavour);
    }
}

#[test]
fn a_busy_server_refuses_new_clients_on_the_signal_and_drains_the_running_ones() {
    for flavour in FLAVOURS {
        let mut held = HeldServer::start(flavour, 4);
        let clients = held.clients_in_flight(2);
        held.signal();
        held.wait_until_refused();
        assert!(
            !held.server.is_finished(),
            "resolved before its connections"
        );
        assert_eq!(held.stats.running(), 2);
        held.release.send(true).unwrap();
        for client in clients {
            assert_eq!(client.join().unwrap(), b"hello\n", "{:?}", flavour);
        }
        held.server.wait();
        assert_eq!(held.stats.finished(), 2);
    }
}

#[test]
fn a_full_server_closes_its_listener_on_the_signal_without_waiting_for_a_slot() {
    for flavour in FLAVOURS {
        let mut held = HeldServer::start(flavour, 2);
        let clients = held.clients_in_flight(2);
        // A third client waits in the backlog of the full server.
        let waiting = connect(held.server.addr);
        held.signal();
        held.wait_until_refused();
        assert_eq!(held.stats.running(), 2, "{:?}", flavour);
        // The backlogged client was never accepted: its connection was reset
        // with the listener.
        match read_reply(waiting) {
            Ok(reply) => assert_eq!(reply, b"", "a backlogged client was served"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        held.release.send(true).unwrap();
        for client in clients {
            assert_eq!(client.join().unwrap(), b"hello\n");
        }
        held.server.wait();
        assert_eq!((held.stats.started(), held.stats.finished()), (2, 2));
    }
}

#[test]
fn listen_local_serves_real_clients_with_state_that_is_not_send() {
    for flavour in FLAVOURS {
        let server = Server::start(flavour, move |listener| {
            let served = std::rc::Rc::new(std::cell::Cell::new(0));
            incoming(listener)
                .sleep_on_error(PAUSE)
                .take(3)
                .map(move |(mut socket, _peer)| {
                    let served = served.clone();
                    async move {
                        served.set(served.get() + 1);
                        let reply = format!("hello {}\n", served.get());
                        socket.write_all(reply.as_bytes()).await
                    }
                })
                .listen_local(2)
        });
        for i in 1..=3 {
            let reply = fetch(server.addr).unwrap();
            assert_eq!(reply, format!("hello {}\n", i).as_bytes(), "{:?}", flavour);
        }
        server.wait();
    }
}

#[cfg(unix)]
#[test]
fn a_unix_socket_listener_works_the_same_way() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    for flavour in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.sock");
        let runtime = flavour.runtime();
        let bound_path = path.clone();
        let (ready_tx, ready) = mpsc::channel();
        let server = thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&bound_path).unwrap();
                ready_tx.send(()).unwrap();
                let server = incoming(listener)
                    .sleep_on_error(PAUSE)
                    .take(3)
                    .map(|(mut socket, _peer)| async move { socket.write_all(b"hello\n").await })
                    .listen(2);
                let stats = server.stats();
                tokio::time::timeout(GENEROUS, server)
                    .await
                    .expect("served");
                stats
            })
        });
        ready.recv_timeout(GENEROUS).unwrap();
        for _ in 0..3 {
            let mut client = UnixStream::connect(&path).unwrap();
            client.set_read_timeout(Some(GENEROUS)).unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).unwrap();
            assert_eq!(reply, b"hello\n", "{:?}", flavour);
        }
        let stats = server.join().unwrap();
        assert_eq!(stats.finished(), 3);
    }
}
