//! `BindMany` on real sockets on 127.0.0.1: reloads, bind retries, the end of
//! the address stream, fairness, and the full `listen` pipeline.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{self, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures::sync::mpsc;
use futures::{future, stream, task, Async, Future, Stream};
use log::Level;
use tk_listen::{BindMany, ListenExt};
use tokio_core::net::TcpStream;
use tokio_core::reactor::{Core, Handle, Timeout};
use tokio_io::AsyncRead;

use support::{
    assert_refused, connect, free_addrs, logs, poll_stream_once, read_reply, spawn,
    wait_until_bound, CountingNotify, GENEROUS,
};

/// The address lists a test sends; `Err(())` makes the address stream fail.
type Reload = mpsc::UnboundedSender<Result<Vec<SocketAddr>, ()>>;

/// How a [`BindServer`] runs.
#[derive(Clone, Copy)]
struct Options {
    retry_interval: Duration,
    max_connections: usize,
    /// How long each connection waits before it says `hello`.
    hold: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retry_interval: Duration::from_millis(100),
            max_connections: 1000,
            hold: Duration::from_millis(0),
        }
    }
}

/// `BindMany -> sleep_on_error -> map -> listen(n)` on its own thread and
/// `Core`. Each connection gets `hello\n` and then has its input echoed until
/// the client closes it. Every change of `local_addrs()` is reported.
struct BindServer {
    reload: Option<Reload>,
    changes: std_mpsc::Receiver<Vec<SocketAddr>>,
    bound: Vec<SocketAddr>,
    done: std_mpsc::Receiver<Result<(), ()>>,
}

impl BindServer {
    fn start(options: Options) -> BindServer {
        let (reload, reloads) = mpsc::unbounded();
        let (changes_tx, changes) = std_mpsc::channel();
        let (done_tx, done) = std_mpsc::channel();
        thread::spawn(move || {
            let mut core = Core::new().expect("event loop");
            let handle = core.handle();
            let addresses = reloads.then(|reload| match reload {
                Ok(Ok(list)) => Ok(list),
                _ => Err(()),
            });
            let mut listeners = BindMany::new(addresses, &handle);
            listeners.retry_interval(options.retry_interval);
            let mut reported = Vec::new();
            let watched = stream::poll_fn(move || {
                let result = listeners.poll();
                let now = listeners.local_addrs();
                if now != reported {
                    reported = now.clone();
                    let _ = changes_tx.send(now);
                }
                result
            });
            let connection_handle = handle.clone();
            let server = watched
                .sleep_on_error(Duration::from_millis(100), &handle)
                .map(move |(socket, _peer)| {
                    hello_then_echo(socket, options.hold, &connection_handle)
                })
                .listen(options.max_connections);
            let _ = done_tx.send(core.run(server));
        });
        BindServer {
            reload: Some(reload),
            changes,
            bound: Vec::new(),
            done,
        }
    }

    fn send(&self, addresses: &[SocketAddr]) {
        self.reload
            .as_ref()
            .expect("address stream already ended")
            .unbounded_send(Ok(addresses.to_vec()))
            .expect("server thread is gone");
    }

    fn fail_address_stream(&self) {
        self.reload
            .as_ref()
            .expect("address stream already ended")
            .unbounded_send(Err(()))
            .expect("server thread is gone");
    }

    fn end_address_stream(&mut self) {
        self.reload = None;
    }

    /// Waits until `local_addrs()` satisfies `wanted`, and returns it.
    fn wait_bound(&mut self, wanted: impl Fn(&[SocketAddr]) -> bool) -> Vec<SocketAddr> {
        let deadline = Instant::now() + GENEROUS;
        while !wanted(&self.bound) {
            let left = deadline.saturating_duration_since(Instant::now());
            self.bound = self.changes.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "listening addresses not as expected in time; last: {:?}",
                    self.bound
                )
            });
        }
        self.bound.clone()
    }

    /// `local_addrs()` as last reported, without waiting.
    fn current(&mut self) -> Vec<SocketAddr> {
        while let Ok(now) = self.changes.try_recv() {
            self.bound = now;
        }
        self.bound.clone()
    }

    /// The result of the server's `listen` future, once it resolved.
    fn wait_done(&self) -> Result<(), ()> {
        self.done
            .recv_timeout(GENEROUS)
            .expect("server did not finish in time")
    }
}

