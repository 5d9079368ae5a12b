//! `tk_listen::tokio1::BindMany` on real sockets on 127.0.0.1: reloads that
//! add and remove addresses, a busy address retried, fairness between two
//! flooded listeners, a reload while `listen(1)` is full, and the end of the
//! address stream. Every test runs on both runtime flavours.

mod support;
mod tokio1_support;

use std::collections::HashMap;
use std::future::poll_fn;
use std::io::{self, Read};
use std::net::{self, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use futures_core::Stream;
use log::Level;
use tk_listen::tokio1::{BindMany, ListenExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use support::{free_addrs, logs};
use tokio1_support::{
    assert_refused, connect, poll_stream_once, read_reply, CountingNotify, Flavour, FLAVOURS,
    GENEROUS,
};

/// How a [`BindServer`] runs.
#[derive(Clone, Copy)]
struct Options {
    retry_interval: Duration,
    max_connections: usize,
    /// How long each connection waits before it says `hello` (once released).
    hold: Duration,
    /// Connections wait for [`BindServer::release`] before they say `hello`.
    gated: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retry_interval: Duration::from_millis(50),
            max_connections: 1000,
            hold: Duration::ZERO,
            gated: false,
        }
    }
}

/// `BindMany -> sleep_on_error -> map -> listen(n)` on its own thread and
/// runtime. Each connection reports the local address it was accepted on,
/// waits as `Options` say, and sends `hello\n`.
struct BindServer {
    reload: Option<mpsc::UnboundedSender<Vec<SocketAddr>>>,
    accepted: std_mpsc::Receiver<SocketAddr>,
    release: watch::Sender<bool>,
    done: std_mpsc::Receiver<()>,
}

impl BindServer {
    fn start(flavour: Flavour, options: Options) -> BindServer {
        logs::capture();
        let (reload, reloads) = mpsc::unbounded_channel();
        let (accepted_tx, accepted) = std_mpsc::channel();
        let (release, released) = watch::channel(!options.gated);
        let (done_tx, done) = std_mpsc::channel();
        thread::spawn(move || {
            let runtime = flavour.runtime();
            runtime.block_on(async move {
                let mut listeners = BindMany::new(UnboundedReceiverStream::new(reloads));
                listeners.retry_interval(options.retry_interval);
                listeners
                    .sleep_on_error(Duration::from_millis(10))
                    .map(move |(mut socket, _peer)| {
                        let local = socket.local_addr().unwrap();
                        let _ = accepted_tx.send(local);
                        let mut released = released.clone();
                        async move {
                            let _ = released.wait_for(|released| *released).await;
                            tokio::time::sleep(options.hold).await;
                            let _ = socket.write_all(b"hello\n").await;
                        }
                    })
                    .listen(options.max_connections)
                    .await;
            });
            let _ = done_tx.send(());
        });
        BindServer {
            reload: Some(reload),
            accepted,
            release,
            done,
        }
    }

    /// Sends a list; returns the log mark to wait for its effects from.
    fn send(&self, addresses: &[SocketAddr]) -> usize {
        let mark = logs::mark();
        self.reload
            .as_ref()
            .expect("address stream open")
            .send(addresses.to_vec())
            .expect("server running");
        mark
    }

    /// Lets every connection, held or to come, say `hello`.
    fn release(&self) {
        self.release.send_replace(true);
    }

    fn end_address_stream(&mut self) {
        self.reload = None;
    }

    /// Waits until the server future resolved.
    fn wait_done(&self) {
        self.done
            .recv_timeout(GENEROUS)
            .expect("the server did not finish");
    }

    fn next_accepted(&self) -> SocketAddr {
        self.accepted
            .recv_timeout(GENEROUS)
            .expect("no connection accepted")
    }
}

/// Connects, reads the server's reply, and says on which address it was.
fn hello(server: &BindServer, addr: SocketAddr) {
    let reply = read_reply(connect(addr)).expect("served");
    assert_eq!(reply, b"hello\n");
    assert_eq!(server.next_accepted(), addr);
}

