//! Live counters, readable from any thread while a server runs.
//!
//! Each adapter that counts owns one `Arc` of atomics and hands out clones of
//! a small handle to it. Only the adapter writes, from its own `poll` (or the
//! drop of something it owns), so there is one writer at a time: an increment
//! is a plain load and store, not a locked read-modify-write, which keeps the
//! counters off the per-accept cost (`benches/README.md`, "overhead"). The
//! one exception is tokio 1's `listen`, whose connections' tasks, on any
//! worker thread, count their own ends: the counters they write take locked
//! read-modify-writes. Readers never block the writer. Counts are `u64` and
//! start at zero; each is read on its own (a reading of several counters is
//! not one snapshot).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use self::durations::DurationHistogram;
use self::durations::{nanos, read_clock};
pub(crate) use self::durations::{Clock, Durations, Stamp};

mod durations;

/// Live counters of a [`Listen`](crate::Listen) future: how many connections
/// it started, how many run now, how each one ended, and how long they lived.
///
/// Got from [`Listen::stats`](crate::Listen::stats) before the future is
/// moved into the event loop; clone it freely and read it from any thread.
/// At any moment `started == finished + failed + panicked + aborted +
/// running`, and the [`durations`](ListenStats::durations) count `finished
/// + failed + panicked + aborted`, up to the connections that change state
/// between two readings. Once the server future is dropped, `running` is 0:
/// the connections it cut are counted as [`aborted`](ListenStats::aborted).
///
/// # Examples
///
/// ```
/// use futures::{future, stream, Future};
/// use tk_listen::ListenExt;
///
/// let connections = stream::iter_ok::<_, ()>(vec![future::ok(()), future::err(())]);
/// let server = connections.listen(10);
/// let stats = server.stats();
/// server.wait().unwrap();
/// assert_eq!((stats.started(), stats.finished(), stats.failed()), (2, 1, 1));
/// assert_eq!(stats.running(), 0);
/// ```
#[derive(Clone)]
pub struct ListenStats {
    counters: Arc<ListenCounters>,
}

struct ListenCounters {
    max_connections: usize,
    started: AtomicU64,
    running: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    aborted: AtomicU64,
    durations: Durations,
    /// Time stamps count from here.
    epoch: Instant,
}

impl ListenCounters {
    /// See [`ListenStats::record_end`].
    #[inline]
    fn record_end(&self, outcome: Outcome, started: Stamp, now: Stamp) {
        sub(&self.running, 1);
        add(self.outcome(outcome), 1);
        self.durations.record(now.wrapping_sub(started));
    }

    /// Reads the clock, counts an end at that stamp and returns the stamp:
    /// the first end of a poll, for [`ListenStats::record_end_by`]. A method
    /// of the shared counters rather than of the handle, which lives in the
    /// caller's fields: the caller then knows its fields unchanged by the
    /// call and keeps nothing across it.
    #[cold]
    #[inline(never)]
    fn record_first_end(&self, outcome: Outcome, started: Stamp) -> Stamp {
        let now = read_clock(&self.epoch);
        self.record_end(outcome, started, now);
        now
    }

    /// The counter of connections that ended this way.
    fn outcome(&self, outcome: Outcome) -> &AtomicU64 {
        match outcome {
            Outcome::Finished => &self.finished,
            Outcome::Failed => &self.failed,
            Outcome::Panicked => &self.panicked,
            #[cfg(feature = "tokio1")]
            Outcome::Aborted => &self.aborted,
        }
    }
}

impl ListenStats {
    pub(crate) fn new(max_connections: usize) -> ListenStats {
        ListenStats {
            counters: Arc::new(ListenCounters {
                max_connections,
                started: AtomicU64::new(0),
                running: AtomicU64::new(0),
                finished: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                panicked: AtomicU64::new(0),
                aborted: AtomicU64::new(0),
                durations: Durations::new(),
                epoch: Instant::now(),
            }),
        }
    }

