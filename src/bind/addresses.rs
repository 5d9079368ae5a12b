//! The address side of [`BindMany`](super::BindMany): a task of its own that
//! applies address lists and retries failed binds, whether or not the accept
//! side is being polled.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::mem;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::task::{self, Task};
use futures::{Async, Future, Poll, Stream};
use log::{debug, error, info};
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Handle, Timeout};

use super::{Entry, Shared, State};
use crate::limits::{timer, POLL_BUDGET};

/// The address task of one `BindMany`; it holds the shared state weakly.
pub(super) fn task<S>(shared: &Rc<RefCell<Shared<S>>>, handle: &Handle) -> AddressTask<S> {
    AddressTask {
        shared: Rc::downgrade(shared),
        handle: handle.clone(),
    }
}

pub(super) struct AddressTask<S> {
    shared: Weak<RefCell<Shared<S>>>,
    handle: Handle,
}

impl<S> Future for AddressTask<S>
where
    S: Stream,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    type Item = ();
    type Error = ();

    fn poll(&mut self) -> Poll<(), ()> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(Async::Ready(())); // the `BindMany` was dropped
        };
        let handle = &self.handle;
        let mut shared = shared.borrow_mut();
        if shared.ended || shared.addresses.is_none() {
            return Ok(Async::Ready(()));
        }
        if !shared
            .address_task
            .as_ref()
            .is_some_and(Task::will_notify_current)
        {
            shared.address_task = Some(task::current());
        }
        let mut changed = false;
        if let Some(addresses) = shared.poll_addresses() {
            shared.replace(addresses, handle);
            changed = true;
        }
        if !shared.ended {
            changed |= shared.retry_due_binds(handle);
        }
        if changed || shared.ended {
            if let Some(accept_task) = &shared.accept_task {
                accept_task.notify();
            }
        }
        if shared.ended {
            return Ok(Async::Ready(()));
        }
        Ok(Async::NotReady)
    }
}

impl<S> Shared<S>
where
    S: Stream,
    S::Item: IntoIterator<Item = SocketAddr>,
{
    /// Takes every list the address stream has ready and returns the last
    /// one; ends the set if the address stream ended or failed.
    fn poll_addresses(&mut self) -> Option<S::Item> {
        let addresses = self.addresses.as_mut()?;
        let mut latest = None;
        for _ in 0..POLL_BUDGET {
            match addresses.poll() {
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

impl<S> Shared<S> {
    fn end(&mut self) {
        self.ended = true;
        for entry in mem::take(&mut self.listeners) {
            entry.close();
        }
    }

    /// Makes `addresses` the set of listened addresses, keeping the sockets
    /// of the addresses that stay.
    fn replace<I: IntoIterator<Item = SocketAddr>>(&mut self, addresses: I, handle: &Handle) {
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
        let interval = self.retry_interval;
        self.listeners = wanted
            .into_iter()
            .map(|requested| {
                kept.remove(&requested).unwrap_or_else(|| Entry {
                    requested,
                    state: bind(requested, handle, interval, 0),
                })
            })
            .collect();
    }

    /// Binds again the addresses whose retry is due; says whether one of them
    /// now listens.
    fn retry_due_binds(&mut self, handle: &Handle) -> bool {
        let interval = self.retry_interval;
        let mut bound = false;
        for entry in &mut self.listeners {
            let State::Retrying { timer, failures } = &mut entry.state else {
                continue;
            };
            if let Some(pending) = timer {
                match pending.poll() {
                    Ok(Async::NotReady) => continue,
                    Ok(Async::Ready(())) => {}
                    Err(e) => error!("bind retry timer for {} failed: {}", entry.requested, e),
                }
            }
            entry.state = bind(entry.requested, handle, interval, *failures);
            bound |= matches!(entry.state, State::Listening { .. });
        }
        bound
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
