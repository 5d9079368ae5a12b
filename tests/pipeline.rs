//! The whole pipeline on real sockets on 127.0.0.1: limit, failures,
//! graceful drain, forced shutdown.

mod support;

use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use futures::{Future, Stream};
use tk_listen::ListenExt;

use support::{assert_refused, connect, hello_after, read_reply, Gauge, Server, GENEROUS};

const PAUSE: Duration = Duration::from_millis(100);

/// Connects every client before any is served, so that the server finds them
/// all waiting in its backlog.
fn connect_all(server: &Server, clients: usize) -> Vec<TcpStream> {
    (0..clients).map(|_| connect(server.addr)).collect()
}

#[test]
fn forty_clients_against_listen_four_run_exactly_four_at_once_and_all_get_replies() {
    let gauge = Arc::new(Gauge::default());
    let running = gauge.clone();
    let server = Server::start(move |listener, handle| {
        let handle = handle.clone();
        listener
            .incoming()
            .take(40)
            .sleep_on_error(PAUSE, &handle)
            .map(move |(socket, _)| {
                running.enter();
                let running = running.clone();
                hello_after(socket, Duration::from_millis(100), &handle).then(move |result| {
                    running.leave();
                    result
                })
            })
            .listen(4)
    });
    let clients = connect_all(&server, 40);
    for client in clients {
        assert_eq!(read_reply(client).unwrap(), b"hello\n");
    }
    assert_eq!(server.wait(), Ok(()));
    assert_eq!(gauge.finished(), 40);
    assert_eq!(gauge.max(), 4, "connections running at once");
}

#[test]
fn every_other_connection_failing_does_not_disturb_the_rest() {
    let server = Server::start(move |listener, handle| {
        let handle = handle.clone();
        let mut accepted = 0;
        listener
            .incoming()
            .take(40)
            .sleep_on_error(PAUSE, &handle)
            .map(move |(socket, _)| {
                accepted += 1;
                if accepted % 2 == 0 {
                    Either::A(future::err(()))
                } else {
                    Either::B(hello_after(socket, Duration::from_millis(10), &handle))
                }
            })
            .listen(4)
    });
    let clients = connect_all(&server, 40);
    let replies: Vec<Vec<u8>> = clients
        .into_iter()
        .map(|c| read_reply(c).unwrap())
        .collect();
    let served = replies
        .iter()
        .filter(|r| r.as_slice() == b"hello\n")
        .count();
    let dropped = replies.iter().filter(|r| r.is_empty()).count();
    assert_eq!((served, dropped), (20, 20));
    assert_eq!(
        server.wait(),
        Ok(()),
        "a failing connection ended the listener"
    );
}

#[test]
fn ending_the_accept_stream_drains_running_connections_then_resolves() {
    let server = Server::start(move |listener, handle| {
        let handle = handle.clone();
        listener
            .incoming()
            .take(5)
            .sleep_on_error(PAUSE, &handle)
            .map(move |(socket, _)| hello_after(socket, Duration::from_millis(300), &handle))
            .listen(10)
    });
    let clients = connect_all(&server, 5);
    // The server ends by itself: the stream ended after five accepts, and
    // `listen` waited for the five connections before resolving ...
    assert_eq!(server.wait(), Ok(()));
    // ... so each of them got its full reply, none was cut.
    for client in clients {
        assert_eq!(read_reply(client).unwrap(), b"hello\n");
    }
    // And once the server future is gone, so is the listening socket.
    assert_refused(server.addr);
}

#[test]
fn forced_shutdown_returns_promptly_and_clients_see_eof() {
    let (accepted_tx, accepted) = mpsc::channel();
    let server = Server::start(move |listener, handle| {
        listener
            .incoming()
            .sleep_on_error(PAUSE, handle)
            .map(move |(socket, _)| {
                accepted_tx.send(()).unwrap();
                // A connection that would never finish by itself.
                future::empty::<(), ()>().then(move |r| {
                    drop(socket);
                    r
                })
            })
            .listen(10)
    });
    let clients = connect_all(&server, 3);
    for _ in 0..3 {
        accepted
            .recv_timeout(GENEROUS)
            .expect("server did not accept");
    }
    // `shutdown` returns once `Core::run` returned: it takes microseconds,
    // so a second is a bound no healthy run comes near.
    let asked = Instant::now();
    assert_eq!(server.shutdown(), Ok(()));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {:?}", took);
    for client in clients {
        assert_eq!(
            read_reply(client).unwrap(),
            b"",
            "connection was not closed"
        );
    }
}
