//! The decisions of `BindMany`, free of any runtime: which addresses to keep,
//! close and bind when a new list comes, when a failed bind is tried again,
//! and which listener is asked first for the next connection. Both adapters
//! (`super::BindMany` for futures 0.1, `super::tokio1::BindMany` for tokio 1)
//! hold one [`AddressSet`] and only poll and forward.
//!
//! The listener type `L` and the function that binds one address are the
//! adapter's; what is documented on `crate::BindMany` is decided here. A
//! [`Source`] (a `Handover`, feature `handover`) may give the addresses
//! their sockets instead: the set hands it to the bind function and keeps
//! what the source keeps of each socket as long as its address listens.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error, info};

use crate::limits::{LONGEST_DELAY, POLL_BUDGET};

/// The set of listened addresses, in the order of the latest list.
pub(super) struct AddressSet<L> {
    /// In the order of the latest address list, without duplicates.
    entries: Vec<Entry<L>>,
    retry_interval: Duration,
    /// Where the next search for a connection starts.
    next: usize,
    /// Results yielded since the accept side last returned "not ready".
    streak: usize,
    /// Where the sockets come from, if not from the adapter's own bind.
    source: Option<Box<dyn Source>>,
    /// The address stream ended, failed or panicked: every listener is
    /// closed, and the accept side ends.
    ended: bool,
    /// The panic of the address stream, until the accept side raises it.
    panic: Option<Box<dyn Any + Send>>,
}

/// Why the address stream gives no more lists.
pub(super) enum End {
    Ended,
    /// It failed (futures 0.1 streams have errors).
    Failed,
    /// Polling it panicked, with this payload.
    Panicked(Box<dyn Any + Send>),
}

/// Gives the addresses of a set their listening sockets instead of the
/// adapter's own bind: a `Handover` (feature `handover`), which takes the
/// inherited socket of an address or binds one, and passes the sockets on
/// to its successor.
pub(crate) trait Source: Send {
    /// The listening socket for `requested` (non-blocking), bound with
    /// `backlog` unless it was inherited, and what keeps a copy of it for
    /// the successor: the set drops it when the address leaves the set.
    fn listener(
        &self,
        requested: SocketAddr,
        backlog: u32,
    ) -> io::Result<(std::net::TcpListener, Keep)>;

    /// The set applied its first address list, or ended (called after
    /// every list; only the first call counts). Dropping the source counts
    /// as well.
    fn applied(&self);
}

/// What a [`Source`] keeps of a socket while its address is in the set.
pub(crate) type Keep = Box<dyn Send>;

/// A bound address, from the adapter's bind function.
pub(super) struct Bound<L> {
    pub(super) listener: L,
    pub(super) local: SocketAddr,
    /// The source's copy of the socket, if a source gave it.
    pub(super) keep: Option<Keep>,
}

/// One address of the set and what became of it.
struct Entry<L> {
    requested: SocketAddr,
    state: State<L>,
}

enum State<L> {
    Listening {
        listener: L,
        local: SocketAddr,
        /// Dropped with the listener: the socket then closes everywhere.
        keep: Option<Keep>,
    },
    /// Binding failed `failures` times; the next try is due at `due`.
    Retrying { due: Instant, failures: u32 },
}

impl<L> AddressSet<L> {
    /// An empty set that retries failed binds every second.
    pub(super) fn new() -> AddressSet<L> {
        AddressSet {
            entries: Vec::new(),
            retry_interval: Duration::from_secs(1),
            next: 0,
            streak: 0,
            source: None,
            ended: false,
            panic: None,
        }
    }

    /// The interval of the retries scheduled from now on, cut to
    /// [`LONGEST_DELAY`].
    pub(super) fn set_retry_interval(&mut self, interval: Duration) {
        self.retry_interval = interval.min(LONGEST_DELAY);
    }