    /// Where the time stamps count from, for [`Clock::now`].
    #[inline]
    pub(crate) fn epoch(&self) -> &Instant {
        &self.counters.epoch
    }

    /// The time stamp of now, reading the clock.
    #[cfg(feature = "tokio1")]
    pub(crate) fn now(&self) -> Stamp {
        nanos(self.counters.epoch.elapsed())
    }

    #[inline]
    pub(crate) fn record_start(&self) {
        let c = &*self.counters;
        add(&c.started, 1);
        add(&c.running, 1);
    }

    /// [`record_start`](ListenStats::record_start) for a server whose
    /// connections record their own ends, from any thread (tokio 1's
    /// `listen`): `running` then has several writers and is changed by a
    /// locked read-modify-write.
    #[cfg(feature = "tokio1")]
    #[inline]
    pub(crate) fn record_start_shared(&self) {
        let c = &*self.counters;
        add(&c.started, 1);
        c.running.fetch_add(1, Relaxed);
    }

    /// [`record_end`](ListenStats::record_end) for such a server, whose
    /// connections' tasks count their ends at the same time on several
    /// threads: each counter they write is changed by a locked
    /// read-modify-write.
    #[cfg(feature = "tokio1")]
    #[inline]
    pub(crate) fn record_end_concurrent(&self, outcome: Outcome, started: Stamp, now: Stamp) {
        let c = &*self.counters;
        c.running.fetch_sub(1, Relaxed);
        c.outcome(outcome).fetch_add(1, Relaxed);
        c.durations.record_concurrent(now.saturating_sub(started));
    }

    /// [`record_aborted`](ListenStats::record_aborted) for such a server,
    /// once no task counts its end any more.
    #[cfg(feature = "tokio1")]
    pub(crate) fn record_aborted_shared(&self, starts: impl Iterator<Item = Stamp>) {
        let c = &*self.counters;
        let n = self.record_cut(starts);
        c.running.fetch_sub(n, Relaxed);
    }

    /// Counts a connection that started at `started` and ended at `now`
    /// (not before: both come from [`Clock`]s of this server, read from a
    /// monotonic clock, so the subtraction needs no check).
    #[inline]
    pub(crate) fn record_end(&self, outcome: Outcome, started: Stamp, now: Stamp) {
        self.counters.record_end(outcome, started, now);
    }

    /// [`record_end`](ListenStats::record_end) at the stamp of `clock`, for
    /// the end of a connection future's poll. The first end of a poll reads
    /// the clock out of line, and counts itself there too: the caller keeps
    /// no value of its own across the call (`benches/README.md`, "Connection
    /// durations").
    #[inline]
    pub(crate) fn record_end_by(&self, clock: &mut Clock, outcome: Outcome, started: Stamp) {
        match clock.stamp() {
            Some(now) => self.record_end(outcome, started, now),
            None => clock.set(self.counters.record_first_end(outcome, started)),
        }
    }

    /// Counts the connections cut unfinished now (the server dropped, or
    /// the drain deadline passed), given their starts.
    pub(crate) fn record_aborted(&self, starts: impl Iterator<Item = Stamp>) {
        let n = self.record_cut(starts);
        sub(&self.counters.running, n);
    }

    /// Adds the connections that started at `starts` to `aborted` and to
    /// the histogram, aged until now; how many there were.
    fn record_cut(&self, starts: impl Iterator<Item = Stamp>) -> u64 {
        let c = &*self.counters;
        let now = nanos(c.epoch.elapsed());
        let mut n = 0;
        for started in starts {
            c.durations.record(now.saturating_sub(started));
            n += 1;
        }
        add(&c.aborted, n);
        n
    }

    /// The most connections run at once (the `max_connections` given to
    /// [`listen`](crate::ListenExt::listen)).
    pub fn max_connections(&self) -> usize {
        self.counters.max_connections
    }

    /// Connections started so far: items taken from the stream.
    pub fn started(&self) -> u64 {
        self.counters.started.load(Relaxed)
    }

