//! What a shutdown signal is, for every adapter that takes one.

use futures::{Async, Future};
use log::info;

/// Has `signal` fired? It fires when it resolves or fails (a dropped
/// `oneshot::Sender` shuts down too), which is logged at `info`. Polling it
/// registers the current task to be woken when it fires.
pub(crate) fn has_fired<F: Future>(signal: &mut F) -> bool {
    match signal.poll() {
        Ok(Async::NotReady) => false,
        Ok(Async::Ready(_)) => {
            info!("shutdown signal received; no longer accepting connections");
            true
        }
        Err(_) => {
            info!("shutdown signal failed or was dropped; no longer accepting connections");
            true
        }
    }
}
