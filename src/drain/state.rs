//! What a drain decides, for both stacks: the draining flag, who is woken
//! when it is raised, when a `Drain` or a watched connection registers its
//! task and learns that the drain began, what is logged, and the deadline's
//! report. The futures 0.1 `Drain` (in `mod.rs`) and the tokio 1 one
//! (`tokio1.rs`) hold a [`DrainParts`] or a [`WatchParts`] and only poll
//! their signal or connection, naming their task through [`Current`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use log::info;
use parking_lot::Mutex;

/// The state every clone of a `Drain`, and every connection it watches,
/// shares.
#[derive(Default)]
struct State {
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
    Waker(Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Task(task) => task.notify(),
            Waiter::Waker(waker) => waker.wake(),
        }
    }
}

/// Who waits: a watched connection, or a `Drain` polled as a future.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    Drain,
}

/// How a stack names the task that polls now: futures 0.1's
/// [`Current01`], tokio 1's `Context`.
pub(crate) trait Current {
    /// The handle kept to wake the task.
    type Task: Clone + Into<Waiter>;
    /// Is `task` the one polling now?
    fn is(&self, task: &Self::Task) -> bool;
    /// A handle of the task polling now.
    fn task(&self) -> Self::Task;
}

/// The futures 0.1 task polling now (`futures::task::current`).
pub(crate) struct Current01;

impl Current for Current01 {
    type Task = futures::task::Task;

    #[inline]
    fn is(&self, task: &futures::task::Task) -> bool {
        task.will_notify_current()
    }

    fn task(&self) -> futures::task::Task {
        futures::task::current()
    }
}

impl Current for Context<'_> {
    type Task = Waker;

    #[inline]
    fn is(&self, waker: &Waker) -> bool {
        waker.will_wake(self.waker())
    }

    fn task(&self) -> Waker {
        self.waker().clone()
    }
}

impl From<futures::task::Task> for Waiter {
    fn from(task: futures::task::Task) -> Waiter {
        Waiter::Task(task)
    }
}

