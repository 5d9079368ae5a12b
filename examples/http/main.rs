//! A minimal HTTP/1.1 server: `sleep_on_error` + `listen(1000)`, and a 5 s
//! deadline per connection so that clients that send nothing can't hold the
//! connection slots. `GET /stats` shows the accept loop's live counters as a
//! Prometheus metrics page; `--metrics ADDR` serves the same page on a
//! listener of its own, answered even while every slot is taken.
//!
//! It takes its sockets from systemd or from its predecessor if it was given
//! them for the addresses (feature `handover`, which this example requires):
//! `SIGHUP` starts the executable at the same path as a successor, hands it
//! the sockets (10 s to report ready), then drains and exits 0; `SIGTERM` and
//! `SIGINT` stop accepting, drain and exit 0; with `NOTIFY_SOCKET`, systemd
//! learns `READY=1` and the successor's `MAINPID` (see `tk_listen::Handover`).
//!
//! ```sh
//! cargo run --features handover,accept-queue --example http   # listens on 127.0.0.1:8080
//! cargo run --features handover,accept-queue --example http -- 127.0.0.1:8080 --metrics 127.0.0.1:9090
//! curl -i http://127.0.0.1:8080/               # 200 OK, "hello from tk-listen"
//! curl http://127.0.0.1:8080/delay/2000        # answers after 2 s
//! curl http://127.0.0.1:8080/stats             # the counters, Prometheus text format
//! curl http://127.0.0.1:9090/metrics           # the same page, on its own listener
//! nc 127.0.0.1 8080                            # send nothing: dropped after 5 s
//! kill -HUP $(pgrep -n http)                   # a new process serves, no client lost
//! cargo run --features handover,accept-queue --example http -- --per-peer 64  # for `wrk -c 64`
//! ```
//!
//! Usage: `http [ADDR] [--metrics ADDR] [--per-peer N]`. The server itself is in
//! `server.rs`, which `tests/http.rs` runs too.

#[path = "../common/args.rs"]
mod args;
mod server;

use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

// The server's default is the command line's.
const _: () = assert!(server::MAX_PER_PEER == args::DEFAULT_PER_PEER);

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let handover = tk_listen::Handover::new().ready_timeout(Duration::from_secs(10));
    let args = args::parse_or_exit("http");

    let mut core = Core::new().unwrap();
    let handle = core.handle();
    // The inherited socket for the address, or a new one; the handover
    // gives both to a successor.
    let bind = |addr: &SocketAddr| {
        let listener = handover.listener(*addr).unwrap_or_else(|e| {
            eprintln!("cannot listen on {}: {}", addr, e);
            process::exit(1);
        });
        TcpListener::from_listener(listener, addr, &handle).unwrap()
    };
    let listener = bind(&args.addr);
    let metrics = args.metrics.as_ref().map(bind);
    let config = server::Config {
        max_connections: 1000,
        deadline: Duration::from_secs(5),
        per_peer: args.per_peer,
    };
    let stop = handover.shutdown_signal(); // SIGHUP: hand over; SIGTERM, SIGINT: stop
    println!(
        "listening on http://{}/ ({} connections at most, {} per peer, each for at most {:?})",
        listener.local_addr().unwrap(),
        config.max_connections,
        config.per_peer,
        config.deadline
    );
    if let Some(metrics) = &metrics {
        println!(
            "metrics on http://{}/metrics",
            metrics.local_addr().unwrap()
        );
    }
    let server = server::serve_until(listener, metrics, &handle, config, stop);
    handover.ready();
    // The error is `()`: only a broken event-loop timer produces it.
    core.run(server).unwrap();
}
