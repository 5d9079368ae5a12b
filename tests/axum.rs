//! The server of `examples/axum` (the same module, not a copy) with real
//! clients: `curl` on HTTP/1.1 keep-alive and h2c, the drain on `SIGTERM`
//! (in a child process, with the example's own signal handling), the
//! per-peer cap from 127.0.0.2 and up, short `wrk` and `h2load` runs.
//! Linux only (see `tokio1_support::http`).
#![cfg(target_os = "linux")]

mod support;
mod tokio1_support;

#[path = "../examples/axum/app.rs"]
#[allow(dead_code)] // the parts examples/axum/main.rs uses only
mod app;

use tokio::net::TcpListener;

use tokio1_support::http::{self, ChildServer};
use tokio1_support::{Flavour, Server};

/// The server on a thread of its own, with `per_peer` connections per peer.
fn start(per_peer: usize) -> Server {
    support::init_logging();
    Server::start(Flavour::MultiThread, move |listener| async move {
        app::serve(listener, app::config(per_peer), std::future::pending())
            .await
            .unwrap()
    })
}

/// The server with its signal handling, run only as the child of
/// [`ChildServer`].
#[test]
#[ignore = "run by the tests that send SIGTERM"]
fn http_server_child() {
    let Some(per_peer) = http::child_per_peer() else {
        return;
    };
    http::child_logging();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let shutdown = app::shutdown_signal().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        app::serve(listener, app::config(per_peer), shutdown)
            .await
            .unwrap();
    });
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
    http::sigterm_drains(ChildServer::start(8));
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
