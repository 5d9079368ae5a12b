//! Helpers shared by the `tokio1_*` integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::future::Future;
use std::io::{self, Read};
use std::net::{self, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::net::TcpListener;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;
use tokio::task::LocalSet;

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

/// The two runtime flavours every behaviour is checked on.
#[derive(Clone, Copy, Debug)]
pub enum Flavour {
    CurrentThread,
    MultiThread,
}

pub const FLAVOURS: [Flavour; 2] = [Flavour::CurrentThread, Flavour::MultiThread];

impl Flavour {
    pub fn runtime(self) -> Runtime {
        match self {
            Flavour::CurrentThread => Builder::new_current_thread().enable_all().build(),
            Flavour::MultiThread => Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
        .expect("tokio runtime")
    }
}

/// Runs `future` on a runtime of `flavour` inside a `LocalSet` (so that
/// `listen_local` works too), failing the test after [`GENEROUS`].
pub fn run<F: Future>(flavour: Flavour, future: F) -> F::Output {
    let runtime = flavour.runtime();
    LocalSet::new().block_on(&runtime, async {
        tokio::time::timeout(GENEROUS, future)
            .await
            .unwrap_or_else(|_| panic!("{:?}: not finished after {:?}", flavour, GENEROUS))
    })
}

/// A stream made of a closure, like `futures::stream::poll_fn`.
pub struct StreamFn<F>(pub F);

/// A stream made of a closure.
pub fn stream_fn<T, F>(f: F) -> impl Stream<Item = T> + Unpin
where
    F: FnMut(&mut Context<'_>) -> Poll<Option<T>> + Unpin,
{
    StreamFn(f)
}

impl<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>> + Unpin> Stream for StreamFn<F> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        (self.0)(cx)
    }
}

/// Counts how often a task was woken.
#[derive(Default)]
pub struct CountingWaker(AtomicUsize);

impl CountingWaker {
    pub fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        (counter.clone(), Waker::from(counter))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls a stream once, as a task woken by `waker`.
pub fn poll_stream_once<S: Stream + Unpin>(stream: &mut S, waker: &Waker) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(waker))
}

/// Polls a future once, as a task woken by `waker`.
pub fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
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

/// Runs a closure when dropped: tells a test that a stream (and so a
/// listener) or a connection is gone, without polling for it.
pub struct OnDrop<F: FnOnce()>(pub Option<F>);

impl<F: FnOnce()> OnDrop<F> {
    pub fn new(f: F) -> OnDrop<F> {
        OnDrop(Some(f))
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A server running on its own thread with its own runtime, listening on
/// 127.0.0.1 port 0.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    done: mpsc::Receiver<Instant>,
}

impl Server {
    /// Runs the future `serve` builds from the listener, inside a
    /// `LocalSet` on a runtime of `flavour`; it is raced against
    /// [`Server::shutdown`] (forced shutdown: the future is dropped).
    pub fn start<F, Fut>(flavour: Flavour, serve: F) -> Server
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        thread::spawn(move || {
            let runtime = flavour.runtime();
            LocalSet::new().block_on(&runtime, async move {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let server = serve(listener);
                tokio::select! {
                    () = server => {}
                    _ = shutdown_rx => {}
                }
                let _ = done_tx.send(Instant::now());
            });
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

    /// Forces the server to stop (drops its future); returns when it was
    /// dropped.
    pub fn shutdown(mut self) -> Instant {
        let _ = self.shutdown.take().unwrap().send(());
        self.wait()
    }

    /// Waits for the server future to resolve by itself; returns when it
    /// did.
    pub fn wait(&self) -> Instant {
        self.done
            .recv_timeout(GENEROUS)
            .expect("server did not finish in time")
    }

    /// Has the server future resolved? Does not wait; a `true` consumes the
    /// notice that [`Server::wait`] waits for.
    pub fn is_finished(&self) -> bool {
        self.done.try_recv().is_ok()
    }
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
