//! The one place that decides what an `accept()` error means.

use std::io;

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
