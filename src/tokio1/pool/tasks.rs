//! The running connections' tasks: each one wrapped by [`run`], which
//! reports how it ended into the queue of [`Tasks`], the pool's slab of
//! their handles.

use std::future::Future;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use log::{debug, error};
use tokio::task::JoinHandle;

use crate::stats::Outcome;
use crate::tokio1::connection::{ConnectionOutput, PanicMessage};

/// The running connections' tasks, and the queue their ends arrive in.
pub(super) struct Tasks {
    /// A slab: the handle of the task in each slot, to abort it on drop.
    handles: Vec<Option<JoinHandle<()>>>,
    /// The slots of `handles` that are free.
    free: Vec<usize>,
    /// Tasks started and not yet taken out of the queue.
    pub(super) running: usize,
    queue: Arc<Mutex<Queue>>,
    /// Ends taken out of the queue in one go, handled from `next` on.
    ended: Vec<(usize, Outcome)>,
    next: usize,
}

/// Where the connections' tasks report how they ended.
struct Queue {
    ended: Vec<(usize, Outcome)>,
    /// The pool's task, to wake at the first report after it looked.
    waker: Option<Waker>,
    /// Set when the pool is dropped: no one will read the reports.
    closed: bool,
}

impl Tasks {
    pub(super) fn new() -> Tasks {
        Tasks {
            handles: Vec::new(),
            free: Vec::new(),
            running: 0,
            queue: Arc::new(Mutex::new(Queue {
                ended: Vec::new(),
                waker: None,
                closed: false,
            })),
            ended: Vec::new(),
            next: 0,
        }
    }

    /// Starts one task, which `spawn` makes of the report it is given.
    pub(super) fn start(&mut self, spawn: impl FnOnce(Report) -> JoinHandle<()>) {
        let slot = self.free.pop().unwrap_or(self.handles.len());
        let handle = spawn(Report {
            queue: Some(self.queue.clone()),
            slot,
        });
        if slot == self.handles.len() {
            self.handles.push(Some(handle));
        } else {
            debug_assert!(self.handles[slot].is_none(), "slot {} taken twice", slot);
            self.handles[slot] = Some(handle);
        }
        self.running += 1;
        self.check();
    }

    /// How the next task that ended did, freeing its slot; `None` when none
    /// has, and then the next report wakes the pool's task.
    pub(super) fn next_ended(&mut self, cx: &mut Context<'_>) -> Option<Outcome> {
        if self.next == self.ended.len() {
            self.ended.clear();
            self.next = 0;
            let mut queue = lock(&self.queue);
            mem::swap(&mut queue.ended, &mut self.ended);
            if self.ended.is_empty() {
                match &queue.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => queue.waker = Some(cx.waker().clone()),
                }
                return None;
            }
        }
        let (slot, outcome) = self.ended[self.next];
        self.next += 1;
        self.handles[slot] = None;
        self.free.push(slot);
        self.running -= 1;
        self.check();
        Some(outcome)
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

impl Drop for Tasks {
    /// Forced shutdown: aborts every task still running.
    fn drop(&mut self) {
        lock(&self.queue).closed = true;
        for handle in self.handles.iter().flatten() {
            handle.abort();
        }
    }
}

/// A connection's way to report how it ended, once: by [`Report::send`],
/// or when dropped without (its task was cancelled).
pub(crate) struct Report {
    /// `None` once sent.
    queue: Option<Arc<Mutex<Queue>>>,
    slot: usize,
}

impl Report {
    /// Queues `outcome` and wakes the pool's task if it waits; `false` if
    /// the pool is gone or this was sent before.
    fn send(&mut self, outcome: Outcome) -> bool {
        let Some(queue) = self.queue.take() else {
            return false;
        };
        let waker = {
            let mut queue = lock(&queue);
            if queue.closed {
                return false;
            }
            queue.ended.push((self.slot, outcome));
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
        // The pool aborts its tasks only when it is dropped, and then
        // closes the queue first; so a cancelled task that can still report
        // was cancelled by a runtime shutting down.
        if self.send(Outcome::Failed) {
            debug!("a connection was cancelled");
        }
    }
}

/// One connection's task: runs it, catching a panic (logged at `error`),
/// and reports how it ended.
///
/// The connection is boxed because reaching a pinned field takes `unsafe`
/// code, which this crate forbids; an `async fn` wrapper instead stores the
/// connection future twice in the task, which costs more (a bigger task to
/// copy, and more memory per connection).
pub(crate) fn run<F>(connection: F, report: Report) -> Run<F> {
    Run {
        connection: Box::pin(connection),
        report,
    }
}

/// The future of [`run`]: the task of one connection.
pub(crate) struct Run<F> {
    connection: Pin<Box<F>>,
    report: Report,
}

impl<F> Future for Run<F>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let outcome = match catch_unwind(AssertUnwindSafe(|| this.connection.as_mut().poll(cx))) {
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
