//! Graceful shutdown with `take_until` on real sockets: the listener closes at
//! once, running connections drain, a deadline cuts the drain short.

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures::future::Shared;
use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::{ListenExt, ListenStats};
use tokio_core::net::TcpStream;
use tokio_core::reactor::Timeout;

use support::{assert_refused, fetch, hello_after, init_logging, report_end, Server, GENEROUS};

const PAUSE: Duration = Duration::from_millis(100);

/// A connection that reports its acceptance on `accepted`, waits until
/// `release` fires, then writes `hello\n` and closes. Write errors (a client
/// that went away) are ignored.
fn hello_when_released(
    socket: TcpStream,
    accepted: &mpsc::Sender<()>,
    release: &Shared<oneshot::Receiver<()>>,
) -> impl Future<Item = (), Error = ()> {
    let _ = accepted.send(());
    release
        .clone()
        .then(move |_| tokio_io::io::write_all(socket, b"hello\n"))
        .map(|_| ())
        .map_err(|_| ())
}

/// Starts `n` clients that each read until EOF, and waits until the server
/// has accepted all of them.
fn clients_in_flight(
    addr: SocketAddr,
    n: usize,
    accepted: &mpsc::Receiver<()>,
) -> Vec<thread::JoinHandle<Vec<u8>>> {
    let clients = (0..n)
        .map(|_| thread::spawn(move || fetch(addr).expect("client read")))
        .collect();
    for i in 0..n {
        accepted
            .recv_timeout(GENEROUS)
            .unwrap_or_else(|_| panic!("only {} of {} clients were accepted", i, n));
    }
    clients
}

/// A server that greets each client at once, until `stopped` fires; it has
/// served one client when this returns.
fn idle_server(stopped: oneshot::Receiver<()>) -> Server {
    init_logging();
    let server = Server::start(move |listener, handle| {
        let handle = handle.clone();
        listener
            .incoming()
            .sleep_on_error(PAUSE, &handle)
            .take_until(stopped)
            .map(move |(socket, _)| hello_after(socket, Duration::ZERO, &handle))
            .listen(4)
    });
    assert_eq!(fetch(server.addr).unwrap(), b"hello\n");
    server
}

#[test]
fn an_idle_server_returns_and_refuses_clients_promptly_after_the_signal() {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = idle_server(stopped);

    // No client connects after this: only the signal can stop the server.
    let signalled = Instant::now();
    stop.send(()).unwrap();
    let (result, returned) = server.wait_until();

    assert_eq!(result, Ok(()));
    // Microseconds when healthy (waking the task is all it takes); the bound
    // only has to tell that apart from waiting for a client that never comes.
    let returned_after = returned - signalled;
    assert!(
        returned_after < GENEROUS / 2,
        "Core::run returned {:?} after the signal",
        returned_after
    );
    assert_refused(server.addr);
}

#[test]
fn a_dropped_sender_shuts_the_server_down() {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = idle_server(stopped);

    drop(stop);

    assert_eq!(server.wait(), Ok(()));
    assert_refused(server.addr);
}

/// A server whose connections each wait for `release` before they answer;
/// it reports every accept on `accepted` and the end of accepting on `ended`.
struct HeldServer {
    server: Server,
    stop: oneshot::Sender<()>,
    release: oneshot::Sender<()>,
    accepted: mpsc::Receiver<()>,
    ended: mpsc::Receiver<()>,
}

impl HeldServer {
    fn start(max_connections: usize) -> HeldServer {
        init_logging();
        let (stop, stopped) = oneshot::channel::<()>();
        let (release, released) = oneshot::channel::<()>();
        let (accepted_tx, accepted) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel();
        let server = Server::start(move |listener, handle| {
            let released = released.shared();
            let accepts = listener
                .incoming()
                .sleep_on_error(PAUSE, handle)
                .take_until(stopped);
            report_end(accepts, ended_tx)
                .map(move |(socket, _)| hello_when_released(socket, &accepted_tx, &released))
                .listen(max_connections)
        });
        HeldServer {
            server,
            stop,
            release,
            accepted,
            ended,
        }
    }
}

