use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{task, Async, Future, Poll, Stream};
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Handle, Timeout};

use crate::limits::{timer, yield_to_other_tasks, POLL_BUDGET};

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
/// Lists are read when this stream is polled. Behind
/// [`listen(n)`](crate::ListenExt::listen) that doesn't happen while all `n`
/// connections are busy, so a reload then waits until a connection finishes.
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
/// * If a retry timer fails (its event loop is gone), its error is returned as
///   the stream's error and the bind is tried again at the next poll.
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
    addresses: S,
    ended: bool,
    handle: Handle,
    retry_interval: Duration,
    /// In the order of the latest address list, without duplicates.
    listeners: Vec<Entry>,
    /// Where the next poll starts looking for a connection.
    next: usize,
    /// Results yielded since the stream last returned `NotReady`.
    streak: usize,
}

/// One address of the set and what became of it.
struct Entry {
    requested: SocketAddr,
    state: State,
}

enum State {
    Listening {
        listener: TcpListener,
        local: SocketAddr,
    },
    /// Binding failed `failures` times; the next try is when `timer` fires
    /// (or at the next poll if there is no timer).
    Retrying {
        timer: Option<Timeout>,
        failures: u32,
    },
}

impl<S> BindMany<S> {
    /// Makes a stream that listens on the addresses of the latest list from
    /// `addresses`, with its sockets and timers on `handle`'s event loop.
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
            addresses,
            ended: false,
            handle: handle.clone(),
            retry_interval: Duration::from_secs(1),
            listeners: Vec::new(),
            next: 0,
            streak: 0,
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
        self.retry_interval = interval;
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
        self.listeners
            .iter()
            .filter_map(|entry| match entry.state {
                State::Listening { local, .. } => Some(local),
                State::Retrying { .. } => None,
            })
            .collect()
    }

    /// The stream of address lists.
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
    /// let (reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    /// let listeners = BindMany::new(addresses, &core.handle());
    /// let _addresses = listeners.get_ref();
    /// # drop(reload);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.addresses
    }

    /// The stream of address lists, mutably.
    ///
    /// Take care not to pull lists out of it directly: this stream would never
    /// see them, and keep listening on the old addresses.
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
    /// let (reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    /// let mut listeners = BindMany::new(addresses, &core.handle());
    /// // For instance, stop taking reloads: the address stream ends at the next poll.
    /// listeners.get_mut().close();
    /// drop(reload);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.addresses
    }

    /// The stream of address lists; every listening socket is closed.
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
    /// let (reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    /// let listeners = BindMany::new(addresses, &core.handle());
    /// let addresses = listeners.into_inner(); // every listener closed
    /// # drop((reload, addresses));
    /// ```
    pub fn into_inner(self) -> S {
        self.addresses
    }
}

impl<S> Stream for BindMany<S>
where
    S: Stream,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    type Item = (TcpStream, SocketAddr);
    type Error = io::Error;

    fn poll(&mut self) -> Poll<Option<Self::Item>, io::Error> {
        if self.ended {
            return Ok(Async::Ready(None));
        }
        if let Some(addresses) = self.poll_addresses() {
            self.replace(addresses);
        }
        if self.ended {
            return Ok(Async::Ready(None));
        }
        if self.streak >= POLL_BUDGET {
            self.streak = 0;
            return Ok(yield_to_other_tasks());
        }
        let count = self.listeners.len();
        let start = self.next;
        for i in 0..count {
            let index = (start + i) % count;
            let result = self.poll_entry(index);
            if !matches!(result, Ok(Async::NotReady)) {
                self.next = (index + 1) % count;
                self.streak += 1;
                return result.map(|ready| ready.map(Some));
            }
        }
        self.streak = 0;
        Ok(Async::NotReady)
    }
}

impl<S> fmt::Debug for BindMany<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindMany")
            .field("listeners", &self.listeners)
            .field("retry_interval", &self.retry_interval)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Listening { local, .. } => {
                write!(f, "{} (listening on {})", self.requested, local)
            }
            State::Retrying { failures, .. } => {
                write!(
                    f,
                    "{} (bind failed {} times, retrying)",
                    self.requested, failures
                )
            }
        }
    }
}

impl<S> BindMany<S>
where
    S: Stream,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    /// Takes every list the address stream has ready and returns the last
    /// one; marks the stream ended if the address stream ended or failed.
    fn poll_addresses(&mut self) -> Option<S::Item> {
        let mut latest = None;
        for _ in 0..POLL_BUDGET {
            match self.addresses.poll() {
                Ok(Async::Ready(Some(addresses))) => latest = Some(addresses),
                Ok(Async::NotReady) => return latest,
                Ok(Async::Ready(None)) => {
                    info!("address stream ended; closing all listeners");
                    self.end();
                    return None;
                }
                Err(_) => {
                    error!("address stream failed; closing all listeners");
                    self.end();
                    return None;
                }
            }
        }
        // Lists keep coming: apply the latest, and come back for the rest
        // after the other tasks had their turn.
        task::current().notify();
        latest
    }
}

