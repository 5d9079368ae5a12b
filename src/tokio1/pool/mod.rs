//! The engine behind [`Listen`](super::Listen) and
//! [`LocalListen`](super::LocalListen): a stream of connection futures, the
//! tasks running them, the cap, the shutdown signal and the counters. The two
//! futures differ only in how they spawn a connection.
//!
//! Each connection runs as a task of its own wrapped by [`run`], which
//! catches a panic, counts how the connection ended and adds one to a count
//! of ends shared with the pool, one atomic word: the pool frees as many
//! slots as that count grew since it last looked, whenever it is polled. A
//! task that ends wakes the pool's task only if the pool waits for a slot
//! (it is full, or draining): the rest of the time the pool is woken by its
//! stream anyway, and an extra wake-up per connection, often from another
//! worker thread, would be pure cost. The pool keeps the tasks' handles, in
//! no order, to abort those still running when it is dropped or its drain
//! deadline passes, and drops those of finished tasks in batches. This
//! costs fewer instructions per connection than a slab of handles whose
//! slots the tasks hand back through a queue under a lock (what it
//! replaced; the figures are in this file's history), or than a `JoinSet`,
//! which allocates, links and unlinks a list entry per task and wakes the
//! accepting task each time one ends. The current figures are in "tokio 1"
//! in `benches/README.md`. The tasks' side lives in [`tasks`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use log::info;
use tokio::task::JoinHandle;

use self::tasks::Tasks;
pub(super) use self::tasks::{boxes, run, Report};
use crate::drain::state::log_deadline_passed;
use crate::limits::{check_max_connections, POLL_BUDGET};
use crate::stats::{Clock, ListenStats};

mod tasks;

pub(super) struct Pool<S, Signal> {
    /// `None` once the stream has ended, the signal fired or
    /// `stop_accepting` was called: the listener is closed.
    stream: Option<S>,
    /// `None` when there is none or once it has fired.
    signal: Option<Signal>,
    /// One task per running connection.
    tasks: Tasks,
    /// How long a drain may last once the signal fired.
    drain_deadline: Option<Duration>,
    /// Started when the signal fires, if there is a deadline.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    max_connections: usize,
    stats: ListenStats,
}

impl<S, Signal> Pool<S, Signal> {
    pub(super) fn new(stream: S, max_connections: usize) -> Pool<S, Signal> {
        check_max_connections(max_connections);
        let stats = ListenStats::new(max_connections);
        Pool {
            stream: Some(stream),
            signal: None,
            tasks: Tasks::new(stats.clone()),
            drain_deadline: None,
            deadline: None,
            max_connections,
            stats,
        }
    }

    pub(super) fn stats(&self) -> ListenStats {
        self.stats.clone()
    }

    pub(super) fn set_signal(&mut self, signal: Signal) {
        self.signal = Some(signal);
    }

    pub(super) fn set_drain_deadline(&mut self, deadline: Duration) {
        self.drain_deadline = Some(deadline);
    }

    pub(super) fn stream(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    pub(super) fn stream_mut(&mut self) -> Option<&mut S> {
        self.stream.as_mut()
    }

    pub(super) fn stop_accepting(&mut self, why: &str) {
        self.signal = None;
        if self.stream.take().is_some() {
            info!(
                "{}; no longer accepting connections, {} left to drain",
                why, self.tasks.running
            );
        }
    }
}

impl<S, Signal> Pool<S, Signal>
where
    S: Stream + Unpin,
    Signal: Future<Output = ()> + Unpin,
{
    /// The whole of `Listen::poll`; `spawn` starts one connection's task,
    /// `run(connection, report)`.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut spawn: impl FnMut(S::Item, Report) -> JoinHandle<()>,
    ) -> Poll<()> {
        // The signal goes first, whether the pool is full or not: polling it
        // registers this task to be woken when it fires.
        if let Some(signal) = &mut self.signal {
            if Pin::new(signal).poll(cx).is_ready() {
                self.stop_accepting("shutdown signal received");
                if let Some(deadline) = self.drain_deadline {
                    self.deadline = Some(Box::pin(tokio::time::sleep(deadline)));
                }
            }
        }

        // The slots of the tasks that ended go back first, and with them
        // the memory of those tasks, before new ones are allocated.
        let mut ended = self.tasks.free_ended(POLL_BUDGET);
        let mut started = 0;
        let mut clock = Clock::new();
        loop {
            while let Some(stream) = &mut self.stream {
                // Full: the stream is not polled, so new clients wait in the
                // kernel's backlog. A task that ends wakes this one.
                if self.tasks.running >= self.max_connections || started == POLL_BUDGET {
                    break;
                }
                match Pin::new(stream).poll_next(cx) {
                    Poll::Ready(Some(connection)) => {
                        self.tasks.start(clock.now(self.stats.epoch()), |report| {
                            spawn(connection, report)
                        });
                        started += 1;
                    }
                    Poll::Ready(None) => self.stop_accepting("the accept stream ended"),
                    Poll::Pending => break,
                }
            }
            if started == POLL_BUDGET || ended == POLL_BUDGET {
                break;
            }
            let freed = self.tasks.free_ended(POLL_BUDGET - ended);
            ended += freed;
            if freed > 0 {
                // Slots were freed: accept again now, as nothing else would
                // wake this task to do it.
                continue;
            }
            let full = self.tasks.running >= self.max_connections;
            // Full or draining: a task that ends must wake this one.
            if (full || self.stream.is_none()) && self.tasks.wait_for_end(cx) {
                continue;
            }
            break;
        }

        if ended == POLL_BUDGET || started == POLL_BUDGET {
            // Let the other tasks on this worker run; carry on at the next
            // poll.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.stream.is_none() && self.tasks.running == 0 {
            self.deadline = None;
            return Poll::Ready(());
        }
        if let Some(deadline) = &mut self.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                let left = self.tasks.abort_all();
                log_deadline_passed(self.drain_deadline.unwrap_or_default(), left);
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl<S: fmt::Debug, Signal> Pool<S, Signal> {
    pub(super) fn debug_fields(&self, f: &mut fmt::DebugStruct<'_, '_>) {
        f.field("stream", &self.stream)
            .field("max_connections", &self.max_connections)
            .field("running", &self.tasks.running)
            .field("has_signal", &self.signal.is_some())
            .field("drain_deadline", &self.drain_deadline)
            .field("stats", &self.stats);
    }
}
