//! Panic isolation in `listen`: a connection future that panics is dropped and
//! counted, and everything else carries on. Real sockets on 127.0.0.1.

mod support;

use std::sync::mpsc;

use futures::future::{self, Shared};
use futures::sync::oneshot;
use futures::{Future, Stream};
use log::Level;
use tk_listen::{ListenExt, ListenStats};
use tokio_core::net::TcpStream;

use support::{connect, fetch, logs, read_reply, Server, GENEROUS};

/// What the n-th accepted connection does.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Panics on its first poll.
    PanicAtOnce,
    /// Panics on a later poll, once released.
    PanicLater,
    /// Writes `hello\n` once released.
    Hello,
}

fn connection(
    socket: TcpStream,
    kind: Kind,
    released: &Shared<oneshot::Receiver<()>>,
) -> Box<dyn Future<Item = (), Error = ()>> {
    let released = released.clone();
    match kind {
        Kind::PanicAtOnce => Box::new(future::lazy(move || -> Result<(), ()> {
            drop(socket);
            panic!("boom at once")
        })),
        Kind::PanicLater => Box::new(released.then(move |_| -> Result<(), ()> {
            drop(socket);
            panic!("boom later, connection {}", 2)
        })),
        Kind::Hello => Box::new(
            released
                .then(move |_| tokio_io::io::write_all(socket, b"hello\n"))
                .map(|_| ())
                .map_err(|_| ()),
        ),
    }
}

/// A `listen(max_connections)` server whose n-th connection behaves as
/// `kinds[n]` (then `Hello`); every accept is reported on `accepted`.
struct PanickyServer {
    server: Server,
    stats: ListenStats,
    release: Option<oneshot::Sender<()>>,
    accepted: mpsc::Receiver<()>,
}

impl PanickyServer {
    fn start(max_connections: usize, kinds: Vec<Kind>) -> PanickyServer {
        logs::capture();
        let (release, released) = oneshot::channel::<()>();
        let (accepted_tx, accepted) = mpsc::channel();
        let (stats_tx, stats) = mpsc::channel();
        let server = Server::start(move |listener, handle| {
            let released = released.shared();
            let mut kinds = kinds.into_iter();
            let server = listener
                .incoming()
                .sleep_on_error(std::time::Duration::from_millis(100), handle)
                .map(move |(socket, _)| {
                    accepted_tx.send(()).unwrap();
                    connection(socket, kinds.next().unwrap_or(Kind::Hello), &released)
                })
                .listen(max_connections);
            stats_tx.send(server.stats()).unwrap();
            server
        });
        PanickyServer {
            server,
            stats: stats.recv_timeout(GENEROUS).expect("no stats"),
            release: Some(release),
            accepted,
        }
    }

    /// Lets the held connections go on.
    fn release(&mut self) {
        self.release.take().unwrap().send(()).unwrap();
    }

    /// Connects a client and waits until the server accepted it.
    fn client(&self) -> std::net::TcpStream {
        let client = connect(self.server.addr);
        self.accepted
            .recv_timeout(GENEROUS)
            .expect("client not accepted");
        client
    }
}

#[test]
fn panics_on_first_and_later_polls_leave_the_other_connections_and_the_listener_running() {
    use Kind::*;
    let mut server = PanickyServer::start(4, vec![Hello, PanicAtOnce, PanicLater, Hello]);
    let clients: Vec<_> = (0..4).map(|_| server.client()).collect();

    server.release();
    let replies: Vec<Vec<u8>> = clients
        .into_iter()
        .map(|client| read_reply(client).unwrap_or_default())
        .collect();
    assert_eq!(replies[0], b"hello\n");
    assert_eq!(replies[1], b"", "dropped at its panic");
    assert_eq!(replies[2], b"", "dropped at its panic");
    assert_eq!(replies[3], b"hello\n");

    assert_eq!(
        fetch(server.server.addr).unwrap(),
        b"hello\n",
        "still serving"
    );
    // A connection may close its socket before it resolves: once the event
    // loop has stopped, every count is final.
    let stats = server.stats.clone();
    assert_eq!(server.server.shutdown(), Ok(()));
    assert_eq!(stats.panicked(), 2);
    assert_eq!(stats.finished(), 3);
    assert_eq!(
        (stats.started(), stats.running(), stats.failed()),
        (5, 0, 0)
    );
    let logged = errors_logged();
    assert!(
        logged.iter().any(|line| line.contains("boom at once")),
        "{:?}",
        logged
    );
    assert!(
        logged
            .iter()
            .any(|line| line.contains("boom later, connection 2")),
        "{:?}",
        logged
    );
}

#[test]
fn more_panics_in_a_row_than_slots_leave_every_slot_free() {
    let mut server = PanickyServer::start(2, vec![Kind::PanicAtOnce; 10]);
    for _ in 0..10 {
        assert_eq!(read_reply(server.client()).unwrap_or_default(), b"");
    }
    server.release();

    // Both slots are free: two held clients are served at once.
    let (first, second) = (server.client(), server.client());
    assert_eq!(read_reply(first).unwrap(), b"hello\n");
    assert_eq!(read_reply(second).unwrap(), b"hello\n");
    let stats = server.stats.clone();
    assert_eq!(server.server.shutdown(), Ok(()));
    assert_eq!(stats.panicked(), 10);
    assert_eq!(stats.running(), 0);
}

fn errors_logged() -> Vec<String> {
    logs::lines()
        .into_iter()
        .filter(|(level, _)| *level == Level::Error)
        .map(|(_, line)| line)
        .collect()
}
