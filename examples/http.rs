//! A minimal HTTP/1.1 server: `sleep_on_error` + `listen(1000)`, and a 5 s
//! deadline per connection so that clients that send nothing can't hold the
//! connection slots.
//!
//! ```sh
//! cargo run --example http                     # listens on 127.0.0.1:8080
//! cargo run --example http -- 127.0.0.1:3000   # another address
//! curl -i http://127.0.0.1:8080/               # 200 OK, "hello from tk-listen"
//! nc 127.0.0.1 8080                            # send nothing: dropped after 5 s
//! ```
//!
//! The server itself is in `examples/http/server.rs`, which `tests/http.rs`
//! runs too.

#[path = "http/server.rs"]
mod server;

use std::env;
use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

const USAGE: &str = "usage: http [ADDR]   (default 127.0.0.1:8080)";

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", USAGE);
        return;
    }
    let addr: SocketAddr = match args.as_slice() {
        [] => "127.0.0.1:8080".parse().unwrap(),
        [addr] => addr.parse().unwrap_or_else(|_| {
            eprintln!("invalid address: {:?}\n{}", addr, USAGE);
            process::exit(2);
        }),
        _ => {
            eprintln!("{}", USAGE);
            process::exit(2);
        }
    };

    let mut core = Core::new().expect("cannot create the event loop");
    let handle = core.handle();
    let listener = TcpListener::bind(&addr, &handle).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    });
    let config = server::Config {
        max_connections: 1000,
        deadline: Duration::from_secs(5),
    };
    println!(
        "listening on http://{}/ ({} connections at most, each for at most {:?})",
        listener.local_addr().unwrap(),
        config.max_connections,
        config.deadline
    );
    // `sleep_on_error` only fails if its timer breaks.
    if core.run(server::serve(listener, &handle, config)).is_err() {
        eprintln!("the accept loop failed");
        process::exit(1);
    }
}
