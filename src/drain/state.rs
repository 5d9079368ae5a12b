//! What a drain decides, for both stacks: the draining flag, who is woken
//! when it is raised, when a `Drain` or a watched connection registers its
//! task and learns that the drain began, what is logged, and the deadline's
//! report. The futures 0.1 `Drain` (in `mod.rs`) and the tokio 1 one
//! (`tokio1.rs`) hold a [`DrainParts`] or a [`WatchParts`] and only poll
//! their signal or connection, naming their task through [`Current`]; the
//! signal is polled with a wake-up handle of the drain's own, made from a
//! [`WakeDrains`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};
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
#[derive(Clone)]
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

    /// Wakes the `Drain` futures (not the connections), so that they poll
    /// the signal: those registered in the slots `only` (the clones that
    /// found the signal out for polling; a slot freed and taken again since
    /// wakes its new holder for nothing), or all of them. Their tasks are
    /// cloned under the lock, and woken once it is released (waking may run
    /// code that polls a `Drain` or a connection, which takes the lock).
    fn wake_drains(&self, only: Option<&[usize]>) {
        let drains: Vec<Waiter> = self
            .waiters
            .lock()
            .slots
            .iter()
            .enumerate()
            .filter(|(slot, _)| only.is_none_or(|only| only.contains(slot)))
            .filter_map(|(_, held)| held.as_ref())
            .filter(|(_, kind)| *kind == Kind::Drain)
            .map(|(waiter, _)| waiter.clone())
            .collect();
        for drain in drains {
            drain.wake();
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
/// when polled as a future, and the shutdown signal, shared by the clones.
pub(crate) struct DrainParts<S, T, W> {
    waiting: Waiting<T>,
    signal: Arc<SharedSignal<S, W>>,
}

/// The shutdown signal `S` (boxed by the adapter), and the handle `W` it is
/// polled with: the stack's form of a [`WakeDrains`] (a futures 0.1
/// `NotifyHandle`, a tokio 1 `Waker`), made once per drain.
struct SharedSignal<S, W> {
    slot: Mutex<SignalSlot<S>>,
    wake: W,
}

/// Where the shutdown signal is. A clone polls it taken out of the lock,
/// which no one holds while the signal runs: its wake-up may run other
/// clones' polls at once, on this thread (an executor that polls inline).
enum SignalSlot<S> {
    /// To be polled by the next clone polled.
    Idle(S),
    /// Out with the clone polling it now. `missed`: the slots of the clones
    /// that came meanwhile and returned pending; the poll wakes them (and
    /// them only) when it ends, so that they poll the signal again. Waking
    /// every `Drain` there made each collision of two polls (frequent with
    /// many tasks on a multi-thread runtime) a new round of wake-ups.
    Polling { missed: Vec<usize> },
    /// Fired (the drain begins, or has begun).
    Fired,
}

/// A signal taken out for a poll: put back when dropped (a panic of the
/// signal's poll included), or marked fired once it has.
struct TakenSignal<'a, S, W> {
    shared: &'a SharedSignal<S, W>,
    state: &'a State,
    /// `None` once it fired.
    signal: Option<S>,
}

impl<S, W> Drop for TakenSignal<'_, S, W> {
    fn drop(&mut self) {
        let missed = {
            let mut slot = self.shared.slot.lock();
            let new = match self.signal.take() {
                Some(signal) => SignalSlot::Idle(signal),
                None => SignalSlot::Fired,
            };
            let fired = matches!(new, SignalSlot::Fired);
            match std::mem::replace(&mut *slot, new) {
                SignalSlot::Polling { missed } if !fired => missed,
                _ => Vec::new(),
            }
        };
        // Not while a panic of the signal unwinds: a waker's panic then
        // would abort the process.
        if !missed.is_empty() && !std::thread::panicking() {
            self.state.wake_drains(Some(&missed));
        }
    }
}

