//! A minimal HTTP/1.1 server: `sleep_on_error` + `listen(1000)`, and a 5 s
//! deadline per connection so that clients that send nothing can't hold the
//! connection slots. `GET /stats` shows the accept loop's live counters.
//!
//! ```sh
//! cargo run --example http                     # listens on 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/               # 200 OK, "hello from tk-listen"
//! curl http://127.0.0.1:8080/stats             # the counters, Prometheus text format
//! nc 127.0.0.1 8080                            # send nothing: dropped after 5 s
//! ```
//!
//! The server itself is in `server.rs`, which `tests/http.rs` runs too.
//!
//! It takes its socket from systemd or from its predecessor if it was given
//! one for the address (feature `handover`, which this example requires):
//! `SIGHUP` starts the executable at the same path as a successor, hands it
//! the socket (10 s to report ready), then drains and exits 0; `SIGTERM` and
//! `SIGINT` stop accepting, drain and exit 0; with `NOTIFY_SOCKET`, systemd
//! learns `READY=1` and the successor's `MAINPID` (see `tk_listen::Handover`).
//!
//! ```sh
//! cargo run --features handover --example http
//! kill -HUP $(pgrep -n http)                   # a new process serves, no client lost
//! ```

mod server;

use std::env;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let handover = tk_listen::Handover::new().ready_timeout(Duration::from_secs(10));
    let addr = env::args().nth(1).unwrap_or("127.0.0.1:8080".to_string());
    let addr = addr.parse::<SocketAddr>().unwrap();

    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let listener = handover.listener(addr).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        std::process::exit(1);
    });
    let listener = TcpListener::from_listener(listener, &addr, &handle).unwrap();
    let config = server::Config {
        max_connections: 1000,
        deadline: Duration::from_secs(5),
    };
    let stop = handover.shutdown_signal(); // SIGHUP: hand over; SIGTERM, SIGINT: stop
    println!(
        "listening on http://{}/ ({} connections at most, each for at most {:?})",
        listener.local_addr().unwrap(),
        config.max_connections,
        config.deadline
    );
    let server = server::serve_until(listener, &handle, config, stop);
    handover.ready();
    // The error is `()`: only a broken event-loop timer produces it.
    core.run(server).unwrap();
}