    /// Connections running now; never above
    /// [`max_connections`](ListenStats::max_connections).
    pub fn running(&self) -> u64 {
        self.counters.running.load(Relaxed)
    }

    /// Connections whose future resolved with `Ok`.
    pub fn finished(&self) -> u64 {
        self.counters.finished.load(Relaxed)
    }

    /// Connections whose future resolved with `Err`.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Relaxed)
    }

    /// Connections whose future panicked (and was dropped).
    pub fn panicked(&self) -> u64 {
        self.counters.panicked.load(Relaxed)
    }

    /// Connections dropped unfinished: by dropping the server future (forced
    /// shutdown), or when the drain deadline of a graceful shutdown passed
    /// (`drain_deadline` of [`WithGracefulShutdown`](crate::WithGracefulShutdown)
    /// and of the tokio 1 `Listen`).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream, Async, Future};
    /// use tk_listen::ListenExt;
    ///
    /// // Three connections that never end.
    /// let connections = stream::iter_ok::<_, ()>((0..3).map(|_| future::empty::<(), ()>()));
    /// let mut server = futures::executor::spawn(connections.listen(10));
    /// let stats = server.get_ref().stats();
    /// let notify = futures::executor::NotifyHandle::from(std::sync::Arc::new(NoWake));
    /// assert_eq!(server.poll_future_notify(&notify, 0), Ok(Async::NotReady));
    /// assert_eq!(stats.running(), 3);
    /// drop(server); // forced shutdown
    /// assert_eq!((stats.running(), stats.aborted()), (0, 3));
    /// # struct NoWake;
    /// # impl futures::executor::Notify for NoWake { fn notify(&self, _: usize) {} }
    /// ```
    pub fn aborted(&self) -> u64 {
        self.counters.aborted.load(Relaxed)
    }

    /// A reading of the histogram of how long the connections that ended
    /// lived, from their start to their end, each however it ended (an
    /// aborted one with the age it had when it was cut). Accurate to a poll
    /// of the server: the clock is read once per poll that starts or ends a
    /// connection, and (tokio 1) once per connection's end.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream, Future};
    /// use tk_listen::ListenExt;
    ///
    /// let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(()); 3]);
    /// let server = connections.listen(10);
    /// let stats = server.stats();
    /// server.wait().unwrap();
    /// assert_eq!(stats.durations().count(), 3);
    /// ```
    pub fn durations(&self) -> DurationHistogram {
        self.counters.durations.read()
    }
}

impl fmt::Debug for ListenStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenStats")
            .field("max_connections", &self.max_connections())
            .field("started", &self.started())
            .field("running", &self.running())
            .field("finished", &self.finished())
            .field("failed", &self.failed())
            .field("panicked", &self.panicked())
            .field("aborted", &self.aborted())
            .field("durations", &self.durations())
            .finish()
    }
}

/// Live counters of a [`SleepOnError`](crate::SleepOnError) stream: what
/// `accept()` returned, and how long accepting was paused.
///
/// Got from [`SleepOnError::stats`](crate::SleepOnError::stats) before the
/// stream is moved into the event loop; clone it freely and read it from any
/// thread.
///
/// # Examples
///
/// ```
/// use std::io;
/// use std::time::Duration;
///
/// use futures::{stream, Stream};
/// use tk_listen::ListenExt;
/// use tokio_core::reactor::Core;
///
/// let core = Core::new().unwrap();
/// let accepts = stream::iter_result(vec![
///     Ok("a client"),
///     Err(io::Error::from(io::ErrorKind::ConnectionReset)),
///     Ok("another client"),
/// ]);
/// let accepts = accepts.sleep_on_error(Duration::from_millis(100), &core.handle());
/// let stats = accepts.stats();
/// assert_eq!(accepts.wait().count(), 2);
/// assert_eq!((stats.accepted(), stats.skipped(), stats.pauses()), (2, 1, 0));
/// ```
#[derive(Clone)]
pub struct AcceptStats {
    counters: Arc<AcceptCounters>,
}

