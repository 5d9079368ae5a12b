//! Listens on 127.0.0.1:8001 and 127.0.0.1:8002 in turn, switching every 5
//! seconds, and answers `hello` to every connection.
//!
//! ```sh
//! cargo run --example alternating        # RUST_LOG=debug for more detail
//! nc 127.0.0.1 8001                      # in another terminal; then try 8002
//! ```
//!
//! Whichever port is not in the current list refuses connections. The
//! switches come through a channel, as a configuration reload would; the
//! listener of the address that stays is never closed.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use futures::sync::mpsc;
use futures::{Future, Sink, Stream};
use tk_listen::{BindMany, ListenExt};
use tokio_core::reactor::Core;

const SWITCH_EVERY: Duration = Duration::from_secs(5);

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let first: SocketAddr = "127.0.0.1:8001".parse().unwrap();
    let second: SocketAddr = "127.0.0.1:8002".parse().unwrap();

    let (reload, addresses) = mpsc::channel::<Vec<SocketAddr>>(1);
    thread::spawn(move || {
        let mut reload = reload.wait();
        for addr in [first, second].iter().cycle() {
            println!("switching to {} (for {:?})", addr, SWITCH_EVERY);
            if reload.send(vec![*addr]).is_err() {
                return; // the server is gone
            }
            thread::sleep(SWITCH_EVERY);
        }
    });

    let mut core = Core::new().expect("cannot create the event loop");
    let handle = core.handle();
    let server = BindMany::new(addresses, &handle)
        .sleep_on_error(Duration::from_millis(100), &handle)
        .map(|(socket, peer)| {
            log::debug!("connection from {}", peer);
            tokio_io::io::write_all(socket, b"hello\n")
                .map(|_| ())
                .map_err(|e| log::warn!("write error: {}", e))
        })
        .listen(1000);
    core.run(server).expect("the server failed");
}
