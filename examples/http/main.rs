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
//! curl http://127.0.0.1:8080/stats             # the counters, Prometheus text format
//! curl http://127.0.0.1:9090/metrics           # the same page, on its own listener
//! nc 127.0.0.1 8080                            # send nothing: dropped after 5 s
//! kill -HUP $(pgrep -n http)                   # a new process serves, no client lost
//! cargo run --features handover,accept-queue --example http -- --per-peer 64  # for `wrk -c 64`
//! ```
//!
//! Usage: `http [ADDR] [--metrics ADDR] [--per-peer N]`. The server itself is in
//! `server.rs`, which `tests/http.rs` runs too.

mod server;

use std::env;
use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

const USAGE: &str =
    "usage: http [ADDR] [--metrics ADDR] [--per-peer N]   (default 127.0.0.1:8080, 8 per peer)";

/// The command line: the address to serve, the metrics listener's, and the
/// per-peer cap.
struct Args {
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    per_peer: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut metrics = None;
    let mut per_peer = server::MAX_PER_PEER;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        let parse = |value: Option<String>, what: &str| {
            let value = value.ok_or_else(|| format!("{} needs an address", what))?;
            value
                .parse::<SocketAddr>()
                .map_err(|e| format!("{}: {:?}: {}", what, value, e))
        };
        match arg.as_str() {
            "--metrics" if metrics.is_none() => metrics = Some(parse(args.next(), "--metrics")?),
            "--per-peer" => {
                let n = args.next().ok_or("--per-peer needs a number")?;
                per_peer = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--per-peer {}: not a number above 0", n))?;
            }
            _ if !arg.starts_with('-') && addr.is_none() => addr = Some(parse(Some(arg), "ADDR")?),
            _ => return Err(format!("unexpected argument {:?}", arg)),
        }
    }
    Ok(Args {
        addr: addr.unwrap_or_else(|| "127.0.0.1:8080".parse().unwrap()),
        metrics,
        per_peer,
    })
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let handover = tk_listen::Handover::new().ready_timeout(Duration::from_secs(10));
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{}\n{}", e, USAGE);
        process::exit(2);
    });

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
