//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::cell::Cell;
use std::io::{self, Read};
use std::net::{self, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures::executor::{self, Notify, NotifyHandle, Spawn};
use futures::sync::oneshot;
use futures::{Async, Future, Poll, Stream};
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Core, Handle, Timeout};

#[cfg(target_os = "linux")]
pub mod backlog;
#[cfg(target_os = "linux")]
pub mod emfile_child;
pub mod logs;
#[cfg(target_os = "linux")]
pub mod loopback;
#[cfg(target_os = "linux")]
pub mod process;
pub mod prometheus;
#[cfg(target_os = "linux")]
pub mod queue;

/// How long a test waits for something that should happen "promptly" before
/// calling it a failure. Far above any healthy latency, so noise can't trip it.
pub const GENEROUS: Duration = Duration::from_secs(10);

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// An `io::Error` carrying a raw OS error code, as `accept()` returns it.
pub fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// One of every `accept()` error the policy skips.
pub fn per_connection_errors() -> Vec<io::Error> {
    let mut errors = vec![
        io::Error::from(io::ErrorKind::ConnectionRefused),
        io::Error::from(io::ErrorKind::ConnectionAborted),
        io::Error::from(io::ErrorKind::ConnectionReset),
        os_error(libc::ECONNRESET),
        os_error(libc::ECONNABORTED),
    ];
    errors.extend(
        [
            libc::ENETDOWN,
            libc::EPROTO,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
        ]
        .into_iter()
        .map(os_error),
    );
    // "Machine is not on the network": Linux only.
    #[cfg(target_os = "linux")]
    errors.push(os_error(libc::ENONET));
    errors
}

/// `accept()` errors the policy pauses on, an unknown one included.
pub fn resource_errors() -> Vec<io::Error> {
    vec![
        os_error(libc::EMFILE),
        os_error(libc::ENFILE),
        os_error(libc::ENOBUFS),
        os_error(libc::ENOMEM),
        io::Error::other("an error nobody has heard of"),
    ]
}

/// Counts how often a task was woken: a futures 0.1 `NotifyHandle` or, for
/// the tokio 1 tests, a `std::task::Waker`.
#[derive(Default)]
pub struct CountingNotify(AtomicUsize);

impl CountingNotify {
    pub fn handle() -> (Arc<CountingNotify>, NotifyHandle) {
        let notify = Arc::new(CountingNotify::default());
        (notify.clone(), NotifyHandle::from(notify))
    }

