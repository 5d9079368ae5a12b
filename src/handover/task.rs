//! The handover as futures, for both stacks: the protocol runs on a thread
//! of its own (it waits for a process), and the future only reads its
//! result. Each type implements futures 0.1's `Future` and
//! `std::future::Future`; neither needs a runtime.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;

use log::{error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::protocol::{Handover, HandoverError, Successor};

impl Handover {
    /// Starts a handover on a thread of its own (see [`Handover`]); the
    /// future resolves to its result. A request while a handover runs
    /// resolves at once to [`HandoverError::Busy`].
    ///
    /// `HandingOver` is a futures 0.1 future (`Item = Successor`, `Error =
    /// HandoverError`) and a `std::future::Future` (tokio 1).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() {
    /// let handover = tk_listen::Handover::new();
    /// if let Ok(successor) = handover.start().await {
    ///     println!("process {} serves now", successor.pid);
    /// }
    /// # }
    /// ```
    pub fn start(&self) -> HandingOver {
        let slot = Slot::new();
        match self.begin() {
            Ok(request) => {
                let handover = self.clone();
                let done = slot.clone();
                let spawned = thread::Builder::new()
                    .name("tk-listen handover".into())
                    .spawn(move || done.complete(handover.run(request)));
                if let Err(e) = spawned {
                    error!("cannot start the handover's thread: {}", e);
                    slot.complete(self.finish(Err(HandoverError::Start(e))));
                }
            }
            Err(e) => slot.complete(Err(e)),
        }
        HandingOver { slot }
    }

    /// A future that resolves when the server should stop accepting: on
    /// `SIGTERM` or `SIGINT`, or once a handover requested by `SIGHUP`
    /// succeeded. A failed handover is logged and the server keeps serving;
    /// another `SIGHUP` tries again. A `SIGTERM` or `SIGINT` while a
    /// handover runs cancels it (see [`Handover`]): the future resolves once
    /// the successor is killed and reaped. Pass it to
    /// `with_graceful_shutdown` on either stack.
    ///
    /// It installs handlers for the three signals (their default action, to
    /// end the process, no longer happens) and waits for them on a thread.
    /// Call it once per process.
    ///
    /// # Panics
    ///
    /// If the signal handlers can't be installed (an invalid signal setup,
    /// e.g. inside a seccomp sandbox that forbids `sigaction`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() {
    /// let handover = tk_listen::Handover::new();
    /// let stop = handover.shutdown_signal();
    /// // ... .with_graceful_shutdown(stop)
    /// # stop.await;
    /// # }
    /// ```
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])
            .expect("cannot install handlers for SIGHUP, SIGTERM and SIGINT");
        let slot = Slot::new();
        let stop = slot.clone();
        let handover = self.clone();
        thread::Builder::new()
            .name("tk-listen signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal != SIGHUP {
                        info!("signal {}: shutting down", signal);
                        handover.stop();
                        stop.complete(());
                        continue;
                    }
                    info!("SIGHUP: handing over to a new process");
                    let Ok(request) = handover.begin() else {
                        continue;
                    };
                    let running = handover.clone();
                    let stop = stop.clone();
                    let spawned = thread::Builder::new()
                        .name("tk-listen handover".into())
                        .spawn(move || {
                            if running.run(request).is_ok() {
                                stop.complete(());
                            }
                        });
                    if let Err(e) = spawned {
                        error!("cannot start the handover's thread: {}", e);
                        let _ = handover.finish(Err(HandoverError::Start(e)));
                    }
                }
            })
            .expect("cannot start the thread that waits for signals");
        ShutdownSignal { slot }
    }
}

/// The result of a handover on its thread, from [`Handover::start`]:
/// resolves to the [`Successor`] or the [`HandoverError`].
///
/// # Panics
///
/// When polled again after it resolved.
#[must_use = "futures do nothing unless polled"]
pub struct HandingOver {
    slot: Slot<Result<Successor, HandoverError>>,
}

/// Resolves when the server should stop accepting, from
/// [`Handover::shutdown_signal`]: a `SIGTERM`, a `SIGINT`, or a successful
/// handover on `SIGHUP`. Resolves to `()` (futures 0.1: `Item = ()`, `Error
/// = ()`, never an error); polling it again after that resolves again.
#[must_use = "futures do nothing unless polled"]
pub struct ShutdownSignal {
    slot: Slot<()>,
}

impl futures::Future for HandingOver {
    type Item = Successor;
    type Error = HandoverError;

    fn poll(&mut self) -> futures::Poll<Successor, HandoverError> {
        let task = futures::task::current();
        match self.slot.take(|s| s.task01 = Some(task)) {
            Some(result) => result.map(futures::Async::Ready),
            None => Ok(futures::Async::NotReady),
        }
    }
}

impl std::future::Future for HandingOver {
    type Output = Result<Successor, HandoverError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let waker = cx.waker().clone();
        match self.slot.take(|s| s.waker = Some(waker)) {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

impl futures::Future for ShutdownSignal {
    type Item = ();
    type Error = ();

    fn poll(&mut self) -> futures::Poll<(), ()> {
        let task = futures::task::current();
        match self.slot.peek(|s| s.task01 = Some(task)) {
            true => Ok(futures::Async::Ready(())),
            false => Ok(futures::Async::NotReady),
        }
    }
}

impl std::future::Future for ShutdownSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let waker = cx.waker().clone();
        match self.slot.peek(|s| s.waker = Some(waker)) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl fmt::Debug for HandingOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandingOver").finish_non_exhaustive()
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal").finish_non_exhaustive()
    }
}

/// A value computed on another thread, and the task of either stack to wake
/// when it arrives.
struct Slot<T> {
    inner: Arc<Mutex<SlotInner<T>>>,
}

struct SlotInner<T> {
    value: Option<T>,
    /// Set once the value came (it stays `true` after `take`).
    completed: bool,
    task01: Option<futures::task::Task>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn new() -> Slot<T> {
        Slot {
            inner: Arc::new(Mutex::new(SlotInner {
                value: None,
                completed: false,
                task01: None,
                waker: None,
            })),
        }
    }

    /// Stores `value` (the first one only) and wakes the waiting task.
    fn complete(&self, value: T) {
        let (task01, waker) = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.completed {
                return;
            }
            inner.completed = true;
            inner.value = Some(value);
            (inner.task01.take(), inner.waker.take())
        };
        if let Some(task) = task01 {
            task.notify();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The value, or `None` after `register` noted the task to wake.
    fn take(&self, register: impl FnOnce(&mut SlotInner<T>)) -> Option<T> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.completed {
            let value = inner.value.take();
            assert!(value.is_some(), "HandingOver polled after it resolved");
            return value;
        }
        register(&mut inner);
        None
    }

    /// Whether the value came; if not, `register` noted the task to wake.
    fn peek(&self, register: impl FnOnce(&mut SlotInner<T>)) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.completed {
            register(&mut inner);
        }
        inner.completed
    }
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Slot<T> {
        Slot {
            inner: self.inner.clone(),
        }
    }
}
