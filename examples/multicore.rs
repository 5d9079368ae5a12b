//! Using every core: one thread per CPU, each with its own event loop and its
//! own listening socket on the same address (`SO_REUSEPORT`), each running the
//! same `sleep_on_error` + `listen` pipeline.
//!
//! ```sh
//! cargo run --example multicore                          # 127.0.0.1:8080, one thread per CPU
//! cargo run --example multicore -- 127.0.0.1:8080 4 250  # 4 threads, 250 connections each
//! curl --http0.9 http://127.0.0.1:8080/                  # or: nc 127.0.0.1 8080
//! ```
//!
//! The kernel spreads new connections over the sockets (by a hash of the
//! client's address and port), so repeated requests land on different
//! threads; each reply names its thread.
//!
//! The connection limit is **per thread**: each thread runs its own
//! `listen(n)`, so the process serves at most `threads * n` connections at
//! once. A thread that is full leaves the clients the kernel gave to its
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
#[path = "multicore/listener.rs"]
mod listener;

#[cfg(unix)]
mod reuseport {
    use std::env;
    use std::io;
    use std::net::{self, SocketAddr};
    use std::process;
    use std::thread;
    use std::time::Duration;

    use futures::{Future, Stream};
    use tk_listen::ListenExt;
    use tokio_core::net::TcpListener;
    use tokio_core::reactor::Core;

    use crate::listener::reuseport_listener;

    const USAGE: &str = "usage: multicore [ADDR] [THREADS] [MAX_CONNECTIONS_PER_THREAD]\n\
        Defaults: 127.0.0.1:8080, one thread per CPU, 1000 connections per thread.";

    pub(crate) fn main() {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
        let args: Vec<String> = env::args().skip(1).collect();
        if args.iter().any(|a| a == "-h" || a == "--help") {
            println!("{}", USAGE);
            return;
        }
        if args.len() > 3 {
            eprintln!("{}", USAGE);
            process::exit(2);
        }
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        let addr: SocketAddr = parse(args.first(), "127.0.0.1:8080", "address");
        let threads: usize = parse(args.get(1), &cpus.to_string(), "thread count");
        let per_thread: usize = parse(args.get(2), "1000", "connection limit");
        if threads == 0 || per_thread == 0 {
            eprintln!(
                "the thread count and the connection limit must be at least 1\n{}",
                USAGE
            );
            process::exit(2);
        }

        // Bind every socket before starting: a failure is reported at once,
        // and port 0 is resolved by the first socket so all share one port.
        let first = reuseport_listener(&addr).unwrap_or_else(|e| fail(&addr, e));
        let addr = first.local_addr().expect("local address");
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(reuseport_listener(&addr).unwrap_or_else(|e| fail(&addr, e)));
        }
        println!(
            "listening on {} with {} threads, at most {} connections each ({} in all)",
            addr,
            threads,
            per_thread,
            threads * per_thread
        );

        let workers: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(id, socket)| {
                thread::Builder::new()
                    .name(format!("accept-{}", id))
                    .spawn(move || serve(id, socket, per_thread))
                    .expect("cannot start a thread")
            })
            .collect();
        for worker in workers {
            if worker.join().is_err() {
                process::exit(1);
            }
        }
    }

    /// One thread's event loop: the same pipeline as `examples/simple.rs`,
    /// with its own limit.
    fn serve(id: usize, socket: net::TcpListener, per_thread: usize) {
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
            .listen(per_thread);
        // `sleep_on_error` only fails if its timer breaks: report and stop.
        if core.run(server).is_err() {
            log::error!("thread {}: the accept loop failed", id);
        }
    }

    /// A listening socket with `SO_REUSEPORT` set, so that several can bind
    /// the same address.
    fn fail(addr: &SocketAddr, e: io::Error) -> ! {
        eprintln!("cannot listen on {}: {}", addr, e);
        process::exit(1);
    }

    fn parse<T: std::str::FromStr>(arg: Option<&String>, default: &str, what: &str) -> T {
        let text = arg.map(String::as_str).unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            eprintln!("invalid {}: {:?}\n{}", what, text, USAGE);
            process::exit(2);
        })
    }
}