    pub(super) fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// The local addresses of the listening entries, in list order.
    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.entries
            .iter()
            .filter_map(|entry| match entry.state {
                State::Listening { local, .. } => Some(local),
                State::Retrying { .. } => None,
            })
            .collect()
    }

    /// Makes `addresses` the set, keeping the listeners of the addresses
    /// that stay (never rebound) and closing the others before anything new
    /// is bound (a new address may overlap a removed one: `0.0.0.0:80`
    /// replacing `127.0.0.1:80`). Each new address is bound once with
    /// `bind`, even if it is listed several times; `bind` is given the
    /// source, if the set has one, which then hears that a list was applied.
    pub(super) fn replace<I, B>(&mut self, addresses: I, now: Instant, mut bind: B)
    where
        I: IntoIterator<Item = SocketAddr>,
        B: FnMut(SocketAddr, Option<&dyn Source>) -> io::Result<Bound<L>>,
    {
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        for requested in addresses {
            if seen.insert(requested) {
                wanted.push(requested); // first occurrence; duplicates skipped
            }
        }
        let mut kept = HashMap::new();
        for entry in mem::take(&mut self.entries) {
            if seen.contains(&entry.requested) {
                kept.insert(entry.requested, entry);
            } else {
                entry.close();
            }
        }
        let interval = self.retry_interval;
        let source = self.source.as_deref();
        self.entries = wanted
            .into_iter()
            .map(|requested| {
                kept.remove(&requested).unwrap_or_else(|| Entry {
                    requested,
                    state: attempt(requested, bind(requested, source), 0, interval, now),
                })
            })
            .collect();
        if let Some(source) = source {
            source.applied();
        }
    }

    /// Binds again, with `bind`, each address whose retry is due at `now`;
    /// says whether one of them now listens. An address that fails again is
    /// due one interval after `now`, so a zero interval doesn't loop here.
    pub(super) fn retry_due<B>(&mut self, now: Instant, mut bind: B) -> bool
    where
        B: FnMut(SocketAddr, Option<&dyn Source>) -> io::Result<Bound<L>>,
    {
        let interval = self.retry_interval;
        let source = self.source.as_deref();
        let mut bound = false;
        for entry in &mut self.entries {
            let State::Retrying { due, failures } = entry.state else {
                continue;
            };
            if due > now {
                continue;
            }
            let requested = entry.requested;
            entry.state = attempt(requested, bind(requested, source), failures, interval, now);
            bound |= matches!(entry.state, State::Listening { .. });
        }
        bound
    }

    /// When the earliest retry is due, if an address waits for one.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|entry| match entry.state {
                State::Retrying { due, .. } => Some(due),
                State::Listening { .. } => None,
            })
            .min()
    }

    /// The address stream gives no more lists (`why`, logged): closes
    /// every listener, and keeps the panic, if it panicked, for
    /// [`poll_ended`](AddressSet::poll_ended) to raise again.
    pub(super) fn end(&mut self, why: End) {
        match why {
            End::Ended => info!("address stream ended; closing all listeners"),
            End::Failed => error!("address stream failed; closing all listeners"),
            End::Panicked(panic) => {
                error!("address stream panicked; closing all listeners");
                self.panic = Some(panic);
            }
        }
        self.ended = true;
        self.clear();
    }

    /// Has the address stream ended (or failed, or panicked)?
    pub(super) fn has_ended(&self) -> bool {
        self.ended
    }

    /// The accept side's check before each poll: whether the stream ends.
    /// If the address stream panicked, its panic is raised again here,
    /// once: out of the `BindMany`'s poll, as any stream adapter lets the
    /// panic of the stream it polls through (the address stream is polled
    /// on a task of its own, where the panic would be lost, or end the
    /// event loop). Polled after that, the stream has ended.
    pub(super) fn poll_ended(&mut self) -> bool {
        if let Some(panic) = self.panic.take() {
            panic::resume_unwind(panic);
        }
        self.ended
    }

    /// Closes every listener and empties the set (the source, if any,
    /// hears it as an applied list).
    fn clear(&mut self) {
        for entry in mem::take(&mut self.entries) {
            entry.close();
        }
        if let Some(source) = &self.source {
            source.applied();
        }
    }

    /// The next connection, fairly: asks each listener in turn with
    /// `try_accept`, starting after the one that produced the previous
    /// result, and returns the first answer (`None`: none was ready).
    ///
    /// After [`POLL_BUDGET`] answers in a row it returns `Err(Yield)` once
    /// without asking anyone: the adapter then wakes its task and returns
    /// "not ready", so that a flood doesn't starve the other tasks.
    #[inline]
    pub(super) fn next_ready<R, F>(&mut self, mut try_accept: F) -> Result<Option<R>, Yield>
    where
        F: FnMut(&mut L) -> Option<R>,
    {
        if self.streak >= POLL_BUDGET {
            self.streak = 0;
            return Err(Yield);
        }
        let count = self.entries.len();
        let start = self.next;
        for i in 0..count {
            let index = (start + i) % count;
            let State::Listening { listener, .. } = &mut self.entries[index].state else {
                continue;
            };
            if let Some(result) = try_accept(listener) {
                self.next = (index + 1) % count;
                self.streak += 1;
                return Ok(Some(result));
            }
        }
        self.streak = 0;
        Ok(None)
    }
}

#[cfg(all(feature = "handover", unix))]
impl<L> AddressSet<L> {
    /// Takes the sockets of the addresses bound from now on from `source`.
    pub(super) fn set_source(&mut self, source: Box<dyn Source>) {
        self.source = Some(source);
    }
}

/// Polls the address stream with `poll`, catching its panic for
/// [`AddressSet::end`]. Unwind safety: a stream that panicked is never
/// polled again (the set has ended).
pub(super) fn catch_panic<T>(poll: impl FnOnce() -> T) -> Result<T, End> {
    panic::catch_unwind(AssertUnwindSafe(poll)).map_err(End::Panicked)
}

/// The accept side had its share: it should let the other tasks run.
#[derive(Debug)]
pub(super) struct Yield;

impl<L> Entry<L> {
    /// Closes the listener, then logs that it is closed.
    fn close(self) {
        match self.state {
            State::Listening {
                listener,
                local,
                keep,
            } => {
                drop(listener);
                drop(keep);
                info!(
                    "stopped listening on {} (requested {})",
                    local, self.requested
                )
            }
            State::Retrying { .. } => info!("no longer trying to listen on {}", self.requested),
        }
    }
}

/// What the bind of `requested` (after `failures` failed ones) makes of the
/// entry, logged: listening, or a retry due one `interval` after `now`.
fn attempt<L>(
    requested: SocketAddr,
    bound: io::Result<Bound<L>>,
    failures: u32,
    interval: Duration,
    now: Instant,
) -> State<L> {
    match bound {
        Ok(Bound {
            listener,
            local,
            keep,
        }) => {
            if failures == 0 {
                info!("listening on {} (requested {})", local, requested);
            } else {
                info!(
                    "listening on {} (requested {}) after {} failed attempts",
                    local, requested, failures
                );
            }
            State::Listening {
                listener,
                local,
                keep,
            }
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
                due: now + interval,
                failures: failures.saturating_add(1),
            }
        }
    }
}

impl<L> fmt::Debug for AddressSet<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}

impl<L> fmt::Debug for Entry<L> {
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

#[cfg(test)]
mod tests;
