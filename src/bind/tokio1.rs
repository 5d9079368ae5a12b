//! `BindMany` on tokio 1: the same address set as the futures 0.1 one
//! (`super::set`), its listeners shared with a tokio task that applies
//! address lists and retries failed binds.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::Sleep;

use super::set::{catch_panic, AddressSet, Bound, End, Source, Yield};
use crate::limits::POLL_BUDGET;
use crate::tokio1::{bind_with_backlog, DEFAULT_BACKLOG};

/// A stream of connections accepted on a changing set of addresses, for
/// tokio 1.
///
/// Made by [`BindMany::new`] from a [`futures_core::Stream`] of address
/// lists (any item that iterates over [`SocketAddr`]s, e.g. a `Vec`), such
/// as tokio-stream's `WatchStream` over a `tokio::sync::watch` channel fed by
/// a configuration reload. It yields `io::Result<(TcpStream, SocketAddr)>`
/// like [`incoming`](crate::tokio1::incoming), so it plugs into
/// [`sleep_on_error`](crate::tokio1::ListenExt::sleep_on_error) and
/// [`listen`](crate::tokio1::ListenExt::listen) the same way.
///
/// It behaves as the futures 0.1 [`BindMany`](crate::BindMany), whose docs
/// say how [reloads](crate::BindMany#reloads) apply (kept, closed and new
/// addresses, duplicates, port 0, only the last of several ready lists),
/// how [bind failures](crate::BindMany#bind-failures) are logged and
/// retried, and how accepting stays [fair](crate::BindMany#fairness) between
/// listeners. The differences:
///
/// * The address side is a tokio task, spawned at the first poll, that owns
///   the address stream (hence `S: Send + 'static`) and shares the
///   listeners with this stream: a reload applies at once even while nothing
///   polls this stream, e.g. while every slot of `listen(n)` is taken. The
///   task ends when the address stream ends or this stream is dropped.
/// * The address stream has no errors; when it ends, every listening socket
///   is closed and this stream ends (connections accepted before are not
///   touched, so `listen` lets them finish).
/// * Each address is bound with [`bind_with_backlog`] (whose docs list the
///   socket options) and a backlog of 1024 unless [`backlog`](BindMany::backlog)
///   says otherwise.
/// * An `accept()` error is yielded as an `Err` item, for `sleep_on_error`.
/// * There is no `get_ref`, `get_mut` or `into_inner`: the address stream
///   belongs to the task.
///
/// # Panics
///
/// Polling it outside a tokio runtime with I/O and time enabled panics
/// (spawning the task, binding and the retry timer need them).
///
/// A panic of the address stream comes out of `poll_next`, as on the
/// futures 0.1 side (see [its docs](crate::BindMany#panics)): the address
/// task catches it, closes every listening socket and hands it over.
///
/// # Examples
///
/// Serve on two addresses, then on only one of them after a reload:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use std::time::Duration;
///
/// use tk_listen::tokio1::{BindMany, ListenExt};
/// use tokio::io::AsyncWriteExt;
/// use tokio_stream::wrappers::WatchStream;
/// use tokio_stream::StreamExt;
///
/// #[tokio::main]
/// async fn main() {
///     let first: SocketAddr = "127.0.0.1:8001".parse().unwrap();
///     let second: SocketAddr = "127.0.0.1:8002".parse().unwrap();
///     let (reload, addresses) = tokio::sync::watch::channel(vec![first, second]);
///     tokio::spawn(async move {
///         tokio::time::sleep(Duration::from_secs(60)).await;
///         // e.g. when the configuration changes:
///         let _ = reload.send(vec![first]);
///         // Dropping `reload` ends the address stream, and the server.
///     });
///
///     BindMany::new(WatchStream::new(addresses))
///         .sleep_on_error(Duration::from_millis(100))
///         .map(|(mut socket, _peer)| async move { socket.write_all(b"hello\n").await })
///         .listen(1000)
///         .await;
/// }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct BindMany<S> {
    /// Shared with the address task, which holds it weakly: dropping this
    /// stream closes every listener.
    shared: Arc<Mutex<Shared>>,
    /// The address stream until the first poll moves it into its task.
    addresses: Option<S>,
    /// The address task, aborted when this stream is dropped.
    task: Option<AbortHandle>,
}

/// What the accept side and the address task share.
struct Shared {
    /// The listeners, the retry schedule and whose turn it is.
    set: AddressSet<TcpListener>,
    backlog: u32,
    /// The task that polls this stream, woken when listeners change.
    accept_waker: Option<Waker>,
}

