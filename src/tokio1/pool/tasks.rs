//! The running connections' tasks: each one wrapped by [`run`], which
//! records how it ended and hands its slot back through the queue of
//! [`Tasks`], the pool's slab of their handles.

use std::future::Future;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use log::{debug, error};
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::stats::{ListenStats, Outcome, Stamp};
use crate::tokio1::connection::{ConnectionOutput, PanicMessage};

/// The running connections' tasks, and the queue their freed slots arrive
/// in.
pub(super) struct Tasks {
    /// A slab: the handle of the task in each slot, to abort it on drop,
    /// and the time it started, for the age of an aborted one.
    handles: Vec<Option<(JoinHandle<()>, Stamp)>>,
    /// The slots of `handles` that are free.
    free: Vec<usize>,
    /// Slots taken: tasks started and not yet taken out of the queue.
    pub(super) running: usize,
    shared: Arc<Shared>,
    /// Slots taken out of the queue in one go, freed from `next` on.
    ended: Vec<usize>,
    next: usize,
}

/// What the pool shares with its connections' tasks.
struct Shared {
    queue: Mutex<Queue>,
    /// Written by the tasks as they end, under the lock of `queue`.
    stats: ListenStats,
}

/// Where the connections' tasks hand their slots back.
struct Queue {
    /// The slots of the tasks that ended.
    ended: Vec<usize>,
    /// The pool's task, set only while it waits for a slot (full, or
    /// draining after its stream closed) and woken by the next report. The
    /// rest of the time no report wakes it: it takes the slots out at its
    /// next poll, when the stream has a connection for it.
    waker: Option<Waker>,
    /// Set when the pool aborts its tasks (it is dropped, or the drain
    /// deadline passed): no one will read the reports, and the tasks that
    /// had not reported are counted as aborted.
    closed: bool,
}

impl Tasks {
    pub(super) fn new(stats: ListenStats) -> Tasks {
        Tasks {
            handles: Vec::new(),
            free: Vec::new(),
            running: 0,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    ended: Vec::new(),
                    waker: None,
                    closed: false,
                }),
                stats,
            }),
            ended: Vec::new(),
            next: 0,
        }
    }

    /// Starts one task, which `spawn` makes of the report it is given;
    /// `started` is the time stamp of the pool's poll.
    pub(super) fn start(&mut self, started: Stamp, spawn: impl FnOnce(Report) -> JoinHandle<()>) {
        let slot = self.free.pop().unwrap_or(self.handles.len());
        // Counted before the task exists: on another worker it may end, and
        // count its end, before `spawn` returns.
        self.shared.stats.record_start_shared();
        let handle = spawn(Report {
            shared: Some(self.shared.clone()),
            slot,
            started,
        });
        if slot == self.handles.len() {
            self.handles.push(Some((handle, started)));
        } else {
            debug_assert!(self.handles[slot].is_none(), "slot {} taken twice", slot);
            self.handles[slot] = Some((handle, started));
        }
        self.running += 1;
        self.check();
    }

    /// Frees the slot of the next task that ended: `false` when none has.
    /// Then, if `wait`, the next report wakes the pool's task; if not, none
    /// does.
    pub(super) fn free_ended(&mut self, cx: &mut Context<'_>, wait: bool) -> bool {
        if self.next == self.ended.len() {
            self.ended.clear();
            self.next = 0;
            let mut queue = lock(&self.shared.queue);
            mem::swap(&mut queue.ended, &mut self.ended);
            if self.ended.is_empty() {
                match &queue.waker {
                    _ if !wait => queue.waker = None,
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => queue.waker = Some(cx.waker().clone()),
                }
                return false;
            }
        }
        let slot = self.ended[self.next];
        self.next += 1;
        self.handles[slot] = None;
        self.free.push(slot);
        self.running -= 1;
        self.check();
        true
    }

    /// Debug builds check that every slot is either free or running a
    /// task, so that the slab never holds more slots than ran at once.
    fn check(&self) {
        debug_assert_eq!(
            self.running + self.free.len(),
            self.handles.len(),
            "slots lost"
        );
    }
}

impl Tasks {
    /// Aborts every task still running and counts those that had not
    /// reported their end as aborted; how many. Under the queue's lock, a
    /// task that ends at the same moment either reported first (and is
    /// counted as it ended) or finds the queue closed (and is counted
    /// here): once, either way. Only the first call counts.
    pub(super) fn abort_all(&mut self) -> usize {
        let mut aborted = 0;
        {
            let mut queue = lock(&self.shared.queue);
            if !queue.closed {
                queue.closed = true;
                let mut reported = vec![false; self.handles.len()];
                for &slot in queue.ended.iter().chain(&self.ended[self.next..]) {
                    reported[slot] = true;
                }
                let cut = self
                    .handles
                    .iter()
                    .zip(reported)
                    .filter_map(|(handle, reported)| {
                        let &(_, started) = handle.as_ref().filter(|_| !reported)?;
                        aborted += 1;
                        Some(started)
                    });
                self.shared.stats.record_aborted_shared(cut);
            }
        }
        for (handle, _) in self.handles.drain(..).flatten() {
            handle.abort();
        }
        self.free.clear();
        self.ended.clear();
        self.next = 0;
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
    slot: usize,
    started: Stamp,
}

impl Report {
    /// Counts `outcome`, hands the slot back and wakes the pool's task if
    /// it waits for one; `false` if the pool is gone or this was sent
    /// before.
    fn send(&mut self, outcome: Outcome) -> bool {
        let Some(shared) = self.shared.take() else {
            return false;
        };
        let now = shared.stats.now();
        let waker = {
            let mut queue = lock(&shared.queue);
            if queue.closed {
                return false;
            }
            shared.stats.record_end_shared(outcome, self.started, now);
            queue.ended.push(self.slot);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        // The pool aborts its tasks only after closing the queue; so a
        // cancelled task that can still report was cancelled by a runtime
        // shutting down.
        if self.send(Outcome::Failed) {
            debug!("a connection was cancelled");
        }
    }
}

/// One connection's task: runs it, catching a panic (logged at `error`),
/// and reports how it ended.
pub(crate) fn run<F>(connection: F, report: Report) -> Run<F> {
    Run { connection, report }
}

pin_project! {
    /// The future of [`run`]: the task of one connection.
    ///
    /// The connection future is a pinned field of it, reached through
    /// `pin-project-lite` (already a dependency of tokio) because this crate
    /// forbids `unsafe` code. Boxing the connection instead costs an
    /// allocation per connection, and an `async fn` wrapper stores the
    /// connection future twice in the task ("tokio 1" in
    /// `benches/README.md`).
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

/// The queue's lock; nothing panics while holding it, but a poisoned one is
/// still consistent.
fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
