//! The command line of the HTTP examples (`http`, `hyper`, `axum`):
//! `NAME [ADDR] [--metrics ADDR] [--per-peer N]`, in any order. Each
//! example includes this file with `#[path]`.

use std::net::SocketAddr;
use std::process;

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// The per-peer cap when `--per-peer` is not given.
pub const DEFAULT_PER_PEER: usize = 8;

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args {
    /// The address to serve.
    pub addr: SocketAddr,
    /// The metrics listener's address (`--metrics`), if any.
    pub metrics: Option<SocketAddr>,
    /// At most this many connections at once from one peer (`--per-peer`).
    pub per_peer: usize,
}

/// The usage line of example `name`.
pub fn usage(name: &str) -> String {
    format!(
        "usage: {} [ADDR] [--metrics ADDR] [--per-peer N]   (default {}, {} per peer)",
        name, DEFAULT_ADDR, DEFAULT_PER_PEER
    )
}

/// The process's arguments; on a bad one, prints it and the usage line of
/// example `name` to standard error and exits with status 2. `-h` or
/// `--help` prints the usage line and exits 0.
pub fn parse_or_exit(name: &str) -> Args {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{}", usage(name));
        process::exit(0);
    }
    parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{}\n{}", e, usage(name));
        process::exit(2);
    })
}

/// `[ADDR] [--metrics ADDR] [--per-peer N]`, in any order, each at most once.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let (mut addr, mut metrics, mut per_peer) = (None, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--metrics" if metrics.is_none() => {
                let value = args.next().ok_or("--metrics needs an address")?;
                metrics = Some(address(&value, "--metrics")?);
            }
            "--per-peer" if per_peer.is_none() => {
                let n = args.next().ok_or("--per-peer needs a number")?;
                per_peer = Some(
                    n.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("--per-peer {}: not a number above 0", n))?,
                );
            }
            _ if addr.is_none() && !arg.starts_with('-') => addr = Some(address(&arg, "ADDR")?),
            _ => return Err(format!("unexpected argument {:?}", arg)),
        }
    }
    Ok(Args {
        addr: addr.unwrap_or_else(|| DEFAULT_ADDR.parse().unwrap()),
        metrics,
        per_peer: per_peer.unwrap_or(DEFAULT_PER_PEER),
    })
}

fn address(value: &str, what: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e| format!("{} {:?}: {} (expected IP:PORT)", what, value, e))
}