/// A connection that says `hello\n` after `hold`, then echoes until EOF.
fn hello_then_echo(
    socket: TcpStream,
    hold: Duration,
    handle: &Handle,
) -> impl Future<Item = (), Error = ()> {
    Timeout::new(hold, handle)
        .expect("timer")
        .and_then(move |()| tokio_io::io::write_all(socket, b"hello\n"))
        .and_then(|(socket, _)| {
            let (reader, writer) = socket.split();
            tokio_io::io::copy(reader, writer)
        })
        .map(|_| ())
        // Clients of the flood test may reset; that is not this test's business.
        .map_err(|_| ())
}

/// Connects and reads the greeting; the connection stays open for more.
fn greet(addr: SocketAddr) -> io::Result<net::TcpStream> {
    let mut client = connect(addr);
    let mut hello = [0; 6];
    client.read_exact(&mut hello)?;
    assert_eq!(&hello, b"hello\n", "greeting from {}", addr);
    Ok(client)
}

/// Sends a line and checks that it comes back.
fn round_trip(client: &mut net::TcpStream) {
    client
        .write_all(b"ping\n")
        .expect("write to an accepted connection");
    let mut echo = [0; 5];
    client
        .read_exact(&mut echo)
        .expect("echo on an accepted connection");
    assert_eq!(&echo, b"ping\n");
}

/// A port on 127.0.0.1 that the system just chose as free. Something else may
/// take it before the test binds it; `BindMany` then retries, so tests wait
/// for the bind instead of assuming it.
fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The levels of the lines captured after `mark` that name `addr` as a
/// word (an earlier test may have logged about the same port).
fn logged_levels_about(mark: usize, addr: SocketAddr) -> Vec<Level> {
    let addr = addr.to_string();
    let trim: &[char] = &[':', '(', ')', ';', ','];
    logs::lines()
        .split_off(mark)
        .into_iter()
        .filter(|(_, line)| {
            line.split_whitespace()
                .any(|word| word.trim_matches(trim) == addr)
        })
        .map(|(level, _)| level)
        .collect()
}

fn count(levels: &[Level], level: Level) -> usize {
    levels.iter().filter(|l| **l == level).count()
}

#[test]
fn a_removed_address_refuses_new_clients_but_keeps_its_accepted_connections() {
    let mut server = BindServer::start(Options::default());
    let [first, second] = free_addrs();
    server.send(&[first, second]);
    let bound = server.wait_bound(|bound| bound.len() == 2);
    assert_eq!(bound, vec![first, second], "in the order of the list");

    greet(first).expect("first address serves");
    let mut earlier = greet(second).expect("second address serves");

    server.send(&[first]);
    server.wait_bound(|bound| bound == [first]);
    assert_refused(second);
    round_trip(&mut earlier);
    greet(first).expect("first address still serves");
}

