//! The one place that decides what an `accept()` error means.

use std::io;
use std::time::Duration;

use log::{debug, warn};

use crate::limits::LONGEST_DELAY;
use crate::stats::AcceptStats;

/// The longest `sleep_on_error` delay that doesn't look like a dead server.
///
/// While a pause runs, no client is accepted: they wait in the backlog,
/// their connects or requests time out (browsers and load balancers give
/// up within a minute or so), and health checks fail, although the process
/// is up and descriptors may be free again long before the pause ends.
pub(crate) const LONGEST_LIVELY_DELAY: Duration = Duration::from_secs(60);

/// Warns, once for the stream being built, when its `delay` is longer than
/// [`LONGEST_LIVELY_DELAY`]. Both flavours of `sleep_on_error` call it from
/// their constructor, so the warning comes when the server is built, not at
/// the first pause (which may come months later).
pub(crate) fn check_delay(delay: Duration) {
    if delay > LONGEST_LIVELY_DELAY {
        warn!(
            "sleep_on_error({:?}): each pause stops accepting for {:?}; a server that \
             pauses that long looks dead (waiting clients time out, health checks fail) \
             although descriptors may be free again much sooner; 100 ms to 1 s is typical",
            delay,
            delay.min(LONGEST_DELAY)
        );
    }
}

/// What to do about one `accept()` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Accept again at once.
    Skip,
    /// Stop accepting for the delay.
    Pause,
}

/// Applies the policy to one `accept()` error of a stream that pauses for
/// `delay`: logs it (`debug` for a skip, `warn` for a pause, with the delay
/// as it will be waited), counts a skip, and says what to do. Both flavours
/// of `sleep_on_error` go through here.
pub(crate) fn judge(err: &io::Error, delay: Duration, stats: &AcceptStats) -> Verdict {
    if is_per_connection(err) {
        debug!("accept error skipped: {}", err);
        stats.record_skip();
        Verdict::Skip
    } else {
        let delay = delay.min(LONGEST_DELAY);
        warn!("accept error: {}; pausing accepts for {:?}", err, delay);
        Verdict::Pause
    }
}

/// Is this `accept()` error about one connection only, so that the next
/// `accept()` may well succeed at once? Everything else is taken to be about
/// the whole process or system, where retrying at once would only spin.
///
/// The policy itself, error by error, is documented in one place: the table
/// in [`ListenExt::sleep_on_error`](crate::ListenExt::sleep_on_error). The
/// network errors are there because Linux passes pending network errors of
/// the new socket through `accept()`, and its `accept(2)` manual page says to
/// retry them like `EAGAIN`.
pub(crate) fn is_per_connection(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused | ConnectionAborted | ConnectionReset => true,
        _ => err.raw_os_error().is_some_and(is_per_connection_os_error),
    }
}

#[cfg(unix)]
fn is_per_connection_os_error(code: i32) -> bool {
    is_enonet(code)
        || matches!(
            code,
            libc::ENETDOWN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
}

#[cfg(not(unix))]
fn is_per_connection_os_error(_code: i32) -> bool {
    false
}

/// `ENONET` ("machine is not on the network") exists on Linux only.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_enonet(code: i32) -> bool {
    code == libc::ENONET
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
fn is_enonet(_code: i32) -> bool {
    false
}