impl From<Waker> for Waiter {
    fn from(waker: Waker) -> Waiter {
        Waiter::Waker(waker)
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
struct Registration {
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

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// What a `Drain` of either stack is made of: its place among the waiters
/// when polled as a future, and the shutdown signal `S` (boxed by the
/// adapter), shared by the clones and `None` once it fired.
pub(crate) struct DrainParts<S, T> {
    waiting: Waiting<T>,
    signal: Arc<Mutex<Option<S>>>,
}

impl<S, T> DrainParts<S, T> {
    pub(crate) fn new(signal: S) -> DrainParts<S, T> {
        DrainParts {
            waiting: Waiting::new(Arc::new(State::default()), Kind::Drain),
            signal: Arc::new(Mutex::new(Some(signal))),
        }
    }

    /// `Drain::begin`.
    pub(crate) fn begin(&self) {
        self.waiting
            .registration
            .state()
            .begin("drain begun by hand");
    }

    /// `Drain::is_draining`.
    pub(crate) fn is_draining(&self) -> bool {
        self.waiting.registration.is_draining()
    }

    /// For tests: the slab's length (slots ever taken) and how many
    /// connections hold a slot now.
    #[cfg(test)]
    pub(crate) fn slab(&self) -> (usize, usize) {
        let waiters = self.waiting.registration.state().waiters.lock();
        (waiters.slots.len(), waiters.connections)
    }

    /// The parts of a connection watched by this drain, which calls
    /// `on_drain` once told.
    pub(crate) fn watch<F>(&self, on_drain: F) -> WatchParts<F, T> {
        WatchParts {
            on_drain: Some(on_drain),
            waiting: Waiting::new(self.waiting.registration.state().clone(), Kind::Connection),
        }
    }

    /// A poll of the `Drain` as a future: whether the drain has begun.
    /// If it hasn't, polls the signal with `fired` (which says whether it
    /// resolved or failed, so that the drain begins now), then makes sure
    /// the task polling now (`cx`) is woken when the drain begins.
    pub(crate) fn poll<C>(&mut self, cx: &mut C, fired: impl FnOnce(&mut S, &mut C) -> bool) -> bool
    where
        C: Current<Task = T>,
        T: Clone + Into<Waiter>,
    {
        if self.is_draining() {
            return true;
        }
        {
            let mut signal = self.signal.lock();
            if let Some(current) = signal.as_mut() {
                if fired(current, cx) {
                    *signal = None;
                    drop(signal);
                    self.waiting
                        .registration
                        .state()
                        .begin("shutdown signal received");
                    return true;
                }
            }
        }
        // Woken by `begin`, from wherever it is called.
        self.waiting.poll_begun(cx)
    }
}

impl<S, T> Clone for DrainParts<S, T> {
    /// The same drain and signal, not registered yet.
    fn clone(&self) -> DrainParts<S, T> {
        DrainParts {
            waiting: Waiting::new(self.waiting.registration.state().clone(), Kind::Drain),
            signal: self.signal.clone(),
        }
    }
}

impl<S, T> fmt::Debug for DrainParts<S, T> {
    /// The `Debug` of a `Drain` of either stack.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

/// What a watched connection (`Watch`) of either stack holds besides the
/// connection: the `on_drain` call it owes it, and its place among the
/// waiters.
pub(crate) struct WatchParts<F, T> {
    /// `None` once called.
    on_drain: Option<F>,
    waiting: Waiting<T>,
}

impl<F, T> WatchParts<F, T> {
    /// Before each poll of the connection: `on_drain`, once, if the drain
    /// has begun, for the adapter to call on the connection before polling
    /// it. One atomic load while nothing changes.
    #[inline]
    pub(crate) fn told_before_poll(&mut self) -> Option<F> {
        if self.on_drain.is_some() && self.waiting.registration.is_draining() {
            return self.tell();
        }
        None
    }

    /// After a poll in which the connection returned pending: makes sure the
    /// task polling now (`cx`) is woken when the drain begins, or, if it has
    /// begun meanwhile, `on_drain`, once, for the adapter to call on the
    /// connection and poll it again. A connection that ends in its first
    /// poll never registers; one that waits registers once, and again only
    /// when another task polls it.
    #[inline]
    pub(crate) fn told_after_pending<C>(&mut self, cx: &C) -> Option<F>
    where
        C: Current<Task = T>,
        T: Clone + Into<Waiter>,
    {
        if self.on_drain.is_some() && self.waiting.poll_begun(cx) {
            return self.tell();
        }
        None
    }

    /// Told: nothing more to wake.
    fn tell(&mut self) -> Option<F> {
        self.waiting.cancel();
        self.on_drain.take()
    }

    /// The `Debug` of a `Watch` of either stack around `conn`.
    pub(crate) fn fmt_watch(
        &self,
        conn: &dyn fmt::Debug,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        f.debug_struct("Watch")
            .field("conn", conn)
            .field("told", &self.on_drain.is_none())
            .finish()
    }
}

/// A `Drain` or a watched connection: its registration, and the task it
/// registered last (a futures 0.1 task or a waker), so that it registers
/// again only when another task polls it.
struct Waiting<T> {
    registration: Registration,
    task: Option<T>,
}

impl<T> Waiting<T> {
    fn new(state: Arc<State>, kind: Kind) -> Waiting<T> {
        Waiting {
            registration: Registration::new(state, kind),
            task: None,
        }
    }

    /// Whether the drain has begun; if not, the task polling now (`cx`) is
    /// the one woken when it begins.
    #[inline]
    fn poll_begun<C>(&mut self, cx: &C) -> bool
    where
        C: Current<Task = T>,
        T: Clone + Into<Waiter>,
    {
        if self.registration.is_draining() {
            return true;
        }
        if self.task.as_ref().is_some_and(|task| cx.is(task)) {
            return false;
        }
        let task = cx.task();
        if !self.registration.wait(task.clone().into()) {
            return true;
        }
        self.task = Some(task);
        false
    }

    /// Nothing more to wake.
    fn cancel(&mut self) {
        self.registration.cancel();
        self.task = None;
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