#[test]
fn a_port_in_use_is_retried_at_the_interval_and_served_once_freed() {
    logs::capture();
    let mark = logs::mark();
    let interval = Duration::from_millis(100);
    let mut server = BindServer::start(Options {
        retry_interval: interval,
        ..Options::default()
    });
    let blocker = net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let blocked = blocker.local_addr().unwrap();
    let [other] = free_addrs();
    let sent = Instant::now();
    server.send(&[blocked, other]);
    let bound = server.wait_bound(|bound| bound.contains(&other));
    assert_eq!(bound, vec![other]);
    greet(other).expect("the other address serves meanwhile");

    // Let a few retries fail.
    thread::sleep(interval * 6);
    assert_eq!(server.current(), vec![other]);
    greet(other).expect("the other address still serves");

    let levels = logged_levels_about(mark, blocked);
    // Every retry so far happened in this window.
    let window = sent.elapsed();
    assert_eq!(
        count(&levels, Level::Error),
        1,
        "one error for the first failure: {:?}",
        levels
    );
    let retries = count(&levels, Level::Debug) as u32;
    let most = (window.as_secs_f64() / (interval.as_secs_f64() * 0.9)) as u32 + 1;
    assert!(
        (2..=most).contains(&retries),
        "{} failed retries in {:?} at an interval of {:?}",
        retries,
        window,
        interval
    );

    let freed = Instant::now();
    drop(blocker);
    server.wait_bound(|bound| bound.contains(&blocked));
    let took = freed.elapsed();
    assert!(
        took < interval * 20,
        "bound {:?} after the port was freed",
        took
    );
    greet(blocked).expect("the freed address serves");
    let levels = logged_levels_about(mark, blocked);
    assert_eq!(
        count(&levels, Level::Error),
        1,
        "still one error: {:?}",
        levels
    );
    assert_eq!(
        count(&levels, Level::Info),
        1,
        "the bind is logged at info: {:?}",
        levels
    );
}

#[test]
fn duplicates_are_bound_once_and_a_kept_address_is_not_rebound() {
    let mut server = BindServer::start(Options {
        max_connections: 1,
        ..Options::default()
    });
    let [other] = free_addrs();
    // Port 0 would give a new port each time it was bound.
    server.send(&[any_port(), any_port(), other, any_port()]);
    let bound = server.wait_bound(|bound| !bound.is_empty());
    assert_eq!(bound.len(), 2, "duplicates bound once: {:?}", bound);
    let kept = bound[0];
    assert_eq!(bound[1], other);

    // The only connection slot is taken, so the next client waits in the
    // kernel's backlog of the kept listener while the reload happens.
    let holder = greet(kept).expect("kept address serves");
    let mut pending = connect(kept);
    server.send(&[other, any_port(), any_port()]);
    drop(holder);

    let mut hello = [0; 6];
    pending
        .read_exact(&mut hello)
        .expect("the client waiting in the backlog is served");
    assert_eq!(&hello, b"hello\n");
    // Frees the slot, so that the stream is polled and reports its addresses.
    drop(pending);
    let bound = server.wait_bound(|bound| bound.first() == Some(&other));
    assert_eq!(bound, vec![other, kept], "same listening socket, same port");
}

#[test]
fn a_reload_that_swaps_overlapping_addresses_binds_the_new_one_at_once() {
    // A retry could only come after the wait below has given up, so the new
    // address must bind on the first try: after the old one was closed.
    let mut server = BindServer::start(Options {
        retry_interval: GENEROUS * 2,
        ..Options::default()
    });
    let [ipv4] = free_addrs();
    // The same loopback address and port, seen through IPv6: it overlaps.
    let mapped = SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), ipv4.port());
    server.send(&[ipv4]);
    server.wait_bound(|bound| bound == [ipv4]);

    server.send(&[mapped]);
    server.wait_bound(|bound| bound == [mapped]);
    drop(greet(mapped).expect("the new address serves"));
}

/// Ends the address stream with `end`; the stream must end, the listeners
/// close, and a connection accepted earlier must keep working.
fn check_the_address_stream_ending(end: impl FnOnce(&mut BindServer)) {
    let mut server = BindServer::start(Options::default());
    server.send(&[any_port()]);
    let addr = server.wait_bound(|bound| !bound.is_empty())[0];
    let mut earlier = greet(addr).expect("serves");

    end(&mut server);
    server.wait_bound(|bound| bound.is_empty());
    assert_refused(addr);
    round_trip(&mut earlier);
    drop(earlier);
    assert_eq!(server.wait_done(), Ok(()), "listen drains and resolves");
}

#[test]
fn the_end_of_the_address_stream_ends_the_stream_and_closes_the_listeners() {
    check_the_address_stream_ending(|server| server.end_address_stream());
}