impl<S> BindMany<S> {
    /// Makes a stream that listens on the addresses of the latest list from
    /// `addresses`.
    ///
    /// Nothing is bound, and no task spawned, before the stream is polled
    /// and the address stream yields its first list.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use tk_listen::tokio1::BindMany;
    ///
    /// let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    /// let listeners = BindMany::new(tokio_stream::iter(vec![vec![addr]]));
    /// assert!(listeners.local_addrs().is_empty()); // not polled yet
    /// ```
    pub fn new(addresses: S) -> BindMany<S> {
        BindMany {
            shared: Arc::new(Mutex::new(Shared {
                set: AddressSet::new(),
                backlog: DEFAULT_BACKLOG,
                accept_waker: None,
            })),
            addresses: Some(addresses),
            task: None,
        }
    }

    /// Sets how long to wait before binding a failed address again (1 second
    /// by default), as [`crate::BindMany::retry_interval`] does.
    ///
    /// It applies to the retries scheduled after the call; an interval
    /// longer than a year is cut to a year.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::BindMany;
    ///
    /// let addresses = tokio_stream::pending::<Vec<SocketAddr>>();
    /// let mut listeners = BindMany::new(addresses);
    /// listeners.retry_interval(Duration::from_millis(250));
    /// ```
    pub fn retry_interval(&mut self, interval: Duration) -> &mut Self {
        self.shared.lock().set.set_retry_interval(interval);
        self
    }

    /// Sets the backlog of the addresses bound from now on (1024 by
    /// default): how many clients wait for a free slot before the kernel
    /// drops their SYNs (see [`incoming`](crate::tokio1::incoming#the-backlog)).
    ///
    /// Addresses already listening keep theirs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use tk_listen::tokio1::BindMany;
    ///
    /// let addresses = tokio_stream::pending::<Vec<SocketAddr>>();
    /// let mut listeners = BindMany::new(addresses);
    /// listeners.backlog(4096);
    /// ```
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.shared.lock().backlog = backlog;
        self
    }

    /// The addresses being listened on now, with port 0 resolved to the port
    /// the system chose.
    ///
    /// They come in the order of the latest address list (first occurrence
    /// of each address); addresses that failed to bind and wait for a retry
    /// are left out. Empty before the first list is applied and after the
    /// stream ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use tk_listen::tokio1::BindMany;
    ///
    /// let addresses = tokio_stream::pending::<Vec<SocketAddr>>();
    /// let listeners = BindMany::new(addresses);
    /// for addr in listeners.local_addrs() {
    ///     println!("listening on {}", addr);
    /// }
    /// ```
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.lock().set.local_addrs()
    }
}

#[cfg(all(feature = "handover", unix))]
impl<S> BindMany<S> {
    /// Takes the sockets of the addresses from `handover`, and hands them
    /// on to its successor, as [`crate::BindMany::handover`] does (feature
    /// `handover`, Unix); addresses that are not inherited are bound with
    /// this stream's [`backlog`](BindMany::backlog). Call it before the
    /// stream is first polled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::{BindMany, Handover, ListenExt};
    /// use tokio::io::AsyncWriteExt;
    /// use tokio_stream::wrappers::WatchStream;
    /// use tokio_stream::StreamExt;
    ///
    /// #[tokio::main]
    /// async fn main() {
    ///     let handover = Handover::new();
    ///     let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    ///     let admin: SocketAddr = "127.0.0.1:8081".parse().unwrap();
    ///     let (_reload, addresses) = tokio::sync::watch::channel(vec![http, admin]);
    ///     let mut listeners = BindMany::new(WatchStream::new(addresses));
    ///     listeners.handover(&handover);
    ///     let server = listeners
    ///         .sleep_on_error(Duration::from_millis(100))
    ///         .map(|(mut socket, _peer)| async move { socket.write_all(b"hello\n").await })
    ///         .listen(1000)
    ///         .with_graceful_shutdown(handover.shutdown_signal());
    ///     // Said once the addresses listen: the predecessor, if any, then stops.
    ///     handover.ready();
    ///     server.await;
    /// }
    /// ```
    pub fn handover(&mut self, handover: &crate::Handover) -> &mut Self {
        let source = handover.bind_many_source();
        self.shared.lock().set.set_source(source);
        self
    }
}

// The address stream is never pinned here: the first poll moves it into its
// task, where it is pinned in a box.
impl<S> Unpin for BindMany<S> {}

