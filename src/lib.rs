//! Accept loops that survive overload, for `futures` 0.1 and `tokio-core` 0.1.
//!
//! `tk-listen` turns a stream of `accept()` results into a server: adapters
//! on any [`Stream`](futures::Stream), from the [`ListenExt`] trait, decide
//! what an accept error means, how many connections run at once, and how the
//! server stops.
//!
//! A plain `listener.incoming().for_each(..)` loop has three problems in
//! production, each solved by one item:
//!
//! 1. **Accept errors.** A client that reset its connection before it was
//!    accepted is harmless; running out of file descriptors (`EMFILE`) is not:
//!    ending the loop kills the server, and retrying at once spins at 100% CPU.
//!    [`sleep_on_error`](ListenExt::sleep_on_error) skips the first kind and
//!    pauses accepting for a while on the second (the policy table is in its
//!    docs).
//! 2. **Overload.** [`listen(n)`](ListenExt::listen) runs at most `n`
//!    connections at once and doesn't call `accept()` while full, so the rest
//!    wait in the kernel's backlog; it also survives connection futures that
//!    fail or panic, and counts them ([`ListenStats`]).
//! 3. **Shutdown.** Drop the server future to stop at once;
//!    [`Listen::with_graceful_shutdown`] stops accepting on a signal (even
//!    while every slot is taken) and resolves when the running connections
//!    have finished.
//!
//! For a set of listening addresses that changes at run time, [`BindMany`] is
//! the stream of accepted connections.
//!
//! # Example
//!
//! A server that answers `hello` to each client, at most 1000 at once, and
//! stops gracefully when standard input closes:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use futures::sync::oneshot;
//! use futures::{Future, Stream};
//! use tk_listen::ListenExt;
//! use tokio_core::net::TcpListener;
//! use tokio_core::reactor::Core;
//!
//! let mut core = Core::new().unwrap();
//! let handle = core.handle();
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! let listener = TcpListener::bind(&addr, &handle).unwrap();
//! let (stop, stopped) = oneshot::channel::<()>();
//! std::thread::spawn(move || {
//!     let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
//!     let _ = stop.send(());
//! });
//!
//! let server = listener
//!     .incoming()
//!     // Skip per-connection errors; on EMFILE and friends, pause 100 ms.
//!     .sleep_on_error(Duration::from_millis(100), &handle)
//!     // One future per connection: its whole life, from accept to close.
//!     .map(|(socket, _peer)| {
//!         tokio_io::io::write_all(socket, b"hello\n")
//!             .map(|_| ())
//!             .map_err(|e| log::error!("write error: {}", e))
//!     })
//!     // At most 1000 connections at once.
//!     .listen(1000)
//!     .with_graceful_shutdown(stopped);
//!
//! core.run(server).unwrap();
//! ```
//!
//! # Features
//!
//! - Always: the error policy, the connection cap, graceful shutdown, panic
//!   isolation, the per-peer cap ([`limit_per_peer`](ListenExt::limit_per_peer))
//!   and live counters, for any `futures` 0.1 stream; Unix domain sockets
//!   work the same as TCP (e.g. `tokio-uds` 0.1's `UnixListener::incoming()`).
//! - `tokio1` (off by default): the module `tokio1`, the same adapters for
//!   tokio 1 and `futures-core` 0.3 streams. Without it the dependency graph
//!   has no tokio 1.
//! - `handover` (off by default, Unix): restarts without losing a client.
//!   `Inherited` takes the listening sockets given by systemd socket
//!   activation or by a predecessor; `Handover` hands them to a successor
//!   process on request (e.g. `SIGHUP`), on both stacks.
//! - `accept-queue` (off by default, Linux): [`AcceptQueue`] reads the
//!   clients waiting in a listener's accept queue from the kernel, for
//!   [`Metrics`]; it brings in `netlink-sys`.
//! - `axum` (off by default; implies `tokio1`): `tokio1::axum_listener`,
//!   a tokio 1 accept stream served by `axum::serve` (axum 0.8), with this
//!   crate's error policy and caps.
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]

mod accept_error;
mod bind;
mod connection_io;
mod drain;
mod ext;
#[cfg(all(feature = "handover", unix))]
mod handover;
mod limit_open;
mod limit_per_peer;
mod limits;
mod listen;
mod metrics;
mod queue;
mod shutdown;
mod sleep_on_error;
mod stats;
mod take_until;
#[cfg(feature = "tokio1")]
pub mod tokio1;

pub use crate::bind::BindMany;
pub use crate::drain::{Drain, Watch};
pub use crate::ext::ListenExt;
#[cfg(all(feature = "handover", unix))]
pub use crate::handover::{
    HandingOver, Handover, HandoverError, Inherited, Origin, ShutdownSignal, Successor,
};
pub use crate::limit_open::{LimitOpen, OpenConnection, OpenStats};
pub use crate::limit_per_peer::{LimitPerPeer, PeerConnection, PeerStats};
pub use crate::listen::{Listen, WithGracefulShutdown};
pub use crate::metrics::Metrics;
pub use crate::queue::{AcceptQueue, ListenDrops, QueueLength};
pub use crate::sleep_on_error::SleepOnError;
pub use crate::stats::{AcceptStats, DurationHistogram, ListenStats};
pub use crate::take_until::TakeUntil;

/// The README's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
