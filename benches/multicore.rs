//! `tk_listen` on one thread against one thread per CPU, each thread with its
//! own `Core` and its own `SO_REUSEPORT` listener on one address, as in
//! `examples/multicore/main.rs`; in interleaved rounds against client threads,
//! like `accept.rs`.
//!
//! Settings (`TK_BENCH_ROUNDS`, `TK_BENCH_ROUND_MS`, `TK_BENCH_CLIENTS`) and
//! figures: `benches/README.md`.
//!
//! Run: `cargo bench --bench multicore`

mod support;

#[path = "../examples/multicore/listener.rs"]
mod listener;

use std::net::SocketAddr;
use std::thread;

use support::servers::{self, Server, Variant};

fn main() {
    let rounds = support::env_usize("TK_BENCH_ROUNDS", 5).max(1);
    let round_time = support::env_millis("TK_BENCH_ROUND_MS", 2000);
    let clients = support::env_usize("TK_BENCH_CLIENTS", 4).max(1);
    let many = thread::available_parallelism().map_or(2, |n| n.get().max(2));
    println!("multicore: {rounds} rounds x [1, {many}] server threads, {clients} client threads");
    let threads = [1, many];
    let labels: Vec<String> = threads.iter().map(|t| format!("{t} threads")).collect();
    let results = servers::interleaved_rounds(&labels, rounds, round_time, clients, |i| {
        start_threads(threads[i])
    });
    let (one, _) = servers::medians(&results[0]);
    let (all, _) = servers::medians(&results[1]);
    println!();
    println!(
        "multicore: 1 thread {one:.0} conn/s, {many} threads {all:.0} conn/s, ratio {:.2} \
         (median of per-round ratios {:.2})",
        all / one,
        servers::median_ratio(&results[1], &results[0])
    );
}

/// `threads` `tk_listen` servers, each on its own thread and its own
/// `SO_REUSEPORT` listener, all on one address; stopping returns the CPU time
/// of all of them.
fn start_threads(threads: usize) -> Server {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let first = listener::reuseport_listener(&any_port).expect("bind 127.0.0.1:0");
    let addr = first.local_addr().unwrap();
    let mut servers = vec![Server::start_core(Variant::TkListen, first)];
    for _ in 1..threads {
        let socket = listener::reuseport_listener(&addr).expect("bind with SO_REUSEPORT");
        servers.push(Server::start_core(Variant::TkListen, socket));
    }
    Server::new(addr, move || servers.into_iter().map(Server::stop).sum())
}