#[test]
fn an_added_address_is_served_along_with_the_first() {
    for flavour in FLAVOURS {
        let server = BindServer::start(flavour, Options::default());
        let [first, second] = free_addrs();
        let mark = server.send(&[first]);
        logs::wait_listening(mark, first);
        hello(&server, first);
        let mark = server.send(&[first, second]);
        logs::wait_listening(mark, second);
        hello(&server, second);
        hello(&server, first);
    }
}

#[test]
fn a_removed_address_refuses_new_clients_and_the_others_keep_serving() {
    for flavour in FLAVOURS {
        let server = BindServer::start(flavour, Options::default());
        let [kept, removed] = free_addrs();
        let mark = server.send(&[kept, removed]);
        logs::wait_listening(mark, kept);
        logs::wait_listening(mark, removed);
        hello(&server, removed);
        let mark = server.send(&[kept]);
        logs::wait_logged_since(mark, &format!("stopped listening on {} ", removed));
        assert_refused(removed);
        hello(&server, kept);
    }
}

#[test]
fn a_busy_address_is_retried_until_it_binds() {
    for flavour in FLAVOURS {
        let server = BindServer::start(flavour, Options::default());
        let [busy] = free_addrs();
        let squatter = net::TcpListener::bind(busy).expect("take the address first");
        let mark = server.send(&[busy]);
        logs::wait_logged_since(mark, &format!("cannot listen on {}: ", busy));
        // Retried (every 50 ms) and still failing, logged at `debug`.
        logs::wait_logged_since(mark, &format!("still cannot listen on {}: ", busy));
        drop(squatter);
        logs::wait_logged_since(
            mark,
            &format!("listening on {} (requested {}) after ", busy, busy),
        );
        hello(&server, busy);
        // One `error` for the failure, `debug` for the retries, `info` once
        // bound, as on the futures 0.1 side.
        let levels: Vec<Level> = logs::lines()[mark..]
            .iter()
            .filter(|(_, line)| line.contains(&format!("listen on {}", busy)))
            .map(|(level, _)| *level)
            .collect();
        assert_eq!(levels[0], Level::Error, "{:?}", levels);
        assert_eq!(levels.iter().filter(|l| **l == Level::Error).count(), 1);
        assert!(
            levels[1..].iter().all(|l| *l == Level::Debug),
            "{:?}",
            levels
        );
    }
}

#[test]
fn two_flooded_listeners_each_get_a_fair_share_of_the_accepts() {
    for flavour in FLAVOURS {
        // Few slots, each held a little: the server is the bottleneck, so
        // both backlogs stay full and a listener asked first every time
        // would take every accept.
        let server = BindServer::start(
            flavour,
            Options {
                max_connections: 4,
                hold: Duration::from_millis(5),
                ..Options::default()
            },
        );
        let [first, second] = free_addrs();
        let mark = server.send(&[first, second]);
        logs::wait_listening(mark, first);
        logs::wait_listening(mark, second);

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
        println!("{:?}: accepts: first {}, second {}", flavour, first, second);
        assert!(total >= 40, "too few accepts to judge: {}", total);
        assert!(
            first * 4 >= total && second * 4 >= total,
            "{:?}: unfair split: first {}, second {}",
            flavour,
            first,
            second
        );
    }
}

/// One client of a flood: connects, reads `hello`.
fn greet(addr: SocketAddr) -> io::Result<()> {
    let mut client = net::TcpStream::connect(addr)?;
    client.set_read_timeout(Some(GENEROUS))?;
    let mut reply = Vec::new();
    client.read_to_end(&mut reply)?;
    if reply == b"hello\n" {
        Ok(())
    } else {
        Err(io::Error::other("no hello"))
    }
}