struct AcceptCounters {
    accepted: AtomicU64,
    skipped: AtomicU64,
    pauses: AtomicU64,
    /// Nanoseconds paused in the pauses that ended.
    paused_nanos: AtomicU64,
    /// Only touched when a pause starts or ends.
    pause: Mutex<PauseState>,
}

#[derive(Default)]
struct PauseState {
    since: Option<Instant>,
    last_error: Option<StoredError>,
}

/// An `io::Error` kept for [`AcceptStats::last_pause_error`]
/// (`io::Error` is not `Clone`).
struct StoredError {
    kind: io::ErrorKind,
    os_code: Option<i32>,
    message: String,
}

impl AcceptStats {
    pub(crate) fn new() -> AcceptStats {
        AcceptStats {
            counters: Arc::new(AcceptCounters {
                accepted: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                pauses: AtomicU64::new(0),
                paused_nanos: AtomicU64::new(0),
                pause: Mutex::new(PauseState::default()),
            }),
        }
    }

    #[inline]
    pub(crate) fn record_accept(&self) {
        add(&self.counters.accepted, 1);
    }

    #[inline]
    pub(crate) fn record_skip(&self) {
        add(&self.counters.skipped, 1);
    }

    pub(crate) fn record_pause_start(&self, error: &io::Error) {
        add(&self.counters.pauses, 1);
        let mut pause = self.pause_state();
        pause.since = Some(Instant::now());
        pause.last_error = Some(StoredError {
            kind: error.kind(),
            os_code: error.raw_os_error(),
            message: error.to_string(),
        });
    }

    pub(crate) fn record_pause_end(&self) {
        let mut pause = self.pause_state();
        if let Some(since) = pause.since.take() {
            let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            add(&self.counters.paused_nanos, nanos);
        }
    }

    /// A poisoned lock only means a reader panicked while holding it; the
    /// state itself is always whole.
    fn pause_state(&self) -> MutexGuard<'_, PauseState> {
        self.counters
            .pause
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections accepted: items the stream yielded.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Relaxed)
    }

    /// Per-connection `accept()` errors skipped without a pause.
    pub fn skipped(&self) -> u64 {
        self.counters.skipped.load(Relaxed)
    }

    /// Pauses started: `accept()` errors that stopped accepting for the
    /// delay.
    pub fn pauses(&self) -> u64 {
        self.counters.pauses.load(Relaxed)
    }

    /// Total time accepting was paused, the pause in progress included.
    pub fn paused_time(&self) -> Duration {
        let ended = Duration::from_nanos(self.counters.paused_nanos.load(Relaxed));
        let current = self
            .pause_state()
            .since
            .map_or(Duration::ZERO, |since| since.elapsed());
        ended + current
    }

    /// Is accepting paused now?
    pub fn is_paused(&self) -> bool {
        self.pause_state().since.is_some()
    }

    /// The error that started the latest pause, if there was one.
    ///
    /// A copy: the same kind, OS error code and message.
    pub fn last_pause_error(&self) -> Option<io::Error> {
        let pause = self.pause_state();
        let stored = pause.last_error.as_ref()?;
        Some(match stored.os_code {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(stored.kind, stored.message.clone()),
        })
    }
}

impl fmt::Debug for AcceptStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptStats")
            .field("accepted", &self.accepted())
            .field("skipped", &self.skipped())
            .field("pauses", &self.pauses())
            .field("paused_time", &self.paused_time())
            .field("is_paused", &self.is_paused())
            .field("last_pause_error", &self.last_pause_error())
            .finish()
    }
}

/// How a connection future ended, for [`ListenStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Finished,
    Failed,
    Panicked,
    /// Cut unfinished: a tokio 1 task that a shutting-down runtime
    /// cancelled (the servers count the connections they cut themselves).
    #[cfg(feature = "tokio1")]
    Aborted,
}

/// Adds `n` to a counter that has one writer at a time (see the module docs).
#[inline]
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Takes `n` from a counter that has one writer at a time.
#[inline]
fn sub(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}