#[test]
fn connections_in_flight_complete_before_the_server_resolves() {
    let held = HeldServer::start(4);
    let clients = clients_in_flight(held.server.addr, 3, &held.accepted);

    held.stop.send(()).unwrap();
    // The listener closes while the three connections are still running...
    held.ended
        .recv_timeout(GENEROUS)
        .expect("accepting did not stop");
    assert_refused(held.server.addr);
    assert!(
        held.server.finished().is_none(),
        "resolved with connections in flight"
    );

    // ...and they all complete before the server resolves.
    held.release.send(()).unwrap();
    for client in clients {
        assert_eq!(client.join().unwrap(), b"hello\n");
    }
    assert_eq!(held.server.wait(), Ok(()));
    assert!(
        held.accepted.try_recv().is_err(),
        "a client was accepted after the signal"
    );
}

/// The documented limit of `take_until` behind `listen(n)`: while all `n`
/// connections run, `listen` doesn't poll its stream, so the signal takes
/// effect (and the listener closes) when a connection finishes.
#[test]
fn a_full_server_stops_accepting_when_a_connection_finishes() {
    let held = HeldServer::start(1);
    let clients = clients_in_flight(held.server.addr, 1, &held.accepted);

    held.stop.send(()).unwrap();
    // One-sided: a stalled machine could only make this pass wrongly.
    assert!(
        held.ended.recv_timeout(Duration::from_millis(300)).is_err(),
        "a full server noticed the signal: update the docs of take_until"
    );

    held.release.send(()).unwrap();
    held.ended
        .recv_timeout(GENEROUS)
        .expect("accepting did not stop after a connection finished");
    assert_refused(held.server.addr);
    for client in clients {
        assert_eq!(client.join().unwrap(), b"hello\n");
    }
    assert_eq!(held.server.wait(), Ok(()));
}

#[test]
fn a_drain_deadline_cuts_connections_that_outlive_it() {
    init_logging();
    const DRAIN: Duration = Duration::from_millis(300);
    let (stop, stopped) = oneshot::channel::<()>();
    // Never sent: the connections would run forever.
    let (_release, released) = oneshot::channel::<()>();
    let (accepted_tx, accepted) = mpsc::channel();
    let server = Server::start(move |listener, handle| {
        let released = released.shared();
        let stopped = stopped.shared();
        let drained = listener
            .incoming()
            .sleep_on_error(PAUSE, handle)
            .take_until(stopped.clone())
            .map(move |(socket, _)| hello_when_released(socket, &accepted_tx, &released))
            .listen(4);
        let timer_handle = handle.clone();
        let deadline = stopped
            .then(move |_| Timeout::new(DRAIN, &timer_handle))
            .flatten()
            .map_err(|e| panic!("timer failed: {}", e));
        drained.select(deadline).map(|_| ()).map_err(|_| ())
    });
    let clients = clients_in_flight(server.addr, 2, &accepted);

    let signalled = Instant::now();
    stop.send(()).unwrap();
    let (result, returned) = server.wait_until();

    assert_eq!(result, Ok(()));
    let drained_for = returned - signalled;
    assert!(
        drained_for >= DRAIN.mul_f64(0.9),
        "the drain ended after {:?}, before its deadline",
        drained_for
    );
    assert!(
        drained_for < DRAIN + Duration::from_secs(3),
        "the drain ended {:?} after the signal",
        drained_for
    );
    for client in clients {
        assert_eq!(client.join().unwrap(), b"", "clients should see EOF");
    }
    assert_refused(server.addr);
}

/// Passes `stream` through and sends on `dropped` once it is dropped: for a
/// listener, once its socket is closed.
struct ReportDrop<S> {
    stream: S,
    /// Dropped after `stream` (fields drop in order); only its `Drop` matters.
    _dropped: SendOnDrop,
}

