//! The start of the tokio 1 HTTP examples (`hyper`, `axum`): the command
//! line, logging, the sockets (inherited from systemd or a predecessor, or
//! bound anew with a backlog of 1024, not tokio's 128) and the signals
//! (`SIGHUP`: hand over; `SIGTERM`, `SIGINT`: drain). Each example includes
//! this file with `#[path]`, next to `args.rs`.

use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use tk_listen::tokio1::{Handover, ShutdownSignal};
use tokio::net::TcpListener;

use crate::args::{self, Args};

/// An example's sockets and signals, ready to serve.
pub struct Started {
    pub args: Args,
    pub handover: Handover,
    pub listener: TcpListener,
    /// The `--metrics` listener, if asked for.
    pub metrics: Option<TcpListener>,
    /// Resolves on `SIGTERM`, `SIGINT`, or after a handover on `SIGHUP`.
    pub shutdown: ShutdownSignal,
}

/// Parses the command line of example `name` (exit 2 on a bad one), starts
/// logging at `info`, takes the sockets (exit 1 if one can't be had) and
/// installs the signal handlers. Call it inside the runtime.
pub fn start(name: &str) -> Started {
    let args = args::parse_or_exit(name);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let handover = Handover::new().ready_timeout(Duration::from_secs(10));
    let shutdown = handover.shutdown_signal();
    let bind = |addr: SocketAddr| {
        handover
            .listener(addr)
            .and_then(TcpListener::from_std)
            .unwrap_or_else(|e| {
                eprintln!("cannot listen on {}: {}", addr, e);
                process::exit(1);
            })
    };
    let listener = bind(args.addr);
    let metrics = args.metrics.map(bind);
    Started {
        args,
        handover,
        listener,
        metrics,
        shutdown,
    }
}

impl Started {
    /// Prints the addresses served (the tests read these lines).
    pub fn announce(&self, max_connections: usize) {
        let addr = |listener: &TcpListener, or: SocketAddr| listener.local_addr().unwrap_or(or);
        println!(
            "listening on http://{}/ ({} connections at most, {} per peer)",
            addr(&self.listener, self.args.addr),
            max_connections,
            self.args.per_peer
        );
        if let (Some(metrics), Some(or)) = (&self.metrics, self.args.metrics) {
            println!("metrics on http://{}/metrics", addr(metrics, or));
        }
    }
}
