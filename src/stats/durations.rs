//! How long connections lived: the bucket table, the bucket search and the
//! atomics of [`ListenStats::durations`](crate::ListenStats::durations),
//! shared by both stacks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::add;

/// Upper bounds of the buckets, in nanoseconds: roughly logarithmic (1, 2.5,
/// 5 per decade) from 1 ms to 10 s, then the minutes a stuck or slow client
/// holds a slot for, up to an hour. A last bucket, `+Inf`, takes the rest.
const BOUNDS_NANOS: [u64; 20] = [
    MS,
    2 * MS + MS / 2,
    5 * MS,
    10 * MS,
    25 * MS,
    50 * MS,
    100 * MS,
    250 * MS,
    500 * MS,
    SEC,
    2 * SEC + SEC / 2,
    5 * SEC,
    10 * SEC,
    30 * SEC,
    60 * SEC,
    120 * SEC,
    300 * SEC,
    600 * SEC,
    1800 * SEC,
    3600 * SEC,
];

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Buckets, the `+Inf` one included.
const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// A reading of the histogram of connection durations of a
/// [`ListenStats`](crate::ListenStats), from
/// [`ListenStats::durations`](crate::ListenStats::durations) (or of a
/// `limit_open` stream, from
/// [`OpenStats::durations`](crate::OpenStats::durations), where a
/// connection lasts from its stream's yield to its drop).
///
/// Every connection that ended (finished, failed, panicked or aborted) is in
/// it, with the time from its start (the poll of the server that took it from
/// the stream) to its end. The buckets are fixed and roughly logarithmic,
/// from 1 ms to 1 h, each counting the durations up to and including its
/// bound, as Prometheus's `le` buckets do. A reading is taken bucket by
/// bucket while connections end, so it is not one snapshot: its
/// [`count`](DurationHistogram::count) may lag
/// [`ListenStats`](crate::ListenStats)'s counters by the connections ending
/// meanwhile.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use futures::{future, stream, Future};
/// use tk_listen::ListenExt;
///
/// let connections = stream::iter_ok::<_, ()>(vec![future::ok(()), future::err(())]);
/// let server = connections.listen(10);
/// let stats = server.stats();
/// server.wait().unwrap();
/// let durations = stats.durations();
/// assert_eq!(durations.count(), 2);
/// // Both ended at once: they are in the first bucket, and in every later one.
/// let (bound, count) = durations.buckets().next().unwrap();
/// assert_eq!((bound, count), (Duration::from_millis(1), 2));
/// assert_eq!(durations.buckets().last(), Some((Duration::MAX, 2)));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Per bucket, not cumulative.
    counts: [u64; BUCKETS],
    sum_nanos: u64,
}

impl DurationHistogram {
    /// The buckets in increasing order, as `(upper_bound, cumulative_count)`:
    /// how many connections lasted at most `upper_bound`. The last one has
    /// the bound [`Duration::MAX`] (Prometheus's `+Inf`) and counts them all.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use futures::{stream, Future, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let server = stream::empty::<futures::future::FutureResult<(), ()>, ()>().listen(1);
    /// let stats = server.stats();
    /// server.wait().unwrap();
    /// let bounds: Vec<Duration> = stats.durations().buckets().map(|(bound, _)| bound).collect();
    /// assert_eq!(bounds.first(), Some(&Duration::from_millis(1)));
    /// assert_eq!(bounds[bounds.len() - 2], Duration::from_secs(3600));
    /// assert_eq!(bounds.last(), Some(&Duration::MAX));
    /// ```
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        let bounds = BOUNDS_NANOS
            .iter()
            .map(|&nanos| Duration::from_nanos(nanos))
            .chain(Some(Duration::MAX));
        bounds.zip(self.counts.iter().scan(0u64, |total, &n| {
            *total = total.wrapping_add(n);
            Some(*total)
        }))
    }

    /// How many connections are in the histogram: the count of the last
    /// bucket.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .fold(0, |total, &n| total.wrapping_add(n))
    }

    /// The durations of all of them, added up.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }
}

impl fmt::Debug for DurationHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurationHistogram")
            .field("count", &self.count())
            .field("sum", &self.sum())
            .field("buckets", &self.buckets().collect::<Vec<_>>())
            .finish()
    }
}

