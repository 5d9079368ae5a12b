//! The connections a [`Listen`](super::Listen) runs, and the wake-ups that say
//! which of them (or the stream) to poll.
//!
//! A slab of connection futures, each polled with its slot index as the
//! wake-up id, so that a wake-up says exactly what to poll: a woken connection
//! is polled alone, and the stream only when it asked to be. This is the job
//! `FuturesUnordered` does, without a heap node per connection and without
//! polling the accept stream (a failed `accept()`, costly in tokio-core) on
//! every connection's wake-up; `benches/README.md` has the instruction counts
//! that made it worth writing.

use std::any::Any;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::executor::{self, Notify};
use futures::task::{self, Task};
use futures::{Async, Future};
use log::error;

use crate::stats::{Clock, ListenStats, Outcome, Stamp};

/// The wake-up id of the stream; connection `i` has id `i + 1`.
pub(super) const STREAM: usize = 0;

/// Running connection futures, in slots that are reused.
pub(super) struct Pool<F> {
    /// Each running future with the time it started.
    slots: Vec<Option<(F, Stamp)>>,
    /// Empty slots, reused last-freed first.
    free: Vec<usize>,
    running: usize,
    /// The time stamp of the current poll of the `Listen`, shared by the
    /// connections that start or end in it (a field rather than an
    /// argument: one register fewer to keep across a connection's poll).
    clock: Clock,
    /// Counts every start and end, the end before the future is dropped (and
    /// with it, say, the socket closed), so that a client that sees its
    /// connection close sees it counted.
    stats: ListenStats,
}

impl<F> Pool<F>
where
    F: Future<Item = (), Error = ()>,
{
    pub(super) fn new(stats: ListenStats) -> Pool<F> {
        Pool {
            slots: Vec::new(),
            free: Vec::new(),
            running: 0,
            clock: Clock::new(),
            stats,
        }
    }

    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// Begins a poll of the `Listen`: the starts and ends from here on
    /// happen at a new time.
    #[inline]
    pub(super) fn new_poll(&mut self) {
        self.clock = Clock::new();
    }

    /// Polls a new connection once, and keeps it if it is still running.
    pub(super) fn start(&mut self, mut future: F, wakeups: &Arc<Wakeups>) {
        self.stats.record_start();
        let slot = self.free.last().copied().unwrap_or(self.slots.len());
        if let Some(outcome) = poll_connection(&mut future, slot + 1, wakeups) {
            // Ended within this poll: no time passed by this poll's clock.
            self.stats.record_end(outcome, 0, 0);
            return;
        }
        let started = self.clock.now(self.stats.epoch());
        if slot == self.slots.len() {
            self.slots.push(Some((future, started)));
        } else {
            self.free.pop();
            self.slots[slot] = Some((future, started));
        }
        self.running += 1;
    }

    /// Polls the connection with wake-up id `id`, if it still runs, and
    /// frees its slot if it ended; says whether it ended.
    pub(super) fn poll(&mut self, id: usize, wakeups: &Arc<Wakeups>) -> bool {
        let slot = id - 1;
        let Some(Some((future, started))) = self.slots.get_mut(slot) else {
            return false; // a late wake-up of a connection that ended
        };
        let Some(outcome) = poll_connection(future, id, wakeups) else {
            return false;
        };
        let started = *started;
        self.stats.record_end_by(&mut self.clock, outcome, started);
        self.slots[slot] = None;
        self.free.push(slot);
        self.running -= 1;
        true
    }
}

impl<F> Pool<F> {
    /// Drops every connection still running, counted as aborted first (so
    /// that a client that sees its connection close sees it counted).
    /// Returns how many there were.
    pub(super) fn abort_all(&mut self) -> usize {
        let aborted = self.running;
        if aborted > 0 {
            let starts = self.slots.iter().flatten().map(|&(_, started)| started);
            self.stats.record_aborted(starts);
            self.slots.clear();
            self.free.clear();
            self.running = 0;
        }
        aborted
    }
}

impl<F> Drop for Pool<F> {
    /// Forced shutdown: the connections still running are cut.
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Polls `future` as wake-up `id`, catching a panic; `None` while it runs.
fn poll_connection<F>(future: &mut F, id: usize, wakeups: &Arc<Wakeups>) -> Option<Outcome>
where
    F: Future<Item = (), Error = ()>,
{
    // The future is dropped right after a panic and never polled again, so
    // no broken state inside it is seen afterwards.
    let polled = executor::with_notify(wakeups, id, || {
        panic::catch_unwind(AssertUnwindSafe(|| future.poll()))
    });
    match polled {
        Ok(Ok(Async::NotReady)) => None,
        Ok(Ok(Async::Ready(()))) => Some(Outcome::Finished),
        Ok(Err(())) => Some(Outcome::Failed),
        Err(payload) => {
            error!(
                "a connection panicked: {}; it was dropped, the others carry on",
                panic_message(&*payload)
            );
            Some(Outcome::Panicked)
        }
    }
}

/// The message of a panic, if it was made with a string (as `panic!` and
/// `expect` make it).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(a panic payload that is not a string)"
    }
}

/// The wake-ups of one `Listen`: which ids were woken, and the task to wake
/// for them. Shared with every waker the stream and the connections hold,
/// which may live on other threads.
#[derive(Default)]
pub(super) struct Wakeups {
    state: Mutex<WakeState>,
}

#[derive(Default)]
struct WakeState {
    /// The task polling the `Listen`.
    task: Option<Task>,
    /// Ids woken since the last [`Wakeups::take`], each once.
    woken: Vec<usize>,
    /// `queued[id]`: is `id` in `woken`?
    queued: Vec<bool>,
}

impl Wakeups {
    /// Makes the current task the one to wake, and appends the ids woken so
    /// far to `into`.
    pub(super) fn take(&self, into: &mut Vec<usize>) {
        let mut state = self.lock();
        if !state.task.as_ref().is_some_and(Task::will_notify_current) {
            state.task = Some(task::current());
        }
        let WakeState { woken, queued, .. } = &mut *state;
        for &id in woken.iter() {
            queued[id] = false;
        }
        into.append(woken);
    }

    /// A poisoned lock only means a panic between two plain assignments in
    /// this file; the state is whole.
    fn lock(&self) -> MutexGuard<'_, WakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Notify for Wakeups {
    fn notify(&self, id: usize) {
        let mut state = self.lock();
        if state.queued.len() <= id {
            state.queued.resize(id + 1, false);
        }
        if mem::replace(&mut state.queued[id], true) {
            return; // the task was woken for it already
        }
        state.woken.push(id);
        if let Some(task) = &state.task {
            task.notify();
        }
    }
}