#[test]
fn a_reload_takes_effect_while_the_only_connection_slot_is_taken() {
    for flavour in FLAVOURS {
        let server = BindServer::start(
            flavour,
            Options {
                max_connections: 1,
                gated: true,
                ..Options::default()
            },
        );
        let [removed, added] = free_addrs();
        let mark = server.send(&[removed]);
        logs::wait_listening(mark, removed);
        let held = connect(removed);
        assert_eq!(server.next_accepted(), removed);

        // The only slot is taken: nothing polls the accept side now.
        let reloaded = Instant::now();
        let mark = server.send(&[added]);
        logs::wait_listening(mark, added);
        assert_refused(removed);
        let applied = reloaded.elapsed();
        println!("{:?}: reload applied and checked in {:?}", flavour, applied);
        // The handshake completes in the kernel: the client waits in the
        // backlog of the added address while the held connection goes on.
        let waiting = net::TcpStream::connect_timeout(&added, GENEROUS)
            .expect("the added address completes a handshake");
        assert!(
            server.accepted.try_recv().is_err(),
            "accepted a client while the only slot was taken"
        );
        // Far above the 100 ms the docs promise, for a noisy machine; a
        // reload that waited for the slot would never get here.
        assert!(applied < GENEROUS / 2, "reload applied after {:?}", applied);

        server.release();
        assert_eq!(read_reply(held).expect("held client"), b"hello\n");
        waiting.set_read_timeout(Some(GENEROUS)).unwrap();
        assert_eq!(read_reply(waiting).expect("waiting client"), b"hello\n");
        assert_eq!(server.next_accepted(), added);
    }
}

#[test]
fn the_stream_ends_when_the_address_stream_ends_and_its_listeners_close() {
    for flavour in FLAVOURS {
        let mut server = BindServer::start(
            flavour,
            Options {
                gated: true,
                ..Options::default()
            },
        );
        let [addr] = free_addrs();
        let mark = server.send(&[addr]);
        logs::wait_listening(mark, addr);
        let held = connect(addr);
        assert_eq!(server.next_accepted(), addr);

        let mark = logs::mark();
        server.end_address_stream();
        logs::wait_logged_since(mark, &format!("stopped listening on {} ", addr));
        assert_refused(addr);
        // `listen` still lets the accepted connection finish, then resolves.
        assert!(
            server.done.try_recv().is_err(),
            "ended before its connection"
        );
        server.release();
        assert_eq!(read_reply(held).expect("held client"), b"hello\n");
        server.wait_done();
    }
}

/// A panic of the address stream comes out of `poll_next`, where the code
/// polling the stream can catch it, instead of being lost with the address
/// task and leaving the stream pending for ever; the listeners are closed,
/// and the stream has ended.
#[test]
fn a_panic_of_the_address_stream_comes_out_of_the_streams_poll_next() {
    for flavour in FLAVOURS {
        flavour.runtime().block_on(async {
            let (reload, lists) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
            let addresses = UnboundedReceiverStream::new(lists).map(|list| {
                if list.is_empty() {
                    panic!("the address stream broke");
                }
                list
            });
            let mut listeners = BindMany::new(addresses);
            let [addr] = free_addrs();
            reload.send(vec![addr]).unwrap();
            // Woken by the address task once the list is applied.
            let bound = poll_fn(|cx| {
                let polled = Pin::new(&mut listeners).poll_next(cx);
                assert!(polled.is_pending(), "{:?}: nothing to accept", flavour);
                if listeners.local_addrs().is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            });
            tokio::time::timeout(GENEROUS, bound)
                .await
                .expect("the address is bound");

            reload.send(Vec::new()).unwrap();
            let polled = poll_fn(|cx| {
                let poll_next = || Pin::new(&mut listeners).poll_next(cx);
                match panic::catch_unwind(AssertUnwindSafe(poll_next)) {
                    Ok(Poll::Pending) => Poll::Pending,
                    Ok(Poll::Ready(item)) => Poll::Ready(Ok(item.map(|_| ()))),
                    Err(payload) => Poll::Ready(Err(payload)),
                }
            });
            // The timer is polled first: a stream polled only because the
            // timer woke the task still fails.
            let payload = tokio::select! {
                biased;
                _ = tokio::time::sleep(GENEROUS) => {
                    panic!("{:?}: BindMany hung after the panic", flavour)
                }
                polled = polled => polled.expect_err("poll_next did not panic"),
            };
            assert_eq!(
                payload.downcast_ref::<&str>(),
                Some(&"the address stream broke")
            );
            assert_refused(addr);
            let (_, waker) = CountingNotify::waker();
            let again = poll_stream_once(&mut listeners, &waker);
            assert!(
                matches!(again, Poll::Ready(None)),
                "{:?}: polled again: {:?}",
                flavour,
                again
            );
        });
    }
}