struct SendOnDrop(mpsc::Sender<()>);

impl Drop for SendOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl<S: Stream> Stream for ReportDrop<S> {
    type Item = S::Item;
    type Error = S::Error;

    fn poll(&mut self) -> futures::Poll<Option<S::Item>, S::Error> {
        self.stream.poll()
    }
}

/// `listen(max_connections).with_graceful_shutdown(stopped)`: connections
/// wait for `release`; every accept is reported on `accepted`, the listener's
/// close on `closed`.
struct GracefulServer {
    server: Server,
    stats: ListenStats,
    release: oneshot::Sender<()>,
    accepted: mpsc::Receiver<()>,
    closed: mpsc::Receiver<()>,
}

impl GracefulServer {
    fn start(max_connections: usize, stopped: oneshot::Receiver<()>) -> GracefulServer {
        init_logging();
        let (release, released) = oneshot::channel::<()>();
        let (accepted_tx, accepted) = mpsc::channel();
        let (closed_tx, closed) = mpsc::channel();
        let (stats_tx, stats) = mpsc::channel();
        let server = Server::start(move |listener, handle| {
            let released = released.shared();
            let accepts = ReportDrop {
                stream: listener.incoming().sleep_on_error(PAUSE, handle),
                _dropped: SendOnDrop(closed_tx),
            };
            let server = accepts
                .map(move |(socket, _)| hello_when_released(socket, &accepted_tx, &released))
                .listen(max_connections);
            stats_tx.send(server.stats()).unwrap();
            server.with_graceful_shutdown(stopped)
        });
        GracefulServer {
            server,
            stats: stats.recv_timeout(GENEROUS).expect("no stats"),
            release,
            accepted,
            closed,
        }
    }

    /// Waits until the listener is closed (bounded by [`GENEROUS`]).
    fn wait_closed(&self) {
        self.closed
            .recv_timeout(GENEROUS)
            .expect("the listener did not close after the signal");
    }
}

#[test]
fn a_full_server_refuses_new_clients_at_once_on_the_graceful_shutdown_signal() {
    let (stop, stopped) = oneshot::channel::<()>();
    let held = GracefulServer::start(2, stopped);
    let clients = clients_in_flight(held.server.addr, 2, &held.accepted);

    stop.send(()).unwrap();
    // While both connections still run: the listener closes...
    held.wait_closed();
    assert_refused(held.server.addr);
    assert!(
        held.server.finished().is_none(),
        "resolved with connections in flight"
    );
    assert_eq!(held.stats.running(), 2, "both slots still taken");

    // ...they finish when released, and only then does the server resolve.
    held.release.send(()).unwrap();
    for client in clients {
        assert_eq!(client.join().unwrap(), b"hello\n");
    }
    assert_eq!(held.server.wait(), Ok(()));
    assert_eq!((held.stats.started(), held.stats.finished()), (2, 2));
}

#[test]
fn an_idle_server_resolves_and_refuses_clients_on_the_graceful_shutdown_signal() {
    let (stop, stopped) = oneshot::channel::<()>();
    let idle = GracefulServer::start(2, stopped);

    stop.send(()).unwrap();

    assert_eq!(idle.server.wait(), Ok(()));
    idle.wait_closed();
    assert_refused(idle.server.addr);
    assert_eq!(idle.stats.started(), 0);
}

#[test]
fn a_dropped_sender_shuts_a_full_server_down_gracefully() {
    let (stop, stopped) = oneshot::channel::<()>();
    let held = GracefulServer::start(1, stopped);
    let clients = clients_in_flight(held.server.addr, 1, &held.accepted);

    drop(stop);

    held.wait_closed();
    assert_refused(held.server.addr);
    held.release.send(()).unwrap();
    for client in clients {
        assert_eq!(client.join().unwrap(), b"hello\n");
    }
    assert_eq!(held.server.wait(), Ok(()));
}