#[test]
fn a_failing_address_stream_ends_the_stream_and_closes_the_listeners() {
    check_the_address_stream_ending(|server| server.fail_address_stream());
}

/// A panic of the address stream comes out of `BindMany`'s `poll`, where
/// the code polling it can catch it, not out of the event loop (which runs
/// the address task); the listeners are closed, and the stream has ended.
#[test]
fn a_panic_of_the_address_stream_comes_out_of_the_streams_poll() {
    let mut core = Core::new().expect("event loop");
    let (reload, lists) = mpsc::unbounded::<Vec<SocketAddr>>();
    let addresses = lists.map(|list| {
        if list.is_empty() {
            panic!("the address stream broke");
        }
        list
    });
    let mut listeners = BindMany::new(addresses, &core.handle());
    reload.unbounded_send(vec![any_port()]).unwrap();
    let addr = wait_until_bound(&mut core, &mut listeners, 1)[0];

    reload.unbounded_send(Vec::new()).unwrap();
    let polled = future::poll_fn(|| listeners.poll()).map(|_| ());
    // The timer is polled first: a stream polled only because the timer
    // woke the task still fails.
    let timeout = Timeout::new(GENEROUS, &core.handle()).unwrap();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        core.run(timeout.select2(std::panic::AssertUnwindSafe(polled).catch_unwind()))
    }));
    let payload = match run {
        Err(_) => panic!("the panic came out of the event loop, not out of BindMany's poll"),
        Ok(Err(future::Either::B((payload, _)))) => payload,
        Ok(Ok(future::Either::B((polled, _)))) => {
            panic!("BindMany's poll did not panic: {:?}", polled)
        }
        Ok(_) => panic!("BindMany's poll did not panic in time"),
    };
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the address stream broke")
    );
    assert_refused(addr);
    let (_, notify) = CountingNotify::handle();
    let again = poll_stream_once(&mut spawn(listeners), &notify);
    assert!(
        matches!(again, Ok(Async::Ready(None))),
        "polled again: {:?}",
        again
    );
}

#[test]
fn flooded_listeners_each_get_a_fair_share_of_the_accepts() {
    // Few slots, each held a little: the server is the bottleneck, so both
    // backlogs stay full and a listener polled first every time would take
    // every accept.
    let mut server = BindServer::start(Options {
        max_connections: 4,
        hold: Duration::from_millis(5),
        ..Options::default()
    });
    let [first, second] = free_addrs();
    server.send(&[first, second]);
    server.wait_bound(|bound| bound.len() == 2);

    let flood = Duration::from_secs(2);
    let start = Instant::now();
    let clients: Vec<_> = [first, second]
        .iter()
        .flat_map(|&addr| (0..8).map(move |_| addr))
        .map(|addr| {
            thread::spawn(move || {
                let mut served = 0;
                while start.elapsed() < flood {
                    if greet(addr).is_ok() {
                        served += 1;
                    }
                }
                (addr, served)
            })
        })
        .collect();
    let mut served = HashMap::new();
    for client in clients {
        let (addr, count) = client.join().unwrap();
        *served.entry(addr).or_insert(0) += count;
    }
    let (first, second) = (served[&first], served[&second]);
    let total = first + second;
    println!(
        "accepts: first {}, second {} in {:?}",
        first,
        second,
        start.elapsed()
    );
    assert!(total >= 40, "too few accepts to judge: {}", total);
    assert!(
        first * 4 >= total && second * 4 >= total,
        "unfair split: first {}, second {}",
        first,
        second
    );
}

#[test]
fn the_full_pipeline_serves_concurrent_clients() {
    let mut server = BindServer::start(Options {
        max_connections: 4,
        ..Options::default()
    });
    let [second] = free_addrs();
    server.send(&[any_port(), second]);
    let bound = server.wait_bound(|bound| bound.len() == 2);
    let clients: Vec<_> = (0..20)
        .map(|i| bound[i % 2])
        .map(|addr| thread::spawn(move || greet(addr).map(|_| ())))
        .collect();
    for client in clients {
        client.join().unwrap().expect("every client is served");
    }
    server.end_address_stream();
    assert_eq!(server.wait_done(), Ok(()));
}