impl<S> BindMany<S> {
    fn end(&mut self) {
        self.ended = true;
        for entry in mem::take(&mut self.listeners) {
            entry.close();
        }
    }

    /// Makes `addresses` the set of listened addresses, keeping the sockets
    /// of the addresses that stay.
    fn replace<I: IntoIterator<Item = SocketAddr>>(&mut self, addresses: I) {
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        for requested in addresses {
            if seen.insert(requested) {
                wanted.push(requested); // first occurrence; duplicates skipped
            }
        }
        // Close what leaves before binding what comes: a new address may
        // overlap a removed one (`0.0.0.0:80` replacing `127.0.0.1:80`).
        let mut kept = HashMap::new();
        for entry in mem::take(&mut self.listeners) {
            if seen.contains(&entry.requested) {
                kept.insert(entry.requested, entry);
            } else {
                entry.close();
            }
        }
        let (handle, interval) = (&self.handle, self.retry_interval);
        self.listeners = wanted
            .into_iter()
            .map(|requested| {
                kept.remove(&requested).unwrap_or_else(|| Entry {
                    requested,
                    state: bind(requested, handle, interval, 0),
                })
            })
            .collect();
        self.next = 0;
    }

    /// Accepts one connection from the listener at `index`, or binds its
    /// address again if the retry is due.
    fn poll_entry(&mut self, index: usize) -> Poll<(TcpStream, SocketAddr), io::Error> {
        let entry = &mut self.listeners[index];
        if let State::Retrying { timer, failures } = &mut entry.state {
            if let Some(pending) = timer {
                match pending.poll() {
                    Ok(Async::NotReady) => return Ok(Async::NotReady),
                    Ok(Async::Ready(())) => {}
                    Err(e) => {
                        error!("bind retry timer for {} failed: {}", entry.requested, e);
                        *timer = None;
                        return Err(e);
                    }
                }
            }
            let failures = *failures;
            entry.state = bind(entry.requested, &self.handle, self.retry_interval, failures);
        }
        match &mut entry.state {
            State::Listening { listener, .. } => match listener.accept() {
                Ok(accepted) => Ok(Async::Ready(accepted)),
                Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Async::NotReady),
                Err(e) => Err(e),
            },
            // Failed again; `bind` polled the new timer, which wakes the task.
            State::Retrying { .. } => Ok(Async::NotReady),
        }
    }
}

impl Entry {
    fn close(self) {
        match self.state {
            State::Listening { local, .. } => {
                info!(
                    "stopped listening on {} (requested {})",
                    local, self.requested
                )
            }
            State::Retrying { .. } => info!("no longer trying to listen on {}", self.requested),
        }
    }
}

/// Binds `requested`; on failure schedules a retry after `interval`.
/// `failures` counts the tries that failed before this one.
fn bind(requested: SocketAddr, handle: &Handle, interval: Duration, failures: u32) -> State {
    let bound = TcpListener::bind(&requested, handle)
        .and_then(|listener| Ok((listener.local_addr()?, listener)));
    match bound {
        Ok((local, listener)) => {
            if failures == 0 {
                info!("listening on {} (requested {})", local, requested);
            } else {
                info!(
                    "listening on {} (requested {}) after {} failed attempts",
                    local, requested, failures
                );
            }
            State::Listening { listener, local }
        }
        Err(e) => {
            if failures == 0 {
                error!(
                    "cannot listen on {}: {}; retrying every {:?}",
                    requested, e, interval
                );
            } else {
                debug!(
                    "still cannot listen on {}: {} (attempt {})",
                    requested,
                    e,
                    failures + 1
                );
            }
            State::Retrying {
                timer: retry_timer(requested, interval, handle),
                failures: failures + 1,
            }
        }
    }
}

/// A timer for the next bind of `requested`, already polled once so that it
/// wakes the current task. `None` means "retry at the next poll", and this
/// task is woken for it.
fn retry_timer(requested: SocketAddr, interval: Duration, handle: &Handle) -> Option<Timeout> {
    let polled = timer(interval, handle).and_then(|mut timer| match timer.poll()? {
        Async::NotReady => Ok(Some(timer)),
        Async::Ready(()) => Ok(None),
    });
    match polled {
        Ok(Some(timer)) => return Some(timer),
        Ok(None) => {}
        Err(e) => error!("bind retry timer for {} failed: {}", requested, e),
    }
    task::current().notify();
    None
}
