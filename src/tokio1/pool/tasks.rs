//! The running connections' tasks: each one wrapped by [`run`], which
//! counts how it ended and adds one to the count of ends that [`Tasks`], the
//! pool's side, reads to free slots.

use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{AcqRel, Acquire, SeqCst},
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use log::{debug, error};
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::stats::{ListenStats, Outcome, Stamp};
use crate::tokio1::connection::{ConnectionOutput, PanicMessage};

/// The running connections' tasks, as the pool sees them.
pub(super) struct Tasks {
    /// The handles of the tasks started and not yet seen finished, to abort
    /// them, each with the time it started, for the age of an aborted one.
    /// In no order: the finished ones are swept out in batches
    /// ([`Tasks::sweep`]).
    handles: Vec<(JoinHandle<()>, Stamp)>,
    /// Slots taken: tasks started and whose ends were not yet counted here.
    pub(super) running: usize,
    /// Ends counted here (as [`Shared::ends`] counts them: modulo 2^48).
    freed: u64,
    /// Ends counted since the last sweep of `handles`, and how many more
    /// there must be before the next one.
    unswept: usize,
    sweep_after: usize,
    shared: Arc<Shared>,
}

/// What the pool shares with its connections' tasks.
struct Shared {
    /// The tasks' side of the count of slots: [`ENDED`] per task that
    /// counted its end, [`REPORTING`] per task counting it now, and
    /// [`CLOSED`] once the pool aborted its tasks (it is dropped, or the
    /// drain deadline passed): from then on no task counts its end, and
    /// those that had not are counted as aborted.
    ends: AtomicU64,
    /// Set by the pool only while it waits for a slot (full, or draining
    /// after its stream closed); the first end after that clears it and
    /// wakes `waker`. The rest of the time no end wakes the pool: it counts
    /// the ends at its next poll, when its stream has a connection for it.
    /// (An end that races with the setting may leave it set for nothing:
    /// the next end then wakes the pool once more than needed.)
    waiting: AtomicBool,
    /// The pool's task, as it polled last while waiting.
    waker: Mutex<Option<Waker>>,
    /// Written by the tasks as they end.
    stats: ListenStats,
}

/// [`Shared::ends`]: its lowest bit says the pool is closed, the next 15
/// count the tasks counting their ends right now (at most one per thread),
/// the top 48 the ends counted (modulo 2^48, which the pool's count of
/// running tasks never comes near). The count of ends is at the top so that
/// it wraps without spilling into the other two.
const CLOSED: u64 = 1;
const REPORTING: u64 = 1 << 1;
const REPORTING_MASK: u64 = ((1 << 15) - 1) << 1;
const ENDED_SHIFT: u32 = 16;
const ENDED: u64 = 1 << ENDED_SHIFT;
const ENDED_MASK: u64 = (1 << (64 - ENDED_SHIFT)) - 1;

/// The number of ends in a value of [`Shared::ends`].
fn ended(ends: u64) -> u64 {
    ends >> ENDED_SHIFT
}

/// Ends to count before the first sweep of the handles, and the fewest
/// between two: a sweep reads every handle kept, so sweeping after as many
/// ends as half the handles kept at the last one (at least this many)
/// reads about three handles per connection, and keeps the memory of about
/// that many finished tasks.
const SWEEP_AFTER: usize = 32;

impl Tasks {
    pub(super) fn new(stats: ListenStats) -> Tasks {
        Tasks {
            handles: Vec::new(),
            running: 0,
            freed: 0,
            unswept: 0,
            sweep_after: SWEEP_AFTER,
            shared: Arc::new(Shared {
                ends: AtomicU64::new(0),
                waiting: AtomicBool::new(false),
                waker: Mutex::new(None),
                stats,
            }),
        }
    }

    /// Starts one task, which `spawn` makes of the report it is given;
    /// `started` is the time stamp of the pool's poll.
    ///
    /// If `spawn` panics (outside a runtime), the report it was given was
    /// dropped with the task: the connection counts as started and failed,
    /// and its slot is freed as any other at the next count of ends.
    #[inline]
    pub(super) fn start(&mut self, started: Stamp, spawn: impl FnOnce(Report) -> JoinHandle<()>) {
        // Counted before the task exists: on another worker it may end, and
        // count its end, before `spawn` returns.
        self.shared.stats.record_start_shared();
        self.running += 1;
        let spawning = Spawning::enter();
        let handle = spawn(Report {
            shared: Some(self.shared.clone()),
            started,
        });
        drop(spawning);
        self.handles.push((handle, started));
    }

