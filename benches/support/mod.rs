//! Helpers shared by the benchmark binaries: settings from the environment,
//! CPU time, descriptor limits and small statistics; the accept loops under
//! test ([`servers`]) and the socket-free workloads ([`workloads`]).
//!
//! No `unsafe` here: CPU time comes from `/proc`, limits from the `rlimit`
//! crate, both through the file the tests use too. (Only `memory.rs` needs
//! `unsafe`, for its counting allocator.)
#![allow(dead_code, unreachable_pub)] // each bench binary uses its own subset

#[path = "../../tests/support/process.rs"]
mod process;
#[allow(unused_imports)] // each bench binary uses its own subset
pub use process::{nofile_limit, process_cpu, set_nofile_soft, thread_cpu};
#[path = "../../tests/support/loopback.rs"]
mod loopback;

pub mod servers;
pub mod workloads;

use std::time::Duration;

/// A whole number from the environment variable `name`, or `default`.
///
/// # Panics
///
/// Panics if the variable is set but is not a whole number.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A duration in milliseconds from the environment variable `name`, or
/// `default_ms`.
pub fn env_millis(name: &str, default_ms: usize) -> Duration {
    Duration::from_millis(env_usize(name, default_ms) as u64)
}

/// What a server did in one round of a benchmark.
pub struct Served {
    pub connections: usize,
    pub elapsed: Duration,
    pub server_cpu: Duration,
}

impl Served {
    /// Connections per second.
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU seconds per 1000 connections.
    pub fn cpu_per_1000(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1000.0 / self.connections.max(1) as f64
    }
}

/// The median of `values` (the mean of the middle two for an even count).
///
/// # Panics
///
/// Panics if `values` is empty.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The order in which `n` interleaved servers run in round `round` (from 1):
/// A B C, then C B A, and so on, so that no server always runs first or last
/// in its round, where a trend in the machine's load would favour it.
pub fn round_order(round: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// Minimum and maximum of `values`, for showing the spread next to a median.
pub fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Writes `contents` to `benches/data/<name>`, the data the charts are drawn
/// from (`cargo bench --bench charts`).
pub fn write_data(name: &str, contents: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data");
    std::fs::create_dir_all(&dir).expect("create benches/data");
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {}", path.display(), e));
    println!("wrote {}", path.display());
}

/// A blocking client connected to `server` from the `n`-th loopback
/// address after 127.0.0.2, so that a server sees it as a peer of its own
/// (Linux only).
pub fn connect_from_loopback(
    server: std::net::SocketAddr,
    n: usize,
    timeout: Duration,
) -> std::net::TcpStream {
    let host = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)) + n as u32;
    loopback::connect_from_ip(host.into(), server, timeout)
}
