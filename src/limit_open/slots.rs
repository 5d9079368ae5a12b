//! The slots of a [`LimitOpen`](crate::LimitOpen) stream, free of either
//! runtime: taken by the stream, given back by the connections from any
//! thread, and the counters read from them.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::stats::{DurationHistogram, Durations};

/// Live counters of a [`LimitOpen`](crate::LimitOpen) stream: the cap,
/// connections open now and so far, and how often and how long the stream
/// waited at the cap.
///
/// Got from [`LimitOpen::stats`](crate::LimitOpen::stats) before the stream
/// moves into its task; clone it freely and read it from any thread. Each
/// reading is a few atomic loads and takes no lock. At any moment
/// `open <= max_open` and `open <= accepted`; `accepted - open` connections
/// have been dropped.
///
/// # Examples
///
/// ```
/// use futures::{stream, Stream};
/// use tk_listen::ListenExt;
///
/// let accepts = stream::iter_ok::<_, ()>(vec![("first", ()), ("second", ())]);
/// let limited = accepts.limit_open(10);
/// let stats = limited.stats();
/// let open: Vec<_> = limited.wait().collect::<Result<_, _>>().unwrap();
/// assert_eq!((stats.max_open(), stats.open(), stats.accepted()), (10, 2, 2));
/// drop(open);
/// assert_eq!((stats.open(), stats.accepted(), stats.full_periods()), (0, 2, 0));
/// ```
#[derive(Clone)]
pub struct OpenStats {
    slots: Arc<Slots>,
}

impl OpenStats {
    pub(super) fn new(slots: &Arc<Slots>) -> OpenStats {
        OpenStats {
            slots: slots.clone(),
        }
    }

    /// The most connections open at once (the `max_open` given to
    /// `limit_open`).
    pub fn max_open(&self) -> usize {
        self.slots.max
    }

    /// Connections open now: yielded, and their
    /// [`OpenConnection`](crate::OpenConnection) not dropped yet.
    pub fn open(&self) -> usize {
        self.slots.open.load(Ordering::Relaxed)
    }

    /// Connections yielded so far.
    pub fn accepted(&self) -> u64 {
        self.slots.accepted.load(Ordering::Relaxed)
    }

    /// How many times the stream found every slot taken and waited for one
    /// to free (while it waits, the inner stream is not polled).
    pub fn full_periods(&self) -> u64 {
        self.slots.full_periods.load(Ordering::Relaxed)
    }

    /// The time spent waiting at the cap so far, the wait in progress
    /// included. A wait ends when the stream is polled again and finds a
    /// free slot.
    pub fn full_time(&self) -> Duration {
        let slots = &self.slots;
        let mut nanos = slots.full_nanos.load(Ordering::Relaxed);
        let since = slots.full_since.load(Ordering::Relaxed);
        if since != 0 {
            nanos += slots.nanos_now().saturating_sub(since);
        }
        Duration::from_nanos(nanos)
    }

    /// Is the stream waiting at the cap now?
    pub fn is_full(&self) -> bool {
        self.slots.full_since.load(Ordering::Relaxed) != 0
    }

    /// How long the connections that were closed stayed open, from the
    /// moment the stream yielded each to the drop of its
    /// [`OpenConnection`](crate::OpenConnection): the histogram of
    /// [`ListenStats::durations`](crate::ListenStats::durations), for a
    /// server that spawns its own connections. Its count is
    /// `accepted - open`, give or take the connections closing meanwhile.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let accepts = stream::iter_ok::<_, ()>(vec![("first", ()), ("second", ())]);
    /// let limited = accepts.limit_open(10);
    /// let stats = limited.stats();
    /// let open: Vec<_> = limited.wait().collect::<Result<_, _>>().unwrap();
    /// assert_eq!(stats.durations().count(), 0);
    /// drop(open);
    /// assert_eq!(stats.durations().count(), 2);
    /// ```
    pub fn durations(&self) -> DurationHistogram {
        self.slots.durations.read()
    }
}