/// The live histogram: one writer at a time, like the other counters, or
/// several through [`record_concurrent`](Durations::record_concurrent).
pub(crate) struct Durations {
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Durations {
    pub(crate) fn new() -> Durations {
        Durations {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one connection that lasted `nanos` nanoseconds.
    #[inline]
    pub(super) fn record(&self, nanos: u64) {
        add(&self.counts[bucket(nanos)], 1);
        add(&self.sum_nanos, nanos);
    }

    /// [`record`](Durations::record) for writers on several threads at
    /// once (the tasks of tokio 1's `listen`, `limit_open`'s connections).
    #[inline]
    pub(crate) fn record_concurrent(&self, nanos: u64) {
        self.counts[bucket(nanos)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn read(&self) -> DurationHistogram {
        DurationHistogram {
            counts: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
            sum_nanos: self.sum_nanos.load(Relaxed),
        }
    }
}

/// The bucket of a duration: the first whose bound is at least `nanos`.
/// The position of the highest bit of `nanos` picks the first bucket it can
/// be in ([`CANDIDATE`]); as two bounds are at least twice apart, it is that
/// one or the next, which one comparison tells, without a branch.
#[inline]
fn bucket(nanos: u64) -> usize {
    let (first, bound) = CANDIDATE[(nanos | 1).ilog2() as usize];
    usize::from(first) + usize::from(nanos > bound)
}

/// For a duration whose highest bit is bit `k` (at least `2^k` ns; 0 and 1
/// ns both at `k == 0`), the first bucket it can be in, and that bucket's
/// bound (`u64::MAX` for `+Inf`).
const CANDIDATE: [(u8, u64); 64] = {
    let mut table = [(0, 0); 64];
    let mut k = 0;
    while k < 64 {
        let least = if k == 0 { 0 } else { 1u64 << k };
        let mut i = 0;
        while i < BOUNDS_NANOS.len() && BOUNDS_NANOS[i] < least {
            i += 1;
        }
        let bound = if i < BOUNDS_NANOS.len() {
            BOUNDS_NANOS[i]
        } else {
            u64::MAX
        };
        table[k] = (i as u8, bound);
        k += 1;
    }
    table
};

/// A time stamp: nanoseconds since the server's counters were made. Stamps
/// subtract as plain integers, where `Instant`s take a checked subtraction
/// of seconds and nanoseconds each time.
pub(crate) type Stamp = u64;

/// The time stamp of the starts and ends a server handles in one poll: the
/// clock is read at most once per poll, and only if a connection starts or
/// ends in it.
pub(crate) struct Clock {
    /// [`UNREAD`] until the first [`now`](Clock::now).
    now: Stamp,
}

/// A [`Clock`] not read yet: `u64::MAX` ns is 584 years after the epoch.
const UNREAD: Stamp = u64::MAX;

impl Clock {
    #[inline]
    pub(crate) fn new() -> Clock {
        Clock { now: UNREAD }
    }

    /// The stamp of this poll, if the clock was read in it already.
    #[inline]
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        (self.now != UNREAD).then_some(self.now)
    }

    /// Makes `now`, read by the caller with [`read_clock`], the stamp of
    /// this poll.
    #[inline]
    pub(crate) fn set(&mut self, now: Stamp) {
        self.now = now;
    }

    /// The stamp of this poll, read from `epoch` on first use.
    #[inline]
    pub(crate) fn now(&mut self, epoch: &Instant) -> Stamp {
        if self.now == UNREAD {
            self.now = read_clock(epoch);
        }
        self.now
    }
}

/// Reads the clock, as a stamp a [`Clock`] can hold: kept out of line, so
/// that the calls stay small.
#[cold]
#[inline(never)]
pub(super) fn read_clock(epoch: &Instant) -> Stamp {
    nanos(epoch.elapsed()).min(UNREAD - 1)
}

/// Whole nanoseconds in a `u64` (584 years), without `u128` arithmetic.
pub(super) fn nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(SEC)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_goes_to_the_first_bucket_whose_bound_it_does_not_exceed() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(MS), 0);
        assert_eq!(bucket(MS + 1), 1);
        assert_eq!(bucket(3600 * SEC), BOUNDS_NANOS.len() - 1);
        assert_eq!(bucket(3600 * SEC + 1), BOUNDS_NANOS.len());
        assert_eq!(bucket(u64::MAX), BOUNDS_NANOS.len());
    }

    #[test]
    fn bounds_increase_at_least_twofold() {
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] * 2 <= w[1]));
    }

    #[test]
    fn the_bucket_search_agrees_with_a_linear_one() {
        let linear = |nanos: u64| {
            BOUNDS_NANOS
                .iter()
                .position(|&bound| nanos <= bound)
                .unwrap_or(BOUNDS_NANOS.len())
        };
        let mut probes = vec![0, 1, u64::MAX];
        for &bound in &BOUNDS_NANOS {
            probes.extend([bound - 1, bound, bound + 1, bound / 2, bound * 2]);
        }
        probes.extend((0..64).map(|bits| 1u64 << bits));
        probes.extend((1..64).map(|bits| (1u64 << bits) - 1));
        for nanos in probes {
            assert_eq!(bucket(nanos), linear(nanos), "{} ns", nanos);
        }
    }

    #[test]
    fn a_reading_is_cumulative_and_sums_the_durations() {
        let durations = Durations::new();
        durations.record(500_000);
        durations.record(3 * MS);
        durations.record(7200 * SEC);
        let reading = durations.read();
        let buckets: Vec<_> = reading.buckets().collect();
        assert_eq!(buckets[0], (Duration::from_millis(1), 1));
        assert_eq!(buckets[1], (Duration::from_micros(2500), 1));
        assert_eq!(buckets[2], (Duration::from_millis(5), 2));
        assert_eq!(buckets[BUCKETS - 2], (Duration::from_secs(3600), 2));
        assert_eq!(buckets[BUCKETS - 1], (Duration::MAX, 3));
        assert_eq!(reading.count(), 3);
        assert_eq!(
            reading.sum(),
            Duration::from_secs(7200) + Duration::from_micros(3500)
        );
    }
}
