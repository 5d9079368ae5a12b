//! The server of `examples/hyper` (the same module, not a copy) with real
//! clients: `curl` on HTTP/1.1 keep-alive and h2c; in the example run as a
//! child process, the drain on `SIGTERM` and the handover on `SIGHUP`; the
//! per-peer cap from 127.0.0.2 and up, short `wrk` and `h2load` runs.
//! Linux only (see `tokio1_support::http`).
#![cfg(target_os = "linux")]

mod support;
mod tokio1_support;

#[path = "../examples/hyper/server.rs"]
#[allow(dead_code)] // the parts examples/hyper/main.rs uses only
mod server;

use tokio1_support::http::{self, ChildServer};
use tokio1_support::{Flavour, Server};

/// The server on a thread of its own, with `per_peer` connections per peer.
fn start(per_peer: usize) -> Server {
    support::init_logging();
    Server::start(Flavour::MultiThread, move |listener| {
        server::serve(
            listener,
            None,
            server::config(per_peer),
            std::future::pending(),
        )
    })
}

/// The server with at most `slots` connections and a metrics listener;
/// returns it and the metrics listener's address.
fn start_with_metrics(slots: usize) -> (Server, std::net::SocketAddr) {
    http::start_with_metrics_listener(move |listener, metrics| {
        let config = server::Config {
            max_connections: slots,
            ..server::config(8)
        };
        server::serve(listener, Some(metrics), config, std::future::pending())
    })
}

#[test]
fn curl_keeps_http1_connections_alive() {
    http::curl_keeps_http1_connections_alive(start(8).addr);
}

#[test]
fn curl_gets_h2c_with_prior_knowledge() {
    http::curl_gets_h2c_with_prior_knowledge(start(8).addr);
}

#[test]
fn the_stats_page_has_the_contracts_counters() {
    http::the_stats_page_has_the_contracts_counters(start(8).addr);
}

#[test]
fn sigterm_closes_idle_connections_at_once_completes_the_request_in_flight_and_exits_0() {
    http::sigterm_drains(ChildServer::start("hyper", 8));
}

#[test]
fn sighup_hands_over_to_a_successor_without_failing_a_keep_alive_client() {
    http::sighup_hands_over_under_keep_alive_clients(ChildServer::start("hyper", 64));
}

#[test]
fn the_per_peer_cap_closes_a_peers_extra_connection_and_serves_other_peers() {
    http::the_per_peer_cap_closes_a_peers_extra_connection(start(3).addr, 3);
}

#[test]
fn wrk_with_keep_alive_gets_no_errors() {
    http::wrk_runs_without_errors(start(64).addr, false);
}

#[test]
fn wrk_with_connection_close_gets_no_errors() {
    http::wrk_runs_without_errors(start(64).addr, true);
}

#[test]
fn h2load_gets_no_errors() {
    http::h2load_runs_without_errors(start(64).addr);
}

#[test]
fn the_metrics_listener_answers_while_every_slot_is_taken_and_shows_the_clients_waiting() {
    let (server, metrics) = start_with_metrics(2);
    http::the_metrics_listener_answers_while_the_main_one_is_full(server.addr, metrics, 2);
}

#[test]
fn the_example_serves_the_page_on_its_metrics_address() {
    http::the_example_serves_the_page_on_its_metrics_address("hyper");
}
