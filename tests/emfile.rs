//! Running out of file descriptors: the server pauses quietly instead of
//! spinning, and recovers the clients waiting in the backlog by itself.
//!
//! The server runs in a child process (this same test binary, started with an
//! environment variable) whose `RLIMIT_NOFILE` is lowered, so that the limit
//! hits only the server and its CPU time can be read from `/proc`.

#![cfg(target_os = "linux")]

mod support;

use std::io::Read;
use std::thread;
use std::time::Duration;

use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

use support::emfile_child::exhaust_and_recover;

const CHILD: &str = "TK_LISTEN_EMFILE_SERVER";
const PAUSE: Duration = Duration::from_millis(100);

/// The server, run only as the child of
/// `descriptor_exhaustion_pauses_quietly_and_recovers_the_backlog`.
#[test]
#[ignore = "run by descriptor_exhaustion_pauses_quietly_and_recovers_the_backlog"]
fn emfile_server_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    env_logger::builder()
        .filter_level(log::LevelFilter::Warn)
        .init();
    // The parent stops us by closing our stdin.
    thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let any_port = "127.0.0.1:0".parse().unwrap();
    let listener = TcpListener::bind(&any_port, &handle).unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let mut accepted = 0;
    let mut first_error = true;
    let server = listener
        .incoming()
        // Seen before the policy under test, so the parent learns that
        // descriptors ran out whatever the policy does about it.
        .inspect_err(move |e| {
            if first_error {
                first_error = false;
                eprintln!("accept failed: {}", e);
            }
        })
        .sleep_on_error(PAUSE, &handle)
        .map(move |(socket, _)| {
            accepted += 1;
            eprintln!("accepted {}", accepted);
            // Greet, then hold the descriptor until the client closes.
            tokio_io::io::write_all(socket, b"hello\n")
                .and_then(|(socket, _)| tokio_io::io::read_to_end(socket, Vec::new()))
                .map(|_| ())
                .map_err(|e| eprintln!("connection failed: {}", e))
        })
        .listen(1000);
    core.run(server).unwrap();
}

#[test]
fn descriptor_exhaustion_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover(CHILD, "tokio-core");
}
