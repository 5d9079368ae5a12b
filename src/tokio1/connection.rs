use std::fmt;

/// What a connection future's output says about how the connection ended,
/// for the `finished` and `failed` counters of
/// [`ListenStats`](crate::ListenStats).
///
/// [`listen`](super::ListenExt::listen) accepts connection futures whose
/// output is `()` (every connection counts as finished) or `Result<(), E>`
/// (`Err` counts as failed and is otherwise ignored: log it inside the
/// future if it matters). Implement it for your own output type to say which
/// outcomes count as failed.
///
/// # Examples
///
/// ```
/// use tk_listen::tokio1::ConnectionOutput;
///
/// assert!(!().is_failure());
/// assert!(!Ok::<(), &str>(()).is_failure());
/// assert!(Err::<(), _>("reset by peer").is_failure());
/// ```
pub trait ConnectionOutput {
    /// Does this output mean the connection failed?
    fn is_failure(&self) -> bool;
}

impl ConnectionOutput for () {
    fn is_failure(&self) -> bool {
        false
    }
}

impl<E> ConnectionOutput for Result<(), E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

/// The message of a caught panic, if it was a string (as `panic!` with a
/// message makes it).
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(a panic payload that is not a string)"
    }
}

/// Shows a panic payload's message in logs.
pub(super) struct PanicMessage<'a>(pub(super) &'a (dyn std::any::Any + Send));

impl fmt::Display for PanicMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(panic_message(self.0))
    }
}