impl<S> Stream for BindMany<S>
where
    S: Stream + Send + 'static,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    type Item = io::Result<(TcpStream, SocketAddr)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(addresses) = this.addresses.take() {
            let task = AddressTask {
                shared: Arc::downgrade(&this.shared),
                addresses: Box::pin(addresses),
                retry: None,
            };
            this.task = Some(tokio::spawn(task).abort_handle());
        }
        let mut shared = this.shared.lock();
        if shared.set.poll_ended() {
            return Poll::Ready(None);
        }
        if !shared
            .accept_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            shared.accept_waker = Some(cx.waker().clone());
        }
        let next = shared
            .set
            .next_ready(|listener| match listener.poll_accept(cx) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => None,
            });
        match next {
            Ok(Some(result)) => Poll::Ready(Some(result)),
            Ok(None) => Poll::Pending,
            Err(Yield) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl<S> fmt::Debug for BindMany<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared.lock();
        f.debug_struct("BindMany")
            .field("listeners", &shared.set)
            .field("retry_interval", &shared.set.retry_interval())
            .field("backlog", &shared.backlog)
            .field("ended", &shared.set.has_ended())
            .finish_non_exhaustive()
    }
}

impl<S> Drop for BindMany<S> {
    /// The listeners close with the shared state; the address task, which
    /// owns the address stream, is aborted.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The address side of one `BindMany`: applies lists and retries binds.
struct AddressTask<S> {
    shared: Weak<Mutex<Shared>>,
    addresses: Pin<Box<S>>,
    /// The timer of the earliest retry, and when it is due.
    retry: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<S> Future for AddressTask<S>
where
    S: Stream,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(shared) = this.shared.upgrade() else {
            return Poll::Ready(()); // the `BindMany` was dropped
        };
        // Take every list that is ready, keep the last; come back for the
        // rest after the other tasks had their turn.
        let mut latest = None;
        let mut end = None;
        let mut drained = false;
        for _ in 0..POLL_BUDGET {
            match catch_panic(|| this.addresses.as_mut().poll_next(cx)) {
                Ok(Poll::Ready(Some(addresses))) => latest = Some(addresses),
                Ok(Poll::Ready(None)) => {
                    end = Some(End::Ended);
                    break;
                }
                Ok(Poll::Pending) => {
                    drained = true;
                    break;
                }
                Err(panicked) => {
                    end = Some(panicked);
                    break;
                }
            }
        }
        if !drained && end.is_none() {
            cx.waker().wake_by_ref();
        }
        let mut guard = shared.lock();
        let shared = &mut *guard;
        if let Some(end) = end {
            shared.set.end(end);
            let accept = shared.accept_waker.take();
            drop(guard);
            if let Some(accept) = accept {
                accept.wake();
            }
            return Poll::Ready(());
        }
        let backlog = shared.backlog;
        let mut changed = false;
        if let Some(addresses) = latest {
            shared
                .set
                .replace(addresses, Instant::now(), |requested, source| {
                    bind_one(requested, source, backlog)
                });
            changed = true;
        }
        changed |= this.retry_due_binds(&mut shared.set, backlog, cx);
        // Woken after the lock is released: the accept side takes it first.
        let accept = if changed {
            shared.accept_waker.clone()
        } else {
            None
        };
        drop(guard);
        if let Some(accept) = accept {
            accept.wake();
        }
        Poll::Pending
    }
}

impl<S> AddressTask<S> {
    /// Binds again the addresses whose retry is due and sets the timer for
    /// the next one; says whether an address now listens.
    fn retry_due_binds(
        &mut self,
        set: &mut AddressSet<TcpListener>,
        backlog: u32,
        cx: &mut Context<'_>,
    ) -> bool {
        let mut now = Instant::now();
        if let Some((due, sleep)) = &mut self.retry {
            if sleep.as_mut().poll(cx).is_ready() {
                now = now.max(*due);
                self.retry = None;
            }
        }
        let bound = set.retry_due(now, |requested, source| {
            bind_one(requested, source, backlog)
        });
        match set.next_retry() {
            None => self.retry = None,
            Some(due) if self.retry.as_ref().is_some_and(|(armed, _)| *armed == due) => {}
            Some(due) => {
                let mut sleep = Box::pin(tokio::time::sleep_until(due.into()));
                if sleep.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref(); // due already: retry at the next poll
                }
                self.retry = Some((due, sleep));
            }
        }
        bound
    }
}

/// Binds one address of a `BindMany`, with [`bind_with_backlog`], or takes
/// its socket from the set's source (bound with the same options).
fn bind_one(
    requested: SocketAddr,
    source: Option<&dyn Source>,
    backlog: u32,
) -> io::Result<Bound<TcpListener>> {
    let (listener, keep) = match source {
        None => (bind_with_backlog(requested, backlog)?, None),
        Some(source) => {
            let (listener, keep) = source.listener(requested, backlog)?;
            (TcpListener::from_std(listener)?, Some(keep))
        }
    };
    let local = listener.local_addr()?;
    Ok(Bound {
        listener,
        local,
        keep,
    })
}
