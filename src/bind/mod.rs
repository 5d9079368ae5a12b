use std::cell::{Ref, RefCell, RefMut};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::task::{self, Task};
use futures::{Async, Poll, Stream};
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::Handle;

use self::set::{AddressSet, Yield};
use crate::limits::yield_to_other_tasks;

mod addresses;
mod set;
#[cfg(feature = "tokio1")]
pub(crate) mod tokio1;

#[cfg(all(feature = "handover", unix))]
pub(crate) use self::set::{Keep, Source};

/// A stream of connections accepted on a changing set of addresses.
///
/// Made by [`BindMany::new`] from a stream of address lists (anything whose
/// items iterate over [`SocketAddr`]s, such as a
/// `futures::sync::mpsc::Receiver<Vec<SocketAddr>>` fed by a configuration
/// reload). It yields `(socket, peer address)` for every connection accepted
/// on any of the addresses of the latest list, just like
/// `TcpListener::incoming()` does for one address, so it plugs into
/// [`sleep_on_error`](crate::ListenExt::sleep_on_error) and
/// [`listen`](crate::ListenExt::listen) the same way.
///
/// The sections below (reloads, bind failures, fairness) hold for
/// `tk_listen::tokio1::BindMany` too (feature `tokio1`), which is made of the
/// same code; its docs list the few differences.
///
/// # Reloads
///
/// Each list from the address stream replaces the set of addresses:
///
/// * an address that was already in the set keeps its listening socket, which
///   is never closed and bound again, so clients connecting during a reload
///   are not refused;
/// * an address that is no longer in the list has its listening socket closed
///   (new clients are refused; clients that connected but were not accepted
///   yet are reset by the kernel); connections accepted from it earlier are
///   not touched, they belong to whoever took them from this stream;
/// * a new address is bound at once.
///
/// An address is identified by the [`SocketAddr`] exactly as given: it is
/// bound once even if it appears several times in a list, but `0.0.0.0:80`
/// and `127.0.0.1:80` are two different entries (and the second one fails to
/// bind while the first is bound, as the operating system sees them overlap).
/// Port 0 asks the system for a free port; [`local_addrs`](BindMany::local_addrs)
/// tells which one it chose. When several lists are ready at once, only the
/// last one is applied.
///
/// Lists are read, and failed binds retried, by a small task of this stream's
/// own on the event loop, started at the first poll: a reload takes effect at
/// once even while nothing polls this stream, e.g. while all `n` connections
/// of [`listen(n)`](crate::ListenExt::listen) are busy (a removed address
/// stops accepting, an added one is bound and its backlog fills until a slot
/// frees). That task needs the address stream to be `'static`; it ends when
/// the address stream ends or this stream is dropped.
///
/// # Bind failures
///
/// An address that cannot be bound (in use by another socket, not assigned to
/// this host, not permitted, ...) doesn't stop the others: it is logged at
/// `error` with the OS error, then retried every
/// [`retry_interval`](BindMany::retry_interval) (1 second by default) until it
/// binds, logged at `info`, or leaves the set. The retries that fail are logged
/// at `debug` only.
///
/// # Socket options
///
/// Each address is bound with tokio-core's `TcpListener::bind`, which (through
/// mio 0.6 and net2) creates the socket close-on-exec, sets `SO_REUSEADDR` on
/// unix (not on Windows, where it would let other processes take the port),
/// listens with a backlog of 1024 (which the kernel may cap, e.g. at
/// `net.core.somaxconn` on Linux) and makes the socket non-blocking. Nothing
/// else is set: no `SO_REUSEPORT`, and `IPV6_V6ONLY` keeps the system's default
/// (on Linux, `net.ipv6.bindv6only`, usually off, so `[::]:80` also serves IPv4
/// clients and overlaps with `0.0.0.0:80`).
///
/// # Errors and the end of the stream
///
/// * An `accept()` error is returned as the stream's error, so that
///   [`sleep_on_error`](crate::ListenExt::sleep_on_error) can apply its
///   policy. No listener is dropped for it; the next poll carries on with the
///   next listener.
/// * When the address stream ends, the stream ends at once: every listening
///   socket is closed, and clients still waiting in the kernel's backlog are
///   not served (they are reset). Connections accepted before that are not
///   touched, so `listen` still lets them finish (a graceful drain).
/// * When the address stream fails, the failure is logged at `error` (the
///   error value itself is not printed: this type asks nothing of it, so log it
///   in the stream if it matters) and the stream ends the same way.
/// * If a retry timer fails (its event loop is gone), that is logged at
///   `error` and the bind is tried again at once.
///
/// # Panics
///
/// If polling the address stream panics, every listening socket is closed
/// (logged at `error`) and the panic comes out of this stream's `poll`, as
/// the panic of a stream comes out of any adapter that polls it: the code
/// that polls this stream can catch it, and the event loop, on which the
/// address task runs, goes on. Polled again, the stream has ended.
///
/// # Fairness
///
/// Each poll starts with the listener after the one that produced the
/// previous result, so under a flood every address gets its turn instead of
/// the first one taking everything. After 64 results in a row the stream
/// wakes its task and returns `NotReady` once, so that a flood doesn't keep
/// the other tasks on the event loop from running.
///
/// # Examples
///
/// Serve on two addresses, then on only one of them after a reload:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use std::time::Duration;
///
/// use futures::sync::mpsc;
/// use futures::{Future, Sink, Stream};
/// use tk_listen::{BindMany, ListenExt};
/// use tokio_core::reactor::Core;
///
/// let mut core = Core::new().unwrap();
/// let handle = core.handle();
/// let (reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
///
/// let first: SocketAddr = "127.0.0.1:8001".parse().unwrap();
/// let second: SocketAddr = "127.0.0.1:8002".parse().unwrap();
/// reload.unbounded_send(vec![first, second]).unwrap();
/// // ... and later, e.g. when the configuration changes:
/// reload.unbounded_send(vec![first]).unwrap();
///
/// let server = BindMany::new(addresses, &handle)
///     .sleep_on_error(Duration::from_millis(100), &handle)
///     .map(|(socket, _peer)| {
///         tokio_io::io::write_all(socket, b"hello\n")
///             .map(|_| ())
///             .map_err(|e| log::error!("write error: {}", e))
///     })
///     .listen(1000);
///
/// // Runs until `reload` is dropped, which ends the address stream.
/// core.run(server).unwrap();
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct BindMany<S> {
    /// Shared with the address task, which holds it weakly: dropping this
    /// stream closes every listener and ends that task.
    shared: Rc<RefCell<Shared<S>>>,
    handle: Handle,
    /// The address task was spawned.
    started: bool,
}

