//! The address side of [`BindMany`](super::BindMany): a task of its own that
//! applies address lists and retries failed binds, whether or not the accept
//! side is being polled.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Instant;

use futures::task::{self, Task};
use futures::{Async, Future, Poll, Stream};
use log::error;
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Handle, Timeout};

use super::set::{catch_panic, AddressSet, Bound, End, Source};
use super::Shared;
use crate::limits::POLL_BUDGET;

/// The address task of one `BindMany`; it holds the shared state weakly.
pub(super) fn task<S>(shared: &Rc<RefCell<Shared<S>>>, handle: &Handle) -> AddressTask<S> {
    AddressTask {
        shared: Rc::downgrade(shared),
        handle: handle.clone(),
        retry: None,
    }
}

pub(super) struct AddressTask<S> {
    shared: Weak<RefCell<Shared<S>>>,
    handle: Handle,
    /// The timer of the earliest retry, and when it is due; `None` inside
    /// means the timer could not be made: retry at the next poll.
    retry: Option<(Instant, Option<Timeout>)>,
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
        let mut shared = shared.borrow_mut();
        if shared.set.has_ended() || shared.addresses.is_none() {
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
            let handle = &self.handle;
            shared
                .set
                .replace(addresses, Instant::now(), |requested, source| {
                    bind_one(requested, source, handle)
                });
            changed = true;
        }
        let ended = shared.set.has_ended();
        if !ended {
            changed |= self.retry_due_binds(&mut shared.set);
        }
        if changed || ended {
            if let Some(accept_task) = &shared.accept_task {
                accept_task.notify();
            }
        }
        if ended {
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
    /// one; ends the set if the address stream ended, failed or panicked.
    fn poll_addresses(&mut self) -> Option<S::Item> {
        let addresses = self.addresses.as_mut()?;
        let mut latest = None;
        for _ in 0..POLL_BUDGET {
            let end = match catch_panic(|| addresses.poll()) {
                Ok(Ok(Async::Ready(Some(addresses)))) => {
                    latest = Some(addresses);
                    continue;
                }
                Ok(Ok(Async::NotReady)) => return latest,
                Ok(Ok(Async::Ready(None))) => End::Ended,
                Ok(Err(_)) => End::Failed,
                Err(panicked) => panicked,
            };
            self.set.end(end);
            return None;
        }
        // Lists keep coming: apply the latest, and come back for the rest
        // after the other tasks had their turn.
        task::current().notify();
        latest
    }
}

impl<S> AddressTask<S> {
    /// Binds again the addresses whose retry is due and sets the timer for
    /// the next one; says whether an address now listens.
    fn retry_due_binds(&mut self, set: &mut AddressSet<TcpListener>) -> bool {
        let mut now = Instant::now();
        if let Some((due, timer)) = &mut self.retry {
            let fired = match timer {
                None => true,
                Some(timer) => match timer.poll() {
                    Ok(Async::NotReady) => false,
                    Ok(Async::Ready(())) => true,
                    Err(e) => {
                        error!("bind retry timer failed: {}; retrying now", e);
                        true
                    }
                },
            };
            if fired {
                now = now.max(*due);
                self.retry = None;
            }
        }
        let handle = &self.handle;
        let bound = set.retry_due(now, |requested, source| bind_one(requested, source, handle));
        match set.next_retry() {
            None => self.retry = None,
            Some(due) if self.retry.as_ref().is_some_and(|(armed, _)| *armed == due) => {}
            Some(due) => self.retry = Some((due, retry_timer(due, handle))),
        }
        bound
    }
}

/// Binds one address of a `BindMany`, with tokio-core's
/// `TcpListener::bind` (the options listed in `BindMany`'s docs), or takes
/// its socket from the set's source (the same options, and tokio-core's
/// backlog).
fn bind_one(
    requested: SocketAddr,
    source: Option<&dyn Source>,
    handle: &Handle,
) -> io::Result<Bound<TcpListener>> {
    let (listener, keep) = match source {
        None => (TcpListener::bind(&requested, handle)?, None),
        Some(source) => {
            let (listener, keep) = source.listener(requested, crate::limits::DEFAULT_BACKLOG)?;
            let local = listener.local_addr()?;
            let listener = TcpListener::from_listener(listener, &local, handle)?;
            (listener, Some(keep))
        }
    };
    let local = listener.local_addr()?;
    Ok(Bound {
        listener,
        local,
        keep,
    })
}

/// A timer that fires at `due`, already polled once so that it wakes the
/// current task. `None` means "retry at the next poll", and this task is
/// woken for it.
fn retry_timer(due: Instant, handle: &Handle) -> Option<Timeout> {
    let polled = Timeout::new_at(due, handle).and_then(|mut timer| match timer.poll()? {
        Async::NotReady => Ok(Some(timer)),
        Async::Ready(()) => Ok(None),
    });
    match polled {
        Ok(Some(timer)) => return Some(timer),
        Ok(None) => {}
        Err(e) => error!("bind retry timer failed: {}; retrying now", e),
    }
    task::current().notify();
    None
}