    /// Frees the slots of at most `budget` tasks that ended since the last
    /// call; how many.
    pub(super) fn free_ended(&mut self, budget: usize) -> usize {
        let freed = self.fresh(self.shared.ends.load(Acquire)).min(budget);
        if freed == 0 {
            return 0;
        }
        self.freed = (self.freed + freed as u64) & ENDED_MASK;
        self.running -= freed;
        self.unswept += freed;
        if self.running == 0 {
            // Every task has counted its end: none needs aborting (one that
            // has not finished is only returning).
            self.handles.clear();
            self.unswept = 0;
        } else if self.unswept >= self.sweep_after {
            self.sweep();
        }
        freed
    }

    /// Has the next task that ends wake the pool's task; `true` if one
    /// ended meanwhile (its slot is not freed yet).
    pub(super) fn wait_for_end(&mut self, cx: &mut Context<'_>) -> bool {
        {
            let mut waker = lock(&self.shared.waker);
            match &*waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // Then look again: an end either comes before this (and is seen
        // here) or sees `waiting` set (and wakes the pool).
        self.shared.waiting.store(true, SeqCst);
        self.fresh(self.shared.ends.load(SeqCst)) > 0
    }

    /// Ends counted by the tasks and not yet here, in a value of
    /// [`Shared::ends`].
    fn fresh(&self, ends: u64) -> usize {
        (ended(ends).wrapping_sub(self.freed) & ENDED_MASK) as usize
    }

    /// Drops the handles of the tasks that finished.
    fn sweep(&mut self) {
        self.handles.retain(|(handle, _)| !handle.is_finished());
        self.unswept = 0;
        self.sweep_after = SWEEP_AFTER.max(self.handles.len() / 2);
    }
}

impl Tasks {
    /// Aborts every task still running and counts those that had not
    /// counted their end as aborted; how many. Only the first call counts.
    ///
    /// A task that ends at the same moment either counted its end before
    /// [`CLOSED`] was set (and is counted as it ended; this waits for it to
    /// be done, so that `running` is 0 on return) or finds it set (and is
    /// counted here): once, either way. The ages of the aborted ones come
    /// from the tasks not finished before closing, which include them all;
    /// if one of those ended in between, the age of one aborted task may be
    /// taken from it, which ended at about this moment.
    pub(super) fn abort_all(&mut self) -> usize {
        self.handles.retain(|(handle, _)| !handle.is_finished());
        let mut aborted = 0;
        if self.shared.ends.fetch_or(CLOSED, AcqRel) & CLOSED == 0 {
            let mut ends = self.shared.ends.load(Acquire);
            while ends & REPORTING_MASK != 0 {
                // A task on another thread is between two atomic operations
                // on the counters (no lock, no user code, no wait): let it
                // finish them.
                std::thread::yield_now();
                ends = self.shared.ends.load(Acquire);
            }
            aborted = self.running - self.fresh(ends);
            debug_assert!(
                aborted <= self.handles.len(),
                "{} tasks to abort, {} handles",
                aborted,
                self.handles.len()
            );
            let cut = self.handles.iter().map(|&(_, started)| started);
            self.shared.stats.record_aborted_shared(cut.take(aborted));
        }
        for (handle, _) in self.handles.drain(..) {
            handle.abort();
        }
        self.running = 0;
        aborted
    }
}

impl Drop for Tasks {
    /// Forced shutdown: aborts every task still running.
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// A connection's way to report how it ended, once: by [`Report::send`],
/// or when dropped without (its task was cancelled).
pub(crate) struct Report {
    /// `None` once sent.
    shared: Option<Arc<Shared>>,
    started: Stamp,
}

impl Report {
    /// Counts `outcome`, adds one to the ends and wakes the pool's task if
    /// it waits for a slot; `false` if the pool aborted its tasks or this
    /// was sent before (inlined: the drop after a send costs a test).
    #[inline]
    fn send(&mut self, outcome: Outcome) -> bool {
        match self.shared.take() {
            Some(shared) => self.send_to(shared, outcome),
            None => false,
        }
    }

