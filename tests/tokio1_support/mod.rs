//! Helpers shared by the `tokio1_*` integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Instant;

use futures_core::Stream;
use tokio::net::TcpListener;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;
use tokio::task::LocalSet;

#[cfg(target_os = "linux")]
pub mod http;

// The helpers that don't depend on a runtime come from `tests/support`,
// which every `tokio1_*` test binary declares as `mod support;` too.
#[allow(unused_imports)] // each test binary uses its own subset
pub use crate::support::{
    assert_refused, connect, fetch, init_logging, read_reply, CountingNotify, Gauge, GENEROUS,
};

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

/// Polls a stream once, as a task woken by `waker`.
pub fn poll_stream_once<S: Stream + Unpin>(stream: &mut S, waker: &Waker) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(waker))
}

/// Polls a future once, as a task woken by `waker`.
pub fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
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