/// What the accept side and the address task share.
struct Shared<S> {
    /// `None` only inside [`BindMany::into_inner`].
    addresses: Option<S>,
    /// The listeners, the retry schedule and whose turn it is.
    set: AddressSet<TcpListener>,
    /// The task that polls this stream, woken when listeners change.
    accept_task: Option<Task>,
    /// The address task, woken when this stream is dropped so that it ends.
    address_task: Option<Task>,
}

impl<S> BindMany<S> {
    /// Makes a stream that listens on the addresses of the latest list from
    /// `addresses`, with its sockets, timers and address task on `handle`'s
    /// event loop.
    ///
    /// Nothing is bound before the stream is polled and the address stream
    /// yields its first list.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use futures::stream;
    /// use tk_listen::BindMany;
    /// use tokio_core::reactor::Core;
    ///
    /// let core = Core::new().unwrap();
    /// let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    /// let addresses = stream::iter_ok::<_, ()>(vec![vec![addr]]);
    /// let listeners = BindMany::new(addresses, &core.handle());
    /// assert!(listeners.local_addrs().is_empty()); // not polled yet
    /// ```
    pub fn new(addresses: S, handle: &Handle) -> BindMany<S> {
        BindMany {
            shared: Rc::new(RefCell::new(Shared {
                addresses: Some(addresses),
                set: AddressSet::new(),
                accept_task: None,
                address_task: None,
            })),
            handle: handle.clone(),
            started: false,
        }
    }

    /// Sets how long to wait before binding a failed address again (1 second
    /// by default).
    ///
    /// It applies to the retries scheduled after the call; a retry already
    /// waiting keeps its time. A zero interval retries at every tick of the
    /// event loop's timer (about a millisecond), which only makes sense in
    /// tests; an interval longer than a year is cut to a year.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    ///
    /// use futures::sync::mpsc;
    /// use tk_listen::BindMany;
    /// use tokio_core::reactor::Core;
    ///
    /// let core = Core::new().unwrap();
    /// let (_reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    /// let mut listeners = BindMany::new(addresses, &core.handle());
    /// listeners.retry_interval(Duration::from_millis(250));
    /// ```
    pub fn retry_interval(&mut self, interval: Duration) -> &mut Self {
        self.shared.borrow_mut().set.set_retry_interval(interval);
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
    /// use futures::sync::mpsc;
    /// use tk_listen::BindMany;
    /// use tokio_core::reactor::Core;
    ///
    /// let core = Core::new().unwrap();
    /// let (_reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    /// let listeners = BindMany::new(addresses, &core.handle());
    /// for addr in listeners.local_addrs() {
    ///     println!("listening on {}", addr);
    /// }
    /// ```
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.borrow().set.local_addrs()
    }

