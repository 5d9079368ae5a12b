//! The workloads whose instructions `benches/callgrind.sh` counts under
//! `valgrind --tool=callgrind`, with no client threads and no timing, so that
//! every run does the same work. Run by that script; the command-line
//! arguments choose one workload:
//!
//! * `overhead <workload> <repeat>`: one of the socket-free workloads of
//!   `overhead.rs` (`support/workloads.rs`), `repeat` times.
//! * `fresh <variant> <batches> <size>`: `batches` times, fills a new
//!   listener's backlog with `size` connected clients (at most 128), then
//!   has a new server of `variant` (`raw_std`, `raw_core` or `tk_listen`)
//!   accept and answer them all on this thread, inside a function named
//!   `serve_batch_<variant>`. That includes building and dropping the server
//!   once per batch.
//! * `running <variant> <batches> <size> <peers>`: one server of `variant`
//!   (`raw_core`, `tk_listen` or `tk_listen_per_peer`) for all batches; each
//!   batch only turns the event loop until it is served, in
//!   `turn_until_served`: the cost per connection of a running server. The
//!   clients of a batch connect from `peers` loopback addresses in turn
//!   (127.0.0.2, 127.0.0.3, ..., bound before connecting; Linux accepts all
//!   of 127.0.0.0/8), so that `tk_listen_per_peer` sees that many peers;
//!   `peers` 0 gives every client an address of its own, never used before.
//!
//! The servers are those of `accept.rs`, from `support/servers.rs`.
//!
//! Run: `bash benches/callgrind.sh` (figures: `benches/README.md`). Without
//! arguments, as under `cargo bench`, this prints how to call it and exits.

mod support;

use std::io::{Read, Write};
use std::net::{self, SocketAddr};
use std::time::Duration;

use futures::Stream;
use support::servers::{self, Hello, Variant, CLIENT_TIMEOUT, MAX_PER_PEER};
use support::workloads;
use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

const USAGE: &str = "usage: callgrind overhead <workload> <repeat>\n       \
                     callgrind fresh <variant> <batches> <size>\n       \
                     callgrind running <variant> <batches> <size> <peers>\n\
                     (run by benches/callgrind.sh)";

fn main() {
    // `cargo bench` passes `--bench`; the workload is in the other arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let number = |i: usize| -> usize {
        let arg = args.get(i).unwrap_or_else(|| panic!("{USAGE}"));
        arg.parse()
            .unwrap_or_else(|_| panic!("{arg:?} is not a whole number\n{USAGE}"))
    };
    match args.first().map(String::as_str) {
        None => println!("{USAGE}"),
        Some("overhead") => {
            let core = Core::new().expect("event loop");
            for _ in 0..number(2) {
                workloads::run(&args[1], 100, &core.handle());
            }
        }
        Some("fresh") => fresh(Variant::named(&args[1]), number(2), batch_size(number(3))),
        Some("running") => running(
            Variant::named(&args[1]),
            number(2),
            batch_size(number(3)),
            match number(4) {
                0 => 0,
                peers => peers.clamp(1, 250),
            },
        ),
        Some(other) => panic!("unknown workload {other:?}\n{USAGE}"),
    }
}

/// `size`, which must fit the backlog that `std::net::TcpListener::bind` asks
/// for (128).
fn batch_size(size: usize) -> usize {
    assert!((1..=128).contains(&size), "a batch of {size}: use 1 to 128");
    size
}

/// A new server for each batch.
fn fresh(variant: Variant, batches: usize, size: usize) {
    let mut core = Core::new().expect("event loop");
    let handle = core.handle();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut served = 0;
    for _ in 0..batches {
        let std_listener = net::TcpListener::bind(any_port).expect("bind 127.0.0.1:0");
        let addr = std_listener.local_addr().unwrap();
        let clients = connect_clients(addr, size, 1, 0);
        let register = |listener| {
            TcpListener::from_listener(listener, &addr, &handle).expect("register the listener")
        };
        served += match variant {
            Variant::RawStd => serve_batch_raw_std(&std_listener, size),
            Variant::RawCore => serve_batch_raw_core(&mut core, register(std_listener), size),
            Variant::TkListen => serve_batch_tk_listen(&mut core, register(std_listener), size),
            Variant::TkListenPerPeer => {
                panic!("tk_listen_per_peer runs in the `running` workload only")
            }
        };
        expect_replies(clients);
    }
    println!(
        "{} served {served} connections in batches of {size}",
        variant.name()
    );
}

