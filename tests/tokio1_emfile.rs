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
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use tk_listen::tokio1::{incoming, ListenExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use support::emfile_child::{assert_not_served, read_hello, ChildServer};
use tokio1_support::{connect, Flavour};

/// Set in the child's environment to the runtime flavour it runs.
const CHILD: &str = "TK_LISTEN_TOKIO1_EMFILE_SERVER";
const DESCRIPTORS: u32 = 64;
const CLIENTS: usize = 100;
const PAUSE: Duration = Duration::from_millis(100);
/// How long CPU use is measured while descriptors are exhausted.
const WINDOW: Duration = Duration::from_millis(1500);

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

/// Fills the backlog past the descriptor limit, checks the CPU use while
/// exhausted, frees the descriptors and checks that the backlog is served.
fn exhaust_and_recover(flavour: &str) {
    let server = ChildServer::start(CHILD, flavour, DESCRIPTORS);

    // More clients than the server has descriptors; they all complete the
    // handshake in the kernel's backlog.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    let served = server.accepted_before_first_error();
    assert!(
        served > 0 && served < CLIENTS,
        "accepted {} before running out of descriptors",
        served
    );

    // Exhausted: the server must sit quietly, not retry accept() in a loop.
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    thread::sleep(WINDOW);
    let cpu_share =
        (server.cpu_time() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    eprintln!(
        "{} server CPU while out of descriptors: {:.1}% of a core",
        flavour,
        cpu_share * 100.0
    );
    assert!(
        cpu_share < 0.5,
        "server used {:.0}% of a core while out of descriptors",
        cpu_share * 100.0
    );

    // The backlog is accepted in order: the first `served` clients were
    // greeted, the rest still wait.
    for client in &mut clients[..served] {
        read_hello(client);
    }
    for client in &clients[served..] {
        assert_not_served(client);
    }

    // Free the descriptors. No new client arrives, yet the ones waiting in
    // the backlog must be accepted and served.
    let waiting = clients.split_off(served);
    drop(clients);
    for mut client in waiting {
        read_hello(&mut client);
    }
    server.wait_for_accepts(CLIENTS);

    // And new clients are served too.
    for _ in 0..3 {
        read_hello(&mut connect(server.addr));
    }
    server.stop();
}

#[test]
fn descriptor_exhaustion_on_a_current_thread_runtime_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover("current_thread");
}

#[test]
fn descriptor_exhaustion_on_a_multi_thread_runtime_pauses_quietly_and_recovers_the_backlog() {
    exhaust_and_recover("multi_thread");
}
