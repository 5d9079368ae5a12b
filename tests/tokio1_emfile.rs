//! Running out of file descriptors on tokio 1: the server pauses quietly
//! instead of spinning, and recovers the clients waiting in the backlog by
//! itself, on both runtime flavours.
//!
//! The server runs in a child process (this same test binary, started with an
//! environment variable) whose `RLIMIT_NOFILE` is lowered, so that the limit
//! hits only the server and its CPU time can be read from `/proc`.

mod support;
mod tokio1_support;

use std::io::Read;
use std::thread;
use std::time::Duration;

use tk_listen::tokio1::{incoming, ListenExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use support::emfile_child::exhaust_and_recover;
use tokio1_support::Flavour;

/// Set in the child's environment to the runtime flavour it runs.
const CHILD: &str = "TK_LISTEN_TOKIO1_EMFILE_SERVER";
const PAUSE: Duration = Duration::from_millis(100);

/// The server, run only as the child of the tests below.
#[test]
#[ignore = "run by the descriptor_exhaustion_* tests"]
fn emfile_server_child() {
    let flavour = match std::env::var(CHILD).as_deref() {
        Ok("current_thread") => Flavour::CurrentThread,
        Ok("multi_thread") => Flavour::MultiThread,
        _ => return,
    };
    env_logger::builder()
        .filter_level(log::LevelFilter::Warn)
        .init();
    // The parent stops us by closing our stdin.
    thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    flavour.runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        let mut accepted = 0;
        let mut first_error = true;
        let server = incoming(listener)
            // Seen before the policy under test, so the parent learns that
            // descriptors ran out whatever the policy does about it.
            .map(move |result| {
                if let Err(e) = &result {
                    if first_error {
                        first_error = false;
                        eprintln!("accept failed: {}", e);
                    }
                }
                result
            })
            .sleep_on_error(PAUSE)
            .map(move |(mut socket, _peer)| {
                // Reported here, in the accepting task, in accept order.
                accepted += 1;
                eprintln!("accepted {}", accepted);
                // Greet, then hold the descriptor until the client closes.
                async move {
                    socket.write_all(b"hello\n").await?;
                    socket.read_to_end(&mut Vec::new()).await.map(|_| ())
                }
            })
            .listen(1000);
        // Spawned, so that on the multi-thread runtime the accepting task
        // runs on a worker like the connections.
        tokio::spawn(server).await.unwrap();
    });
}

#[test]
fn descriptor_exhaustion_on_a_current_thread_runtime_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover(CHILD, "current_thread");
}

#[test]
fn descriptor_exhaustion_on_a_multi_thread_runtime_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover(CHILD, "multi_thread");
}
