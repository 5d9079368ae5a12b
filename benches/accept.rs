//! Loopback connection throughput: `tk_listen` against the accept loops people
//! write by hand (`raw_std`, `raw_core`; see `support/servers.rs`), each on a
//! thread of its own, in interleaved rounds against client threads.
//!
//! Per variant it prints the median connections/s and the median server-thread
//! CPU seconds per 1000 connections, then `tk_listen`'s ratios to the others,
//! and writes the medians to `benches/data/accept.csv`
//! (`variant,conn_per_s,cpu_s_per_1000`), which `benches/charts.rs` draws.
//!
//! Settings (`TK_BENCH_ROUNDS`, `TK_BENCH_ROUND_MS`, `TK_BENCH_CLIENTS`,
//! `TK_BENCH_VARIANTS`) and figures: `benches/README.md`.
//!
//! Run: `cargo bench --bench accept`

mod support;

use support::servers::{self, Server, Variant};

/// The variants run unless `TK_BENCH_VARIANTS` names others.
const DEFAULT_VARIANTS: [Variant; 3] = [Variant::RawStd, Variant::RawCore, Variant::TkListen];

fn main() {
    let rounds = support::env_usize("TK_BENCH_ROUNDS", 5).max(1);
    let round_time = support::env_millis("TK_BENCH_ROUND_MS", 2000);
    let clients = support::env_usize("TK_BENCH_CLIENTS", 4).max(1);
    let variants: Vec<Variant> = match std::env::var("TK_BENCH_VARIANTS") {
        Ok(names) => names.split(',').map(Variant::named).collect(),
        Err(_) => DEFAULT_VARIANTS.to_vec(),
    };
    let labels: Vec<String> = variants.iter().map(|v| v.name().to_string()).collect();
    println!(
        "accept: {rounds} rounds x {} variants, {round_time:?} each, {clients} client threads",
        variants.len(),
    );
    let results = servers::interleaved_rounds(&labels, rounds, round_time, clients, |i| {
        Server::start(variants[i])
    });

    println!();
    println!(
        "{:<18} {:>14} {:>20} {:>22}",
        "variant", "median conn/s", "(min..max)", "median CPU-s/1000 conn"
    );
    let mut csv = String::from("variant,conn_per_s,cpu_s_per_1000\n");
    let medians: Vec<(f64, f64)> = results.iter().map(|r| servers::medians(r)).collect();
    for ((label, rounds), &(rate, cpu)) in labels.iter().zip(&results).zip(&medians) {
        let rates: Vec<f64> = rounds.iter().map(|r| r.served.per_second()).collect();
        let (lo, hi) = support::min_max(&rates);
        println!(
            "{label:<18} {rate:>14.0} {:>20} {cpu:>22.4}",
            format!("({lo:.0}..{hi:.0})")
        );
        csv.push_str(&format!("{label},{rate:.0},{cpu:.5}\n"));
    }

    if let Some(tk) = variants.iter().position(|&v| v == Variant::TkListen) {
        println!();
        for (other, label) in labels.iter().enumerate().filter(|&(i, _)| i != tk) {
            println!(
                "tk_listen/{:<19} {:.3} conn/s (median of per-round ratios {:.3}), CPU per conn {:.3}",
                format!("{label}:"),
                medians[tk].0 / medians[other].0,
                servers::median_ratio(&results[tk], &results[other]),
                medians[tk].1 / medians[other].1
            );
        }
        println!("goal: tk_listen/raw_core conn/s >= 1.00 with CPU per conn <= 1.00");
    }
    support::write_data("accept.csv", &csv);
}