impl<S, T, W> DrainParts<S, T, W> {
    /// A drain around `signal`, which will be polled with the handle that
    /// `wake` makes of the drain's [`WakeDrains`].
    pub(crate) fn new(signal: S, wake: impl FnOnce(Arc<WakeDrains>) -> W) -> DrainParts<S, T, W> {
        let state = Arc::new(State::default());
        let wake = wake(Arc::new(WakeDrains {
            state: Arc::downgrade(&state),
        }));
        DrainParts {
            waiting: Waiting::new(state, Kind::Drain),
            signal: Arc::new(SharedSignal {
                slot: Mutex::new(SignalSlot::Idle(signal)),
                wake,
            }),
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
    /// If it hasn't, makes sure the task polling now (`cx`) is woken when
    /// the drain begins or the signal wakes, then polls the signal with
    /// `fired`, given the drain's wake-up handle (`fired` says whether the
    /// signal resolved or failed, so that the drain begins now).
    ///
    /// The signal keeps only the handle it was polled with last; were that
    /// the task of the clone polling now, a clone polled by another task
    /// before (the server's) would sleep through the signal once this one
    /// is dropped or no longer polled. The drain's handle wakes every
    /// `Drain` future registered, so whichever polls next begins the drain.
    /// Registered before the signal is polled, this task is woken by a
    /// wake-up that comes during the poll too. No lock is held while the
    /// signal runs (see [`SignalSlot`]).
    pub(crate) fn poll<C>(&mut self, cx: &C, fired: impl FnOnce(&mut S, &W) -> bool) -> bool
    where
        C: Current<Task = T>,
        T: Clone + Into<Waiter>,
    {
        // Woken by `begin`, from wherever it is called, and by the signal.
        if self.waiting.poll_begun(cx) {
            return true;
        }
        let signal = {
            let mut slot = self.signal.slot.lock();
            match std::mem::replace(&mut *slot, SignalSlot::Polling { missed: Vec::new() }) {
                SignalSlot::Idle(signal) => signal,
                SignalSlot::Polling { mut missed } => {
                    // Polled by another clone now, which wakes this one
                    // when its poll ends.
                    if let Some(mine) = self.waiting.registration.slot {
                        if !missed.contains(&mine) {
                            missed.push(mine);
                        }
                    }
                    *slot = SignalSlot::Polling { missed };
                    return false;
                }
                SignalSlot::Fired => {
                    // The clone that saw it fire begins the drain, and so
                    // wakes this one, if it hasn't already.
                    *slot = SignalSlot::Fired;
                    return self.is_draining();
                }
            }
        };
        let state = self.waiting.registration.state();
        let mut taken = TakenSignal {
            shared: &self.signal,
            state,
            signal: Some(signal),
        };
        let begun = taken
            .signal
            .as_mut()
            .is_some_and(|signal| fired(signal, &self.signal.wake));
        // A fired signal is dropped last, once the drain has begun.
        let spent = if begun { taken.signal.take() } else { None };
        drop(taken);
        if begun {
            state.begin("shutdown signal received");
        }
        drop(spent);
        begun
    }
}

impl<S, T, W> Clone for DrainParts<S, T, W> {
    /// The same drain and signal, not registered yet.
    fn clone(&self) -> DrainParts<S, T, W> {
        DrainParts {
            waiting: Waiting::new(self.waiting.registration.state().clone(), Kind::Drain),
            signal: self.signal.clone(),
        }
    }
}

impl<S, T, W> fmt::Debug for DrainParts<S, T, W> {
    /// The `Debug` of a `Drain` of either stack.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

/// The wake-up handle a drain's shutdown signal is polled with, whichever
/// clone polls it: it wakes the task of every `Drain` future registered
/// (not the watched connections), of either stack. One per drain.
pub(crate) struct WakeDrains {
    /// Weak: a signal kept alive (by its sender) does not keep the
    /// waiters; with every `Drain` gone there is nobody to wake.
    state: Weak<State>,
}

impl WakeDrains {
    /// Wakes every `Drain` future ([`State::wake_drains`]), if any is left.
    fn wake_drains(&self) {
        if let Some(state) = self.state.upgrade() {
            state.wake_drains(None);
        }
    }
}

impl futures::executor::Notify for WakeDrains {
    fn notify(&self, _id: usize) {
        self.wake_drains();
    }
}

impl Wake for WakeDrains {
    fn wake(self: Arc<Self>) {
        self.wake_drains();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_drains();
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