#[test]
fn dropping_the_stream_closes_its_listeners_and_ends_the_address_task() {
    for flavour in FLAVOURS {
        let runtime = flavour.runtime();
        let [addr] = free_addrs();
        let (reload, reloads) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
        reload.send(vec![addr]).unwrap();
        runtime.block_on(async {
            let mut listeners = BindMany::new(UnboundedReceiverStream::new(reloads));
            tokio::time::timeout(GENEROUS, async {
                while listeners.local_addrs().is_empty() {
                    // Polls once (spawning the address task), then yields.
                    let _ = tokio::time::timeout(Duration::from_millis(1), listeners.next()).await;
                }
            })
            .await
            .expect("bound");
            assert_eq!(listeners.local_addrs(), [addr]);
            drop(listeners);
            // The task, aborted, dropped the address stream's receiver.
            tokio::time::timeout(GENEROUS, reload.closed())
                .await
                .expect("the address task ended");
        });
        assert_refused(addr);
    }
}

#[test]
fn port_zero_is_resolved_in_local_addrs_and_duplicates_bound_once() {
    for flavour in FLAVOURS {
        let runtime = flavour.runtime();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let [fixed] = free_addrs();
        let addresses =
            tokio_stream::iter(vec![vec![fixed, any, fixed]]).chain(tokio_stream::pending());
        runtime.block_on(async {
            let mut listeners = BindMany::new(addresses);
            let local = tokio::time::timeout(GENEROUS, async {
                loop {
                    let _ = tokio::time::timeout(Duration::from_millis(1), listeners.next()).await;
                    let local = listeners.local_addrs();
                    if !local.is_empty() {
                        return local;
                    }
                }
            })
            .await
            .expect("bound");
            assert_eq!(local.len(), 2, "{:?}", local);
            assert_eq!(local[0], fixed);
            assert_ne!(local[1].port(), 0);
            assert!(format!("{:?}", listeners).contains("listening on"));
        });
    }
}

#[test]
fn of_several_lists_ready_at_once_only_the_last_is_applied() {
    logs::capture();
    for flavour in FLAVOURS {
        let runtime = flavour.runtime();
        let [skipped, last] = free_addrs();
        let mark = logs::mark();
        let addresses = tokio_stream::iter(vec![vec![skipped], vec![skipped, last], vec![last]])
            .chain(tokio_stream::pending());
        runtime.block_on(async {
            let mut listeners = BindMany::new(addresses);
            let local = tokio::time::timeout(GENEROUS, async {
                loop {
                    let _ = tokio::time::timeout(Duration::from_millis(1), listeners.next()).await;
                    let local = listeners.local_addrs();
                    if !local.is_empty() {
                        return local;
                    }
                }
            })
            .await
            .expect("bound");
            assert_eq!(local, [last]);
        });
        let skipped_lines = logs::lines()[mark..]
            .iter()
            .filter(|(_, line)| line.starts_with(&format!("listening on {} ", skipped)))
            .count();
        assert_eq!(
            skipped_lines, 0,
            "{:?}: bound a list that was replaced",
            flavour
        );
    }
}