#[test]
fn a_flood_of_connections_lets_other_tasks_on_the_event_loop_run() {
    const BACKLOG: usize = 100;
    let mut core = Core::new().unwrap();
    let handle = core.handle();
    // One list, then an address stream that stays open.
    let addresses =
        stream::iter_ok(vec![vec![any_port()]]).chain(future::empty::<_, ()>().into_stream());
    let mut listeners = BindMany::new(addresses, &handle);
    let addr = wait_until_bound(&mut core, &mut listeners, 1)[0];

    // Every client waits in the backlog before the first accept.
    let _clients: Vec<_> = (0..BACKLOG).map(|_| connect(addr)).collect();

    // Another task on the same event loop notes how many connections had
    // been accepted each time it ran (it runs whenever it gets the chance).
    let accepted = Rc::new(Cell::new(0));
    let seen = Rc::new(RefCell::new(vec![0]));
    let (accepted_2, seen_2) = (accepted.clone(), seen.clone());
    let mut turns = 0;
    handle.spawn(future::poll_fn(move || {
        let now = accepted_2.get();
        let mut seen = seen_2.borrow_mut();
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        turns += 1;
        if now >= BACKLOG || turns > 1_000_000 {
            return Ok(Async::Ready(()));
        }
        task::current().notify();
        Ok(Async::NotReady)
    }));
    core.run(listeners.take(BACKLOG as u64).for_each(|_| {
        accepted.set(accepted.get() + 1);
        Ok(())
    }))
    .unwrap();

    let mut seen = seen.borrow_mut();
    seen.push(accepted.get()); // in case the other task didn't run at the end
    let longest = seen.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        longest <= 64,
        "the other task waited for {} accepts: {:?}",
        longest,
        seen
    );
}

#[test]
fn a_reload_takes_effect_while_every_connection_slot_is_taken() {
    logs::capture();
    let [removed, added] = free_addrs();
    let (reload, addresses) = mpsc::unbounded::<Vec<SocketAddr>>();
    let (release, released) = futures::sync::oneshot::channel::<()>();
    let (accepted_tx, accepted) = std_mpsc::channel();
    let mark = logs::mark();
    reload.unbounded_send(vec![removed]).unwrap();
    let server = thread::spawn(move || {
        let mut core = Core::new().expect("event loop");
        let handle = core.handle();
        let released = released.shared();
        let server = BindMany::new(addresses, &handle)
            .sleep_on_error(Duration::from_millis(100), &handle)
            .map(move |(socket, _peer)| {
                accepted_tx.send(()).unwrap();
                released
                    .clone()
                    .then(move |_| tokio_io::io::write_all(socket, b"hello\n"))
                    .map(|_| ())
                    .map_err(|_| ())
            })
            .listen(1);
        core.run(server)
    });
    logs::wait_listening(mark, removed);
    let held = thread::spawn(move || read_reply(connect(removed)));
    accepted
        .recv_timeout(GENEROUS)
        .expect("first client accepted");

    // The only slot is taken: nothing polls the accept side now.
    let mark = logs::mark();
    reload.unbounded_send(vec![added]).unwrap();
    logs::wait_listening(mark, added);
    assert_refused(removed);
    // The handshake completes in the kernel: the client waits in the backlog.
    let waiting = connect(added);
    assert!(
        accepted.try_recv().is_err(),
        "accepted a client while every slot was taken"
    );

    release.send(()).unwrap();
    assert_eq!(held.join().unwrap().expect("held client"), b"hello\n");
    assert_eq!(read_reply(waiting).expect("waiting client"), b"hello\n");
    drop(reload);
    assert_eq!(server.join().unwrap(), Ok(()));
}
