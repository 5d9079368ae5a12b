//! The cost per accepted connection of `BindMany` against the plain accept
//! stream of the same stack, for `benches/callgrind_bind_many.sh`
//! (instruction counts under callgrind; figures in `benches/README.md`).
//!
//! `bind_many <variant> <batches>`: one running server of `variant`
//! (`core_incoming`, `core_bind_many`, `tokio1_incoming`,
//! `tokio1_bind_many`) on 127.0.0.1; `batches` times, 100 clients connect
//! and wait in the backlog, then `serve_batch_core` or `serve_batch_tokio1`
//! accepts the 100 connections and drops them.

use std::net::{self, SocketAddr};
use std::process;

use futures::{future, stream, Future, Stream};
use tokio_core::reactor::Core;

const BATCH: usize = 100;
const USAGE: &str =
    "usage: bind_many core_incoming|core_bind_many|tokio1_incoming|tokio1_bind_many BATCHES";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batches: usize = match args.get(1).map(|n| n.parse()) {
        Some(Ok(n)) => n,
        _ => usage(),
    };
    match args[0].as_str() {
        "core_incoming" => core_incoming(batches),
        "core_bind_many" => core_bind_many(batches),
        "tokio1_incoming" => tokio1_incoming(batches),
        "tokio1_bind_many" => tokio1_bind_many(batches),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("{}", USAGE);
    process::exit(2);
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `batches` batches of clients on `addr`, each served by `serve`.
fn run_batches(addr: SocketAddr, batches: usize, mut serve: impl FnMut()) {
    for _ in 0..batches {
        let clients: Vec<_> = (0..BATCH)
            .map(|_| net::TcpStream::connect(addr).expect("connect"))
            .collect();
        serve();
        drop(clients);
    }
}

fn core_incoming(batches: usize) {
    let mut core = Core::new().unwrap();
    let listener = tokio_core::net::TcpListener::bind(&any_port(), &core.handle()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = listener.incoming();
    run_batches(addr, batches, || serve_batch_core(&mut core, &mut incoming));
}

#[inline(never)]
fn serve_batch_core<S>(core: &mut Core, incoming: &mut S)
where
    S: Stream<Error = std::io::Error>,
{
    core.run(incoming.by_ref().take(BATCH as u64).for_each(|_| Ok(())))
        .unwrap();
}

fn core_bind_many(batches: usize) {
    let mut core = Core::new().unwrap();
    let addresses =
        stream::iter_ok::<_, ()>(vec![vec![any_port()]]).chain(future::empty().into_stream());
    let mut listeners = tk_listen::BindMany::new(addresses, &core.handle());
    let addr = core
        .run(future::poll_fn(|| {
            assert!(listeners.poll().unwrap().is_not_ready());
            Ok::<_, ()>(match listeners.local_addrs().first() {
                Some(&addr) => futures::Async::Ready(addr),
                None => futures::Async::NotReady,
            })
        }))
        .unwrap();
    run_batches(addr, batches, || {
        serve_batch_core(&mut core, &mut listeners)
    });
}

fn tokio1_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tokio1_incoming(batches: usize) {
    let runtime = tokio1_runtime();
    let listener = {
        let _entered = runtime.enter();
        tk_listen::tokio1::bind(any_port()).unwrap()
    };
    let addr = listener.local_addr().unwrap();
    let mut incoming = tk_listen::tokio1::incoming(listener);
    run_batches(addr, batches, || {
        serve_batch_tokio1(&runtime, &mut incoming)
    });
}

#[inline(never)]
fn serve_batch_tokio1<S>(runtime: &tokio::runtime::Runtime, incoming: &mut S)
where
    S: futures_core::Stream<Item = std::io::Result<(tokio::net::TcpStream, SocketAddr)>> + Unpin,
{
    use tokio_stream::StreamExt;
    runtime.block_on(async {
        for _ in 0..BATCH {
            incoming.next().await.unwrap().unwrap();
        }
    });
}

fn tokio1_bind_many(batches: usize) {
    use tokio_stream::StreamExt;
    let runtime = tokio1_runtime();
    let addresses = tokio_stream::iter(vec![vec![any_port()]]).chain(tokio_stream::pending());
    let mut listeners = tk_listen::tokio1::BindMany::new(addresses);
    let addr = runtime.block_on(async {
        loop {
            let polled =
                tokio::time::timeout(std::time::Duration::from_millis(1), listeners.next());
            assert!(polled.await.is_err(), "no client yet");
            if let Some(&addr) = listeners.local_addrs().first() {
                return addr;
            }
        }
    });
    run_batches(addr, batches, || {
        serve_batch_tokio1(&runtime, &mut listeners)
    });
}
