//! A minimal HTTP/1.1 server: `sleep_on_error` + `listen(1000)`, and a 5 s
//! deadline per connection so that clients that send nothing can't hold the
//! connection slots. `GET /stats` shows the accept loop's live counters.
//!
//! ```sh
//! cargo run --example http                     # listens on 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/               # 200 OK, "hello from tk-listen"
//! curl http://127.0.0.1:8080/stats             # the counters, Prometheus text format
//! nc 127.0.0.1 8080                            # send nothing: dropped after 5 s
//! cargo run --example http -- --per-peer 64    # for `wrk -c 64` from one machine
//! ```
//!
//! The server itself is in `server.rs`, which `tests/http.rs` runs too.

mod server;

use std::env;
use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

const USAGE: &str = "usage: http [ADDR] [--per-peer N]   (default 127.0.0.1:8080, 8 per peer)";

fn main() {
    let (addr, per_peer) = parse_args(env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{}\n{}", e, USAGE);
        process::exit(2);
    });
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap();
    let config = server::Config {
        max_connections: 1000,
        deadline: Duration::from_secs(5),
        per_peer,
    };
    println!(
        "listening on http://{}/ ({} connections at most, {} per peer, each for at most {:?})",
        listener.local_addr().unwrap(),
        config.max_connections,
        config.per_peer,
        config.deadline
    );
    // The error is `()`: only a broken event-loop timer produces it.
    core.run(server::serve(listener, &handle, config)).unwrap();
}

/// `[ADDR] [--per-peer N]`, in any order.
fn parse_args(args: impl Iterator<Item = String>) -> Result<(SocketAddr, usize), String> {
    let (mut addr, mut per_peer) = (None, server::MAX_PER_PEER);
    let mut args = args;
    while let Some(arg) = args.next() {
        if arg == "--per-peer" {
            let n = args.next().ok_or("--per-peer needs a number")?;
            per_peer = n
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("--per-peer {}: not a number above 0", n))?;
        } else if addr.is_none() && !arg.starts_with('-') {
            addr = Some(
                arg.parse()
                    .map_err(|_| format!("{}: not an ADDR:PORT", arg))?,
            );
        } else {
            return Err(format!("unexpected argument {:?}", arg));
        }
    }
    Ok((addr.unwrap_or(([127, 0, 0, 1], 8080).into()), per_peer))
}