    fn send_to(&self, shared: Arc<Shared>, outcome: Outcome) -> bool {
        let now = shared.stats.now();
        if shared.ends.fetch_add(REPORTING, Acquire) & CLOSED != 0 {
            shared.ends.fetch_sub(REPORTING, AcqRel);
            return false;
        }
        shared
            .stats
            .record_end_concurrent(outcome, self.started, now);
        // Done reporting, and one more end, in one step.
        shared.ends.fetch_add(ENDED.wrapping_sub(REPORTING), SeqCst);
        if shared.waiting.load(SeqCst) && shared.waiting.swap(false, SeqCst) {
            let waker = lock(&shared.waker).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        true
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if self.shared.is_none() {
            return;
        }
        // Dropped by the `spawn` that was to run it (outside a runtime): the
        // connection never ran, it failed. Otherwise its task was cancelled;
        // the pool aborts its tasks only after closing, so a cancelled task
        // that can still report was cancelled by a runtime shutting down:
        // cut unfinished, as if the pool had aborted it.
        let (outcome, how) = if SPAWNING.get() {
            (Outcome::Failed, "could not be spawned")
        } else {
            (Outcome::Aborted, "was cancelled by its runtime")
        };
        if self.send(outcome) {
            debug!("a connection {}", how);
        }
    }
}

thread_local! {
    /// Whether this thread is inside a pool's `spawn`, where a [`Report`]
    /// dropped is that of a task that never ran.
    static SPAWNING: Cell<bool> = const { Cell::new(false) };
}

/// [`SPAWNING`] for the time of one `spawn`, also if it panics.
struct Spawning;

impl Spawning {
    #[inline]
    fn enter() -> Spawning {
        SPAWNING.set(true);
        Spawning
    }
}

impl Drop for Spawning {
    #[inline]
    fn drop(&mut self) {
        SPAWNING.set(false);
    }
}

/// One connection's task: runs it, catching a panic (logged at `error`),
/// and reports how it ended.
pub(crate) fn run<F>(connection: F, report: Report) -> Run<F> {
    Run { connection, report }
}

/// Whether the spawning adapters box a connection future of type `F` before
/// [`run`]: those larger than [`BOX_ABOVE`]. A constant for each `F`, so
/// the test and the other branch compile away.
#[inline]
pub(crate) fn boxes<F>() -> bool {
    std::mem::size_of::<F>() > BOX_ABOVE
}

/// Connection futures larger than this many bytes are boxed: tokio's
/// `spawn` moves the whole task future about ten times before its first
/// poll, and for a large one (a hyper connection is close to 2 KB) those
/// copies cost more than an allocation and one copy into it
/// (`benches/README.md`, "HTTP instructions per request"). Smaller ones stay
/// in the task, which saves the allocation.
const BOX_ABOVE: usize = 1024;

pin_project! {
    /// The future of [`run`]: the task of one connection.
    ///
    /// The connection future is a pinned field of it, reached through
    /// `pin-project-lite` (already a dependency of tokio) because this crate
    /// forbids `unsafe` code. An `async fn` wrapper would store the
    /// connection future twice in the task. A large connection future comes
    /// boxed ([`boxes`]); a small one is not, which saves an allocation per
    /// connection.
    pub(crate) struct Run<F> {
        #[pin]
        connection: F,
        report: Report,
    }
}

impl<F> Future for Run<F>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let connection = this.connection;
        let outcome = match catch_unwind(AssertUnwindSafe(|| connection.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) if output.is_failure() => Outcome::Failed,
            Ok(Poll::Ready(_)) => Outcome::Finished,
            Err(payload) => {
                error!("a connection panicked: {}", PanicMessage(&*payload));
                Outcome::Panicked
            }
        };
        this.report.send(outcome);
        Poll::Ready(())
    }
}

/// The waker's lock; nothing panics while holding it, but a poisoned one is
/// still consistent.
fn lock(waker: &Mutex<Option<Waker>>) -> MutexGuard<'_, Option<Waker>> {
    waker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{boxes, BOX_ABOVE};

    #[test]
    fn futures_over_the_threshold_are_boxed_and_others_not() {
        assert!(!boxes::<[u8; BOX_ABOVE]>());
        assert!(boxes::<[u8; BOX_ABOVE + 1]>());
        assert!(!boxes::<std::future::Ready<()>>());
    }
}
