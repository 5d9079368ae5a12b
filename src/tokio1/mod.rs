//! The same adapters for tokio 1 and `futures-core` 0.3 streams.
//!
//! **Available with the `tokio1` cargo feature only** (off by default):
//!
//! ```toml
//! [dependencies]
//! tk-listen = { version = "0.1", features = ["tokio1"] }
//! ```
//!
//! Without the feature, this crate's dependency graph is the futures 0.1 /
//! tokio-core one it always was. The feature brings in `tokio` 1 (features
//! `rt`, `time` and `net`), `futures-core` 0.3 and `pin-project-lite`, which
//! tokio depends on already.
//!
//! | futures 0.1 / tokio-core | tokio 1 |
//! |---|---|
//! | `TcpListener::bind(&addr, &handle)`, backlog 1024 | [`bind`]`(addr)`, backlog 1024; [`bind_with_backlog`]`(addr, n)` |
//! | `listener.incoming()` | [`incoming(listener)`](incoming) (`TcpListener`, `UnixListener`) |
//! | [`crate::BindMany::new`]`(addresses, &handle)` | [`BindMany::new`]`(addresses)` |
//! | [`crate::ListenExt::sleep_on_error`]`(delay, &handle)` | [`ListenExt::sleep_on_error`]`(delay)` |
//! | [`crate::ListenExt::listen`]`(n)`, connections on the event loop | [`ListenExt::listen`]`(n)`, connections as tasks on every worker; [`ListenExt::listen_local`]`(n)` for `!Send` ones |
//! | [`crate::ListenExt::take_until`]`(signal)` | [`Listen::with_graceful_shutdown`]`(signal)` |
//! | [`crate::ListenExt::limit_per_peer`]`(k)` | [`ListenExt::limit_per_peer`]`(k)`: the same table, [`PeerConnection`] and [`PeerStats`] |
//! | [`crate::ListenExt::limit_open`]`(n)` | [`ListenExt::limit_open`]`(n)`: the same [`OpenConnection`] and [`OpenStats`] |
//! | [`crate::Drain`]`::new(signal)`, `drain.watch(conn, on_drain)` | [`Drain`]`::new(signal)`, `drain.watch(conn, on_drain)`; [`Drain::stop_accepting`]`(accepts)` for `axum::serve` |
//! | [`crate::WithGracefulShutdown::drain_deadline`]`(d, &handle)` | [`Listen::drain_deadline`]`(d)`, [`LocalListen::drain_deadline`]`(d)` |
//! | [`AcceptStats`](crate::AcceptStats), [`ListenStats`](crate::ListenStats) | the same types |
//! | [`Metrics`](crate::Metrics), [`AcceptQueue`](crate::AcceptQueue) | the same types |
//! | `Handover`, `Inherited` (feature `handover`) | the same types, re-exported here; their futures are `std` futures too |
//! | | [`axum_listener`]`(accepts, local_addr)`: the stream served by `axum::serve` (feature `axum`) |
//!
//! The error policy (which `accept()` errors are skipped, which pause) is
//! the one in [`crate::ListenExt::sleep_on_error`], decided by the same code;
//! so are the 64-per-poll budget and the one-year cap on delays.
//!
//! Bind with [`bind`] rather than tokio's `TcpListener::bind`: tokio's
//! listens with a backlog of 128 clients, and when a burst is larger than
//! the backlog, the kernel drops the SYNs of the extra clients, which try
//! again only after a second ([`incoming`](incoming#the-backlog) has the
//! details). [`bind`] gives 1024, as tokio-core did.
//!
//! Turn each accepted socket into its connection future with `map` from
//! `tokio_stream::StreamExt` or `futures::StreamExt` (any
//! [`futures_core::Stream`] combinator works).
//!
//! # Examples
//!
//! A server that greets every client, at most 1000 at once, until Ctrl-C,
//! then lets the running connections finish:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tk_listen::tokio1::{bind, incoming, ListenExt};
//! use tokio::io::AsyncWriteExt;
//! use tokio_stream::StreamExt;
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     // A backlog of 1024 clients waiting for a slot, not tokio's 128.
//!     let listener = bind("127.0.0.1:8080".parse().unwrap())?;
//!     let server = incoming(listener)
//!         // Skip per-connection errors; on EMFILE and friends, pause 100 ms.
//!         .sleep_on_error(Duration::from_millis(100))
//!         // One future per connection: its whole life, from accept to close.
//!         .map(|(mut socket, _peer)| async move { socket.write_all(b"hello\n").await })
//!         // At most 1000 connections at once, as tasks on the runtime.
//!         .listen(1000)
//!         .with_graceful_shutdown(tokio::signal::ctrl_c());
//!     let stats = server.stats();
//!     server.await;
//!     println!("served {} connections", stats.finished());
//!     Ok(())
//! }
//! ```

#[cfg(feature = "axum")]
mod axum;
mod connection;
mod ext;
mod incoming;
mod listen;
mod local_listen;
mod pool;
mod sleep_on_error;

#[cfg(feature = "axum")]
pub use self::axum::{axum_listener, AxumListener};
pub use crate::bind::tokio1::BindMany;

pub use self::connection::ConnectionOutput;
pub use self::ext::ListenExt;
pub use self::incoming::{bind, bind_with_backlog, incoming, Incoming, DEFAULT_BACKLOG};
pub use self::listen::Listen;
pub use self::local_listen::LocalListen;
pub use self::sleep_on_error::SleepOnError;
pub use crate::drain::tokio1::{Drain, StopAccepting, Watch};
/// The handover's types work on both stacks: its futures are
/// `std::future::Future`s too.
#[cfg(all(feature = "handover", unix))]
pub use crate::handover::{
    HandingOver, Handover, HandoverError, Inherited, Origin, ShutdownSignal, Successor,
};
pub use crate::limit_open::{LimitOpen, OpenConnection, OpenStats};
pub use crate::limit_per_peer::{LimitPerPeer, PeerConnection, PeerStats};