    pub fn waker() -> (Arc<CountingNotify>, Waker) {
        let notify = Arc::new(CountingNotify::default());
        (notify.clone(), Waker::from(notify))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Notify for CountingNotify {
    fn notify(&self, _id: usize) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Wake for CountingNotify {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls a stream once, outside any event loop, as a task woken by `notify`.
pub fn poll_stream_once<S: Stream>(
    spawned: &mut Spawn<S>,
    notify: &NotifyHandle,
) -> Poll<Option<S::Item>, S::Error> {
    spawned.poll_stream_notify(notify, 0)
}

/// Polls a future once, outside any event loop, as a task woken by `notify`.
pub fn poll_future_once<F: Future>(
    spawned: &mut Spawn<F>,
    notify: &NotifyHandle,
) -> Poll<F::Item, F::Error> {
    spawned.poll_future_notify(notify, 0)
}

pub fn spawn<T>(t: T) -> Spawn<T> {
    executor::spawn(t)
}

/// Runs `future` on `core` with one other task spawned beside it, and returns
/// what `progress` said when that task ran: `None` if it never ran before
/// `future` finished, which means `future` kept the event loop to itself.
pub fn progress_when_another_task_ran<F: Future>(
    core: &mut Core,
    progress: &Rc<Cell<usize>>,
    future: F,
) -> Option<usize> {
    let seen = Rc::new(Cell::new(None));
    let (seen_by_task, progress) = (seen.clone(), progress.clone());
    core.handle().spawn(futures::future::lazy(move || {
        seen_by_task.set(Some(progress.get()));
        Ok(())
    }));
    let _ = core.run(future);
    seen.get()
}

/// Tracks how many things are in progress at once, and the most ever seen.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    finished: AtomicUsize,
}

impl Gauge {
    pub fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

/// A server running on its own thread with its own `Core`, listening on
/// 127.0.0.1 port 0.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    done: mpsc::Receiver<(Result<(), ()>, Instant)>,
}

impl Server {
    /// Starts the future `serve` builds from the listener; it is raced against
    /// [`Server::shutdown`] (forced shutdown).
    pub fn start<F, Fut>(serve: F) -> Server
    where
        F: FnOnce(TcpListener, &Handle) -> Fut + Send + 'static,
        Fut: Future<Item = (), Error = ()> + 'static,
    {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        thread::spawn(move || {
            let mut core = Core::new().expect("event loop");
            let handle = core.handle();
            let any_port = "127.0.0.1:0".parse().unwrap();
            let listener = TcpListener::bind(&any_port, &handle).expect("bind 127.0.0.1:0");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let server = serve(listener, &handle);
            let stop = shutdown_rx.then(|_| Ok::<(), ()>(()));
            let result = core.run(server.select(stop).map(|_| ()).map_err(|_| ()));
            let _ = done_tx.send((result, Instant::now()));
        });
        let addr = addr_rx
            .recv_timeout(GENEROUS)
            .expect("server thread did not start");
        Server {
            addr,
            shutdown: Some(shutdown),
            done,
        }
    }

    /// Forces the server to stop; returns when its `Core::run` returned.
    pub fn shutdown(mut self) -> Result<(), ()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.wait()
    }

    /// Waits for the server future to resolve by itself.
    pub fn wait(&self) -> Result<(), ()> {
        self.wait_until().0
    }

    /// The outcome of the server future if it has resolved already; does
    /// not wait.
    pub fn finished(&self) -> Option<(Result<(), ()>, Instant)> {
        self.done.try_recv().ok()
    }

    /// Waits for the server future to resolve; also returns when it did.
    pub fn wait_until(&self) -> (Result<(), ()>, Instant) {
        self.done
            .recv_timeout(GENEROUS)
            .expect("server did not finish in time")
    }
}

/// The connection the tests' servers run: after `hold`, write `hello\n` and
/// close.
pub fn hello_after(
    socket: TcpStream,
    hold: Duration,
    handle: &Handle,
) -> impl Future<Item = (), Error = ()> {
    Timeout::new(hold, handle)
        .expect("timer")
        .and_then(move |()| tokio_io::io::write_all(socket, b"hello\n"))
        .map(|_| ())
        .map_err(|e| panic!("test connection failed: {}", e))
}

/// Connects a blocking client with generous timeouts.
pub fn connect(addr: SocketAddr) -> net::TcpStream {
    let stream = net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    stream.set_write_timeout(Some(GENEROUS)).unwrap();
    stream
}

/// Reads until the server closes the connection.
pub fn read_reply(mut stream: net::TcpStream) -> io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

/// Connects, reads until EOF, returns what the server sent.
pub fn fetch(addr: SocketAddr) -> io::Result<Vec<u8>> {
    read_reply(connect(addr))
}

/// `N` distinct 127.0.0.1 addresses that were free a moment ago, for tests
/// that must name an address before binding it. The probes are held until all
/// are known, so the addresses differ from each other.
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let probes: Vec<net::TcpListener> = (0..N)
        .map(|_| net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| probes[i].local_addr().unwrap())
}

/// Asserts that nothing listens on `addr` any more.
pub fn assert_refused(addr: SocketAddr) {
    match net::TcpStream::connect_timeout(&addr, GENEROUS) {
        Err(e) => assert_eq!(
            e.kind(),
            io::ErrorKind::ConnectionRefused,
            "connect to {}: {}",
            addr,
            e
        ),
        Ok(_) => panic!("{} still accepts connections", addr),
    }
}

/// Passes `stream` through and sends on `ended` when it ends, so that a test
/// learns when a server stopped accepting.
pub fn report_end<S: Stream>(
    mut stream: S,
    ended: mpsc::Sender<()>,
) -> impl Stream<Item = S::Item, Error = S::Error> {
    futures::stream::poll_fn(move || {
        let polled = stream.poll();
        if let Ok(Async::Ready(None)) = polled {
            let _ = ended.send(());
        }
        polled
    })
}

/// Polls `listeners` on `core` until `count` addresses are bound (the
/// address task binds them on a later turn of the event loop and wakes the
/// stream), and returns them. No client may connect before: the stream must
/// have nothing to yield.
pub fn wait_until_bound<S>(
    core: &mut Core,
    listeners: &mut tk_listen::BindMany<S>,
    count: usize,
) -> Vec<SocketAddr>
where
    S: Stream + 'static,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    let bound = futures::future::poll_fn(|| {
        assert!(listeners.poll().expect("no accept error").is_not_ready());
        let bound = listeners.local_addrs();
        Ok::<_, ()>(if bound.len() >= count {
            Async::Ready(bound)
        } else {
            Async::NotReady
        })
    });
    let timeout = Timeout::new(GENEROUS, &core.handle()).unwrap();
    match core.run(bound.select2(timeout)) {
        Ok(futures::future::Either::A((bound, _))) => bound,
        _ => panic!("{} addresses not bound in time", count),
    }
}

/// A blocking client connected to `server` from 127.0.0.`host`, with
/// generous timeouts (Linux only, see [`loopback`]).
#[cfg(target_os = "linux")]
pub fn connect_from(host: u8, server: SocketAddr) -> net::TcpStream {
    let source = std::net::Ipv4Addr::new(127, 0, 0, host);
    let stream = loopback::connect_from_ip(source, server, GENEROUS);
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    stream.set_write_timeout(Some(GENEROUS)).unwrap();
    stream
}

/// Was the client let through (it reads `hello\n`), or closed at once (it
/// reads the end of the stream, or a reset)? Anything else fails the test.
pub fn let_through(client: &mut net::TcpStream) -> bool {
    let mut reply = [0; 6];
    match client.read(&mut reply) {
        Ok(0) => false,
        Ok(n) => {
            client
                .read_exact(&mut reply[n..])
                .expect("the rest of hello");
            assert_eq!(&reply, b"hello\n");
            true
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => false,
        Err(e) => panic!("no reply and no close: {}", e),
    }
}