    /// The stream of address lists.
    ///
    /// A borrow of the state this stream shares with its address task: drop
    /// it before the event loop turns again (holding it across a turn makes
    /// the address task panic on a `RefCell` borrow).
    pub fn get_ref(&self) -> Ref<'_, S> {
        Ref::map(self.shared.borrow(), Shared::addresses)
    }

    /// The stream of address lists, mutably; the same borrow rule as
    /// [`get_ref`](BindMany::get_ref). Lists pulled out of it directly are
    /// never applied.
    pub fn get_mut(&mut self) -> RefMut<'_, S> {
        RefMut::map(self.shared.borrow_mut(), |shared| {
            shared.addresses.as_mut().expect(ADDRESSES_TAKEN)
        })
    }

    /// The stream of address lists; every listening socket is closed and the
    /// address task ends.
    pub fn into_inner(self) -> S {
        let addresses = self.shared.borrow_mut().addresses.take();
        addresses.expect(ADDRESSES_TAKEN)
    }
}

#[cfg(all(feature = "handover", unix))]
impl<S> BindMany<S> {
    /// Takes the sockets of the addresses from `handover` (feature
    /// `handover`, Unix): the inherited socket of an address in the list
    /// (from systemd or a predecessor, found as
    /// [`Inherited::take_addr`](crate::Inherited::take_addr) finds it, port
    /// 0 standing for any port on that IP), or a new one bound with the
    /// same options; and hands the sockets listening at the time of a
    /// handover on to the successor, whose `BindMany`, given the same
    /// addresses, takes them over without a client refused or reset.
    ///
    /// A reload that removes an address closes its socket, as without a
    /// handover; the successor no longer gets it.
    /// [`Handover::ready`](crate::Handover::ready) waits until this stream
    /// applied its first address list, so that the sockets inherited for
    /// it are taken (not closed as unused) and the predecessor stops only
    /// once they are. Call it before the stream is first polled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    ///
    /// use futures::sync::mpsc;
    /// use futures::{Future, Stream};
    /// use tk_listen::{BindMany, Handover, ListenExt};
    /// use tokio_core::reactor::Core;
    ///
    /// let handover = Handover::new();
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let (reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    /// let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    /// let admin: SocketAddr = "127.0.0.1:8081".parse().unwrap();
    /// reload.unbounded_send(vec![http, admin]).unwrap();
    ///
    /// let mut listeners = BindMany::new(addresses, &handle);
    /// listeners.handover(&handover);
    /// let server = listeners
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .map(|(socket, _peer)| {
    ///         tokio_io::io::write_all(socket, b"hello\n").then(|_| Ok(()))
    ///     })
    ///     .listen(1000)
    ///     .with_graceful_shutdown(handover.shutdown_signal());
    /// // Said once the addresses listen: the predecessor, if any, then stops.
    /// handover.ready();
    /// core.run(server).unwrap();
    /// # drop(reload);
    /// ```
    pub fn handover(&mut self, handover: &crate::Handover) -> &mut Self {
        let source = handover.bind_many_source();
        self.shared.borrow_mut().set.set_source(source);
        self
    }
}

const ADDRESSES_TAKEN: &str = "BindMany: the address stream was taken by into_inner";

impl<S> Stream for BindMany<S>
where
    S: Stream + 'static,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    type Item = (TcpStream, SocketAddr);
    type Error = io::Error;

    fn poll(&mut self) -> Poll<Option<Self::Item>, io::Error> {
        if !self.started {
            self.started = true;
            self.handle
                .spawn(addresses::task(&self.shared, &self.handle));
        }
        let mut shared = self.shared.borrow_mut();
        if shared.set.poll_ended() {
            return Ok(Async::Ready(None));
        }
        if !shared
            .accept_task
            .as_ref()
            .is_some_and(Task::will_notify_current)
        {
            shared.accept_task = Some(task::current());
        }
        let next = shared.set.next_ready(|listener| match listener.accept() {
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => None,
            result => Some(result),
        });
        match next {
            Ok(Some(result)) => result.map(|accepted| Async::Ready(Some(accepted))),
            Ok(None) => Ok(Async::NotReady),
            Err(Yield) => Ok(yield_to_other_tasks()),
        }
    }
}

impl<S> fmt::Debug for BindMany<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared.borrow();
        f.debug_struct("BindMany")
            .field("listeners", &shared.set)
            .field("retry_interval", &shared.set.retry_interval())
            .field("ended", &shared.set.has_ended())
            .finish_non_exhaustive()
    }
}

impl<S> Shared<S> {
    fn addresses(&self) -> &S {
        self.addresses.as_ref().expect(ADDRESSES_TAKEN)
    }
}

impl<S> Drop for Shared<S> {
    /// The listeners close with it; the address task, woken, finds the state
    /// gone and ends.
    fn drop(&mut self) {
        if let Some(task) = self.address_task.take() {
            task.notify();
        }
    }
}
