//! What a drain decides, for both stacks: the draining flag, who is woken
//! when it is raised, what is logged, and the deadline's report. The
//! futures 0.1 `Drain` (in `mod.rs`) and the tokio 1 one (`tokio1.rs`) only
//! poll and wake.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::info;
use parking_lot::Mutex;

/// The state every clone of a `Drain`, and every connection it watches,
/// shares.
#[derive(Default)]
pub(crate) struct State {
    /// Raised once, never lowered. Raised before the waiters are taken, and
    /// read again under their lock by whoever registers, so that no waiter
    /// registers after the wake-ups and sleeps through the drain.
    draining: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The tasks to wake when the drain begins, in a slab whose slots are
/// reused: registering allocates only when the slab grows.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<(Waiter, Kind)>>,
    free: Vec<usize>,
    /// Slots held by connections (not by `Drain` futures), for the log.
    connections: usize,
}

/// A task of either stack.
pub(crate) enum Waiter {
    Task(futures::task::Task),
    #[cfg_attr(not(feature = "tokio1"), allow(dead_code))]
    Waker(std::task::Waker),
}

/// Who waits: a watched connection, or a `Drain` polled as a future.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connection,
    Drain,
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Task(task) => task.notify(),
            Waiter::Waker(waker) => waker.wake(),
        }
    }
}

impl State {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins the drain, once: wakes every waiter and logs at `info` why,
    /// and how many connections were told. Later calls do nothing.
    pub(crate) fn begin(&self, why: &str) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.lock());
        info!(
            "{}; draining: {} watched connections told to finish",
            why, waiters.connections
        );
        for (waiter, _) in waiters.slots.into_iter().flatten() {
            waiter.wake();
        }
    }
}

/// One waiter's place in a [`State`], freed on drop.
pub(crate) struct Registration {
    state: Arc<State>,
    kind: Kind,
    /// The slot this waiter holds, if it registered.
    slot: Option<usize>,
}

impl Registration {
    pub(crate) fn new(state: Arc<State>, kind: Kind) -> Registration {
        Registration {
            state,
            kind,
            slot: None,
        }
    }

    pub(crate) fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The one atomic load of the hot path.
    pub(crate) fn is_draining(&self) -> bool {
        self.state.is_draining()
    }

    /// Makes `waiter` the one woken when the drain begins (in place of the
    /// one registered before); `false`, registering nothing, if it has
    /// begun already.
    pub(crate) fn wait(&mut self, waiter: Waiter) -> bool {
        let mut waiters = self.state.waiters.lock();
        if self.state.is_draining() {
            return false;
        }
        let entry = Some((waiter, self.kind));
        match self.slot {
            Some(slot) => waiters.slots[slot] = entry,
            None => {
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = entry;
                        slot
                    }
                    None => {
                        waiters.slots.push(entry);
                        waiters.slots.len() - 1
                    }
                };
                if self.kind == Kind::Connection {
                    waiters.connections += 1;
                }
                self.slot = Some(slot);
            }
        }
        true
    }

    /// Gives the slot back: nothing will need waking.
    pub(crate) fn cancel(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut waiters = self.state.waiters.lock();
        // Once the drain has begun the slab was emptied: nothing to free.
        if self.state.is_draining() {
            return;
        }
        waiters.slots[slot] = None;
        waiters.free.push(slot);
        if self.kind == Kind::Connection {
            waiters.connections -= 1;
        }
    }
}

impl Clone for Registration {
    /// The same state, not registered yet.
    fn clone(&self) -> Registration {
        Registration::new(self.state.clone(), self.kind)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The drain deadline passed with `left` connections still running: they
/// are being dropped (counted as aborted by the pool). Logged at `info`.
pub(crate) fn log_deadline_passed(deadline: Duration, left: usize) {
    info!(
        "drain deadline of {:?} passed: dropping the {} connections still running",
        deadline, left
    );
}
