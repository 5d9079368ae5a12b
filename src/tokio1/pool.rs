//! The engine behind [`Listen`](super::Listen) and
//! [`LocalListen`](super::LocalListen): a stream of connection futures, the
//! tasks running them, the cap, the shutdown signal and the counters. The two
//! futures differ only in how they spawn a connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use log::{debug, error, info};
use tokio::task::{JoinError, JoinSet};

use super::connection::{ConnectionOutput, PanicMessage};
use crate::limits::POLL_BUDGET;
use crate::stats::{ListenStats, Outcome};

pub(super) struct Pool<S, Signal, O> {
    /// `None` once the stream has ended, the signal fired or
    /// `stop_accepting` was called: the listener is closed.
    stream: Option<S>,
    /// `None` when there is none or once it has fired.
    signal: Option<Signal>,
    /// One task per running connection, the connection future itself (no
    /// wrapper, so no bigger task to build and move); its length is the
    /// number running.
    tasks: JoinSet<O>,
    max_connections: usize,
    stats: ListenStats,
}

impl<S, Signal, O> Pool<S, Signal, O> {
    pub(super) fn new(stream: S, max_connections: usize) -> Pool<S, Signal, O> {
        assert!(
            max_connections > 0,
            "listen(0) would never accept a connection and never resolve; \
             pass the maximum number of connections to serve at once (at least 1)"
        );
        Pool {
            stream: Some(stream),
            signal: None,
            tasks: JoinSet::new(),
            max_connections,
            stats: ListenStats::new(max_connections),
        }
    }

    pub(super) fn stats(&self) -> ListenStats {
        self.stats.clone()
    }

    pub(super) fn set_signal(&mut self, signal: Signal) {
        self.signal = Some(signal);
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
                why,
                self.tasks.len()
            );
        }
    }

    fn record(&self, ended: Result<O, JoinError>)
    where
        O: ConnectionOutput,
    {
        let outcome = match ended {
            Ok(output) if output.is_failure() => Outcome::Failed,
            Ok(_) => Outcome::Finished,
            Err(e) if e.is_panic() => {
                error!("a connection panicked: {}", PanicMessage(&*e.into_panic()));
                Outcome::Panicked
            }
            Err(e) => {
                // Only a runtime shutting down cancels these tasks: nothing
                // else holds their handles.
                debug!("a connection was cancelled: {}", e);
                Outcome::Failed
            }
        };
        self.stats.record_end(outcome);
    }
}

impl<S, Signal, O> Pool<S, Signal, O>
where
    S: Stream + Unpin,
    Signal: Future<Output = ()> + Unpin,
    O: ConnectionOutput + 'static,
{
    /// The whole of `Listen::poll`; `spawn` starts one connection's task.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut spawn: impl FnMut(&mut JoinSet<O>, S::Item),
    ) -> Poll<()> {
        // The signal goes first, whether the pool is full or not: polling it
        // registers this task to be woken when it fires.
        if let Some(signal) = &mut self.signal {
            if Pin::new(signal).poll(cx).is_ready() {
                self.stop_accepting("shutdown signal received");
            }
        }

        let (mut ended, mut started) = (0, 0);
        loop {
            while let Some(stream) = &mut self.stream {
                // Full: the stream is not polled, so new clients wait in the
                // kernel's backlog. A finished task wakes this one.
                if self.tasks.len() >= self.max_connections || started == POLL_BUDGET {
                    break;
                }
                match Pin::new(stream).poll_next(cx) {
                    Poll::Ready(Some(connection)) => {
                        spawn(&mut self.tasks, connection);
                        self.stats.record_start();
                        started += 1;
                    }
                    Poll::Ready(None) => self.stop_accepting("the accept stream ended"),
                    Poll::Pending => break,
                }
            }
            // After the spawns: the set wakes this task when one of its
            // tasks ends only if it was polled after that task was spawned
            // (an empty set keeps no waker).
            let ended_before = ended;
            while ended < POLL_BUDGET {
                match self.tasks.poll_join_next(cx) {
                    Poll::Ready(Some(result)) => {
                        self.record(result);
                        ended += 1;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            // Slots were freed: accept again now, as nothing else would wake
            // this task to do it.
            let freed = ended > ended_before;
            if !freed || self.stream.is_none() || started == POLL_BUDGET || ended == POLL_BUDGET {
                break;
            }
        }

        if ended == POLL_BUDGET || started == POLL_BUDGET {
            // Let the other tasks on this worker run; carry on at the next
            // poll.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.stream.is_none() && self.tasks.is_empty() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<S: fmt::Debug, Signal, O> Pool<S, Signal, O> {
    pub(super) fn debug_fields(&self, f: &mut fmt::DebugStruct<'_, '_>) {
        f.field("stream", &self.stream)
            .field("max_connections", &self.max_connections)
            .field("running", &self.tasks.len())
            .field("has_signal", &self.signal.is_some())
            .field("stats", &self.stats);
    }
}
