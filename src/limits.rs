//! The bounds every combinator of this crate keeps: how much one `poll` may
//! do, and how long a timer may be.

use std::io;
use std::time::Duration;

use futures::{task, Async};
use tokio_core::reactor::{Handle, Timeout};

/// How many things (accepted connections, skipped errors, finished
/// connections, address lists) one `poll` handles before it lets the other
/// tasks on the event loop run.
pub(crate) const POLL_BUDGET: usize = 64;

/// The backlog of the listening sockets this crate binds, tokio-core's:
/// `tk_listen::tokio1::DEFAULT_BACKLOG` (whose docs say why), the
/// handover's binds and a `BindMany`'s from a handover.
pub(crate) const DEFAULT_BACKLOG: u32 = 1024;

/// Panics unless `max_connections`, the cap of a `listen` (futures 0.1 or
/// tokio 1), lets at least one connection run.
pub(crate) fn check_max_connections(max_connections: usize) {
    assert!(
        max_connections > 0,
        "listen(0) would never accept a connection and never resolve; \
         pass the maximum number of connections to serve at once (at least 1)"
    );
}

/// Asks for another poll soon and returns `NotReady`, so that the other tasks
/// on the event loop get their turn first.
pub(crate) fn yield_to_other_tasks<T>() -> Async<T> {
    task::current().notify();
    Async::NotReady
}

/// The longest pause or retry interval; longer ones are cut to this. Beyond
/// about two years tokio-core's timer fails, and near `Duration::MAX` adding
/// the delay to the current time would overflow.
pub(crate) const LONGEST_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A timer that fires after `delay`, or after [`LONGEST_DELAY`] if that is
/// shorter.
pub(crate) fn timer(delay: Duration, handle: &Handle) -> io::Result<Timeout> {
    Timeout::new(delay.min(LONGEST_DELAY), handle)
}
