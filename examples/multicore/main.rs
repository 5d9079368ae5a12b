//! Using every core: one thread per CPU, each with its own event loop and its
//! own listening socket on the same address (`SO_REUSEPORT`), each running the
//! same `sleep_on_error` + `listen` pipeline.
//!
//! ```sh
//! cargo run --example multicore           # 127.0.0.1:8080, one thread per CPU
//! curl --http0.9 http://127.0.0.1:8080/   # or: nc 127.0.0.1 8080
//! ```
//!
//! The kernel spreads new connections over the sockets (by a hash of the
//! client's address and port), so repeated requests land on different
//! threads; each reply names its thread.
//!
//! The connection limit is **per thread**: each thread runs its own
//! `listen(1000)`, so the process serves at most `threads * 1000` connections
//! at once. A thread that is full leaves the clients the kernel gave to its
//! socket waiting in that socket's backlog, even if another thread is idle.
//!
//! `SO_REUSEPORT` is a unix option; on other systems this example only prints
//! a message.

#[cfg(unix)]
fn main() {
    reuseport::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("this example needs SO_REUSEPORT, which only unix systems have");
}

#[cfg(unix)]
mod listener;

#[cfg(unix)]
mod reuseport {
    use std::env;
    use std::net::{self, SocketAddr};
    use std::thread;
    use std::time::Duration;

    use futures::{Future, Stream};
    use tk_listen::ListenExt;
    use tokio_core::net::TcpListener;
    use tokio_core::reactor::Core;

    use crate::listener::reuseport_listener;

    /// The most connections each thread serves at once.
    const PER_THREAD: usize = 1000;

    pub(crate) fn main() {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
        let addr = env::args().nth(1).unwrap_or("127.0.0.1:8080".to_string());
        let addr = addr.parse::<SocketAddr>().unwrap();
        let threads = thread::available_parallelism().map_or(1, |n| n.get());

        // Bind every socket before starting: a failure is reported at once,
        // and port 0 is resolved by the first socket so all share one port.
        let first = reuseport_listener(&addr).unwrap();
        let addr = first.local_addr().unwrap();
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(reuseport_listener(&addr).unwrap());
        }
        println!(
            "listening on {} with {} threads, at most {} connections each ({} in all)",
            addr,
            threads,
            PER_THREAD,
            threads * PER_THREAD
        );

        let workers: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(id, socket)| {
                thread::Builder::new()
                    .name(format!("accept-{}", id))
                    .spawn(move || serve(id, socket))
                    .expect("cannot start a thread")
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    }

    /// One thread's event loop: the same pipeline as `examples/simple.rs`,
    /// with its own limit.
    fn serve(id: usize, socket: net::TcpListener) {
        let mut core = Core::new().expect("cannot create the event loop");
        let handle = core.handle();
        let addr = socket.local_addr().expect("local address");
        let listener =
            TcpListener::from_listener(socket, &addr, &handle).expect("cannot register the socket");
        let reply = format!("hello from thread {}\n", id).into_bytes();
        let server = listener
            .incoming()
            .sleep_on_error(Duration::from_millis(100), &handle)
            .map(move |(socket, peer)| {
                log::debug!("thread {}: accepted {}", id, peer);
                tokio_io::io::write_all(socket, reply.clone())
                    .map(|_| ())
                    .map_err(move |e| log::debug!("{}: write error: {}", peer, e))
            })
            .listen(PER_THREAD);
        // The error is `()`: only a broken event-loop timer produces it.
        core.run(server).unwrap();
    }
}