#[inline(never)]
fn serve_batch_raw_std(listener: &net::TcpListener, size: usize) -> usize {
    let mut served = 0;
    for _ in 0..size {
        let (mut socket, _) = listener.accept().expect("accept");
        socket.write_all(b"hello\n").expect("write");
        served += 1;
    }
    served
}

#[inline(never)]
fn serve_batch_raw_core(core: &mut Core, listener: TcpListener, size: usize) -> usize {
    serve_one_batch(core, Variant::RawCore, listener, size)
}

#[inline(never)]
fn serve_batch_tk_listen(core: &mut Core, listener: TcpListener, size: usize) -> usize {
    serve_one_batch(core, Variant::TkListen, listener, size)
}

/// A new server of `variant` that accepts `size` connections; returns when
/// they are answered. (Not named `serve_batch_*`: callgrind's
/// `--toggle-collect` would switch counting off on entering it.)
fn serve_one_batch(core: &mut Core, variant: Variant, listener: TcpListener, size: usize) -> usize {
    let hello = Hello::default();
    let connections = listener.incoming().take(size as u64);
    let server = servers::core_server(variant, connections, &core.handle(), hello.clone());
    core.run(server).expect("serve");
    // raw_core's spawned tasks finish on the next turns of the event loop.
    turn_until(core, &hello, size);
    hello.served()
}

/// One server for all batches.
fn running(variant: Variant, batches: usize, size: usize, peers: usize) {
    assert!(variant != Variant::RawStd, "raw_std runs in `fresh` only");
    if variant == Variant::TkListenPerPeer && peers > 0 {
        assert!(
            peers * MAX_PER_PEER >= size,
            "{size} clients from {peers} peer(s) are over the cap of {MAX_PER_PEER} per peer; \
             use at least {} peers",
            size.div_ceil(MAX_PER_PEER)
        );
    }
    let mut core = Core::new().expect("event loop");
    let handle = core.handle();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = TcpListener::bind(&any_port, &handle).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let hello = Hello::default();
    handle.spawn(servers::core_server(
        variant,
        listener.incoming(),
        &handle,
        hello.clone(),
    ));
    for batch in 1..=batches {
        let clients = connect_clients(addr, size, peers, (batch - 1) * size);
        turn_until_served(&mut core, &hello, batch * size);
        expect_replies(clients);
    }
    println!(
        "{} served {} connections in batches of {size}, one server",
        variant.name(),
        hello.served()
    );
}

/// Turns the event loop until `hello` has answered `target` connections.
#[inline(never)]
fn turn_until_served(core: &mut Core, hello: &Hello, target: usize) {
    turn_until(core, hello, target);
}

/// Turns the event loop until `hello` has answered `target` connections (at
/// most 10 000 turns).
fn turn_until(core: &mut Core, hello: &Hello, target: usize) {
    for _ in 0..10_000 {
        if hello.served() >= target {
            return;
        }
        core.turn(Some(Duration::from_millis(100)));
    }
    panic!("served only {} of {target}", hello.served());
}

/// `size` clients connected to `addr`, waiting in its backlog; from `peers`
/// loopback addresses in turn if that is over 1, or if it is 0, each from an
/// address of its own: the `first`-th address after 127.0.0.2 and up.
fn connect_clients(
    addr: SocketAddr,
    size: usize,
    peers: usize,
    first: usize,
) -> Vec<net::TcpStream> {
    (0..size)
        .map(|i| {
            if peers == 1 {
                return net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect");
            }
            let n = if peers == 0 { first + i } else { i % peers };
            support::connect_from_loopback(addr, n, CLIENT_TIMEOUT)
        })
        .collect()
}

/// Reads each client's reply to the end; every one must be `hello\n`.
fn expect_replies(clients: Vec<net::TcpStream>) {
    for mut client in clients {
        let mut reply = Vec::new();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let _ = client.read_to_end(&mut reply);
        assert_eq!(reply, b"hello\n", "a client got no reply");
    }
}
