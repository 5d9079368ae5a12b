//! Helpers of the tests that look at a listener's accept queue: listeners
//! made with a chosen backlog, a server on such a listener, and waiting for
//! the kernel's count of waiting clients.

use std::net::{self, SocketAddr};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures::sync::oneshot;
use futures::Future;
use socket2::{Domain, Socket, Type};
use tk_listen::{AcceptQueue, QueueLength};
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Core, Handle};

use super::{Server, GENEROUS};

/// A listening socket on 127.0.0.1 port 0 made with `listen(backlog)`.
pub fn listener_with_backlog(backlog: i32) -> net::TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).expect("bind 127.0.0.1:0");
    socket.listen(backlog).expect("listen");
    socket.into()
}

/// Runs the future `serve` builds from `listener` on its own thread, as
/// [`Server::start`] does with a listener of its own.
pub fn serve_on<F, Fut>(listener: net::TcpListener, serve: F) -> Server
where
    F: FnOnce(TcpListener, &Handle) -> Fut + Send + 'static,
    Fut: Future<Item = (), Error = ()> + 'static,
{
    let addr = listener.local_addr().unwrap();
    let (done_tx, done) = mpsc::channel();
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    thread::spawn(move || {
        let mut core = Core::new().expect("event loop");
        let handle = core.handle();
        let listener = TcpListener::from_listener(listener, &addr, &handle).expect("register");
        let server = serve(listener, &handle);
        let stop = shutdown_rx.then(|_| Ok::<(), ()>(()));
        let result = core.run(server.select(stop).map(|_| ()).map_err(|_| ()));
        let _ = done_tx.send((result, Instant::now()));
    });
    Server {
        addr,
        shutdown: Some(shutdown),
        done,
    }
}

/// Waits (at most [`GENEROUS`]) until `queue` reads `waiting` clients; the
/// kernel has no signal for it, so this polls every 10 ms.
pub fn wait_until_waiting(queue: &AcceptQueue, waiting: u64) -> QueueLength {
    let start = Instant::now();
    loop {
        let length = queue.read().expect("read the accept queue");
        if length.waiting == waiting {
            return length;
        }
        assert!(
            start.elapsed() < GENEROUS,
            "the accept queue never had {} clients waiting; last read: {:?}",
            waiting,
            length
        );
        thread::sleep(Duration::from_millis(10));
    }
}