impl fmt::Debug for OpenStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenStats")
            .field("max_open", &self.max_open())
            .field("open", &self.open())
            .field("accepted", &self.accepted())
            .field("full_periods", &self.full_periods())
            .field("full_time", &self.full_time())
            .field("durations", &self.durations())
            .finish()
    }
}

/// The shared state. A connection that closes touches `open` (one atomic
/// subtraction) and `durations`, and the lock of `waiting` only if it frees
/// the first slot of a stream waiting at the cap.
/// The `full_*` fields are written by the stream only.
pub(super) struct Slots {
    max: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
    /// The task to wake when a slot frees, registered only while full.
    waiting: Mutex<Option<Waker>>,
    full_periods: AtomicU64,
    /// Time waited at the cap in the waits that ended, in nanoseconds.
    full_nanos: AtomicU64,
    /// When the wait in progress began, in nanoseconds after `start` plus
    /// one; 0 when the stream is not waiting.
    full_since: AtomicU64,
    /// How long the closed connections were open.
    durations: Durations,
    start: Instant,
}

impl Slots {
    /// `max` > 0: the caller checks.
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            waiting: Mutex::new(None),
            full_periods: AtomicU64::new(0),
            full_nanos: AtomicU64::new(0),
            full_since: AtomicU64::new(0),
            durations: Durations::new(),
            start: Instant::now(),
        })
    }

    /// Is a slot free? If not, the task of `waker` is woken once one frees
    /// (`waker` is called only then). Only the stream calls this and
    /// [`take`](Slots::take), so a free slot stays free until it takes it.
    #[inline]
    pub(super) fn poll_free(&self, waker: impl FnOnce() -> Waker) -> bool {
        if self.open.load(Ordering::SeqCst) < self.max {
            self.end_full_period();
            return true;
        }
        self.wait_for_a_slot(waker())
    }

    /// Takes a free slot (after [`poll_free`](Slots::poll_free) said there
    /// is one) for a connection just yielded.
    #[inline]
    pub(super) fn take(self: &Arc<Self>) -> OpenSlot {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        OpenSlot {
            slots: self.clone(),
            opened: self.nanos_now(),
        }
    }

    /// Registers `waker`, then looks again: a slot freed before the
    /// registration woke nobody.
    #[cold]
    fn wait_for_a_slot(&self, waker: Waker) -> bool {
        *self.waiting.lock() = Some(waker);
        if self.open.load(Ordering::SeqCst) < self.max {
            self.waiting.lock().take();
            self.end_full_period();
            return true;
        }
        if self.full_since.load(Ordering::Relaxed) == 0 {
            self.full_periods.fetch_add(1, Ordering::Relaxed);
            self.full_since.store(self.nanos_now(), Ordering::Relaxed);
        }
        false
    }

    #[inline]
    fn end_full_period(&self) {
        if self.full_since.load(Ordering::Relaxed) != 0 {
            self.add_full_time();
        }
    }

    #[cold]
    fn add_full_time(&self) {
        let since = self.full_since.swap(0, Ordering::Relaxed);
        let waited = self.nanos_now().saturating_sub(since);
        self.full_nanos.fetch_add(waited, Ordering::Relaxed);
    }

    /// Nanoseconds since `start`, plus one (so that 0 means "not waiting").
    fn nanos_now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }
}

/// One open connection's slot; dropping it frees the slot, and wakes the
/// stream if it was waiting for one.
pub(super) struct OpenSlot {
    slots: Arc<Slots>,
    /// When the stream yielded the connection ([`Slots::nanos_now`]).
    opened: u64,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        let slots = &self.slots;
        let open_for = slots.nanos_now().saturating_sub(self.opened);
        slots.durations.record_concurrent(open_for);
        if slots.open.fetch_sub(1, Ordering::SeqCst) == slots.max {
            wake_the_stream(slots);
        }
    }
}

/// The stream may be waiting at the cap: wake it if it registered.
#[cold]
fn wake_the_stream(slots: &Slots) {
    let waker = slots.waiting.lock().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}
