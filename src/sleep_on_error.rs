use std::fmt;
use std::io;
use std::time::Duration;

use futures::{Async, Future, Poll, Stream};
use log::error;
use tokio_core::reactor::{Handle, Timeout};

use crate::accept_error::{judge, Verdict};
use crate::limits::{timer, yield_to_other_tasks, POLL_BUDGET};
use crate::stats::AcceptStats;

/// A stream of accepted connections that skips per-connection errors and
/// pauses on resource exhaustion.
///
/// Made by [`ListenExt::sleep_on_error`](crate::ListenExt::sleep_on_error).
/// It yields the items of the inner stream unchanged and ends when the inner
/// stream ends. Its error type is `()`: it only errors when it cannot create
/// its pause timer (see the method's docs).
#[must_use = "streams do nothing unless polled"]
pub struct SleepOnError<S> {
    stream: S,
    delay: Duration,
    handle: Handle,
    pause: Option<Pause>,
    stats: AcceptStats,
}

pub(crate) fn new<S>(stream: S, delay: Duration, handle: &Handle) -> SleepOnError<S> {
    crate::accept_error::check_delay(delay);
    SleepOnError {
        stream,
        delay,
        handle: handle.clone(),
        pause: None,
        stats: AcceptStats::new(),
    }
}

impl<S> SleepOnError<S> {
    /// A handle to this stream's live counters: connections accepted, errors
    /// skipped, pauses and the time spent in them. Take it before the stream
    /// moves into the event loop; it can be read from any thread.
    pub fn stats(&self) -> AcceptStats {
        self.stats.clone()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably.
    ///
    /// Take care not to pull items or errors out of it directly: they would
    /// bypass the error policy of this stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream; a pause in progress is dropped.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<I, S: Stream<Item = I, Error = io::Error>> Stream for SleepOnError<S> {
    type Item = I;
    type Error = ();

    fn poll(&mut self) -> Poll<Option<I>, ()> {
        let mut skipped = 0;
        loop {
            if let Some(pause) = &mut self.pause {
                match pause.poll() {
                    Ok(Async::NotReady) => return Ok(Async::NotReady),
                    Ok(Async::Ready(())) => self.pause = None,
                    Err(e) => {
                        error!("accept pause timer failed: {}; ending the stream", e);
                        self.pause = None;
                        return Err(());
                    }
                }
            }
            match self.stream.poll() {
                Ok(Async::Ready(Some(item))) => {
                    self.stats.record_accept();
                    return Ok(Async::Ready(Some(item)));
                }
                Ok(ready_or_not) => return Ok(ready_or_not),
                Err(e) if judge(&e, self.delay, &self.stats) == Verdict::Skip => {
                    skipped += 1;
                    if skipped == POLL_BUDGET {
                        return Ok(yield_to_other_tasks());
                    }
                }
                Err(e) => match timer(self.delay, &self.handle) {
                    Ok(timer) => self.pause = Some(Pause::new(timer, &e, &self.stats)),
                    Err(e) => {
                        error!("cannot create accept pause timer: {}; ending the stream", e);
                        return Err(());
                    }
                },
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SleepOnError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SleepOnError")
            .field("stream", &self.stream)
            .field("delay", &self.delay)
            .field("stats", &self.stats)
            .finish()
    }
}

/// A pause in progress; its time counts in [`AcceptStats`] until it is
/// dropped, whether it ran out or the stream was dropped first.
struct Pause {
    timer: Timeout,
    stats: AcceptStats,
}

impl Pause {
    fn new(timer: Timeout, cause: &io::Error, stats: &AcceptStats) -> Pause {
        stats.record_pause_start(cause);
        Pause {
            timer,
            stats: stats.clone(),
        }
    }

    fn poll(&mut self) -> Poll<(), io::Error> {
        self.timer.poll()
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.stats.record_pause_end();
    }
}
