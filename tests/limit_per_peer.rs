//! `limit_per_peer(n)`: the cap per peer, releasing on drop, errors, the
//! poll budget and the connection wrapper. Mock accept streams polled by
//! hand, so every step is deterministic; `tests/limit_per_peer_tcp.rs` runs
//! it on real sockets.

mod support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;

use futures::executor::Spawn;
use futures::{Async, Future, Poll, Stream};
use proptest::prelude::*;
use tk_listen::{LimitPerPeer, ListenExt, PeerConnection};

use support::{poll_stream_once, spawn, CountingNotify, GENEROUS};

/// A socket stand-in that records when it is closed (dropped).
#[derive(Debug)]
struct Socket {
    id: usize,
    closed: Arc<Mutex<Vec<usize>>>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.closed.lock().unwrap().push(self.id);
    }
}

/// What the mock listener will return, in order; `NotReady` when empty,
/// the end of the stream once `ended` is set and it is empty.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<Result<(Socket, SocketAddr), &'static str>>,
    ended: bool,
    next_id: usize,
    closed: Arc<Mutex<Vec<usize>>>,
}

#[derive(Clone, Default)]
struct Listener(Rc<RefCell<Backlog>>);

impl Listener {
    /// A client from `addr` waits to be accepted; returns its socket's id.
    fn connect(&self, addr: &str) -> usize {
        self.connect_from(addr.parse().expect("a socket address"))
    }

    /// The same from an address already parsed.
    fn connect_from(&self, addr: SocketAddr) -> usize {
        let mut backlog = self.0.borrow_mut();
        let id = backlog.next_id;
        backlog.next_id += 1;
        let socket = Socket {
            id,
            closed: backlog.closed.clone(),
        };
        backlog.queue.push_back(Ok((socket, addr)));
        id
    }

    /// How many clients connected so far.
    fn connected(&self) -> usize {
        self.0.borrow().next_id
    }

    fn fail(&self, error: &'static str) {
        self.0.borrow_mut().queue.push_back(Err(error));
    }

    fn end(&self) {
        self.0.borrow_mut().ended = true;
    }

    /// Ids of the sockets closed so far, in order.
    fn closed(&self) -> Vec<usize> {
        self.0.borrow().closed.lock().unwrap().clone()
    }

    fn waiting(&self) -> usize {
        self.0.borrow().queue.len()
    }
}

impl Stream for Listener {
    type Item = (Socket, SocketAddr);
    type Error = &'static str;

    fn poll(&mut self) -> Poll<Option<(Socket, SocketAddr)>, &'static str> {
        let mut backlog = self.0.borrow_mut();
        match backlog.queue.pop_front() {
            Some(Ok(accepted)) => Ok(Async::Ready(Some(accepted))),
            Some(Err(e)) => Err(e),
            None if backlog.ended => Ok(Async::Ready(None)),
            None => Ok(Async::NotReady),
        }
    }
}

type Accepted = (PeerConnection<Socket>, SocketAddr);

/// Polls once; the connection let through, if any.
fn next(limited: &mut Spawn<LimitPerPeer<Listener>>) -> Option<Accepted> {
    let (_, notify) = CountingNotify::handle();
    match poll_stream_once(limited, &notify) {
        Ok(Async::Ready(Some(accepted))) => Some(accepted),
        Ok(Async::NotReady) => None,
        other => panic!("unexpected poll result {:?}", other.map(|_| ())),
    }
}

/// Polls until the listener's backlog is empty; the connections let through.
fn drain(limited: &mut Spawn<LimitPerPeer<Listener>>, listener: &Listener) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    for _ in 0..1000 {
        if listener.waiting() == 0 {
            return accepted;
        }
        accepted.extend(next(limited));
    }
    panic!("the backlog did not drain");
}

fn ids(accepted: &[Accepted]) -> Vec<usize> {
    accepted.iter().map(|(c, _)| c.id).collect()
}

#[test]
fn a_peer_over_its_cap_has_its_connection_closed_at_once() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(2);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    let a = ["192.0.2.1:1000", "192.0.2.1:1001", "192.0.2.1:1002"].map(|a| listener.connect(a));
    let held = drain(&mut limited, &listener);
    assert_eq!(ids(&held), [a[0], a[1]]);
    assert_eq!(listener.closed(), [a[2]], "the third is closed, not held");
    assert_eq!(
        held[0].1,
        "192.0.2.1:1000".parse().unwrap(),
        "the address is passed on"
    );
    assert_eq!(
        (
            stats.accepted(),
            stats.rejected(),
            stats.connections(),
            stats.peers()
        ),
        (2, 1, 2, 1)
    );
}

#[test]
fn other_peers_are_served_while_one_is_at_its_cap() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(1));
    let a1 = listener.connect("192.0.2.1:1000");
    let a2 = listener.connect("192.0.2.1:1001");
    let b1 = listener.connect("192.0.2.2:1000");
    let a3 = listener.connect("192.0.2.1:1002");
    let c1 = listener.connect("[2001:db8::1]:1000");
    let held = drain(&mut limited, &listener);
    assert_eq!(ids(&held), [a1, b1, c1]);
    assert_eq!(listener.closed(), [a2, a3]);
}

#[test]
fn dropping_a_connection_lets_its_peer_connect_again() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(2);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    for port in 0..3 {
        listener.connect(&format!("192.0.2.1:{}", 1000 + port));
    }
    let mut held = drain(&mut limited, &listener);
    assert_eq!((held.len(), stats.rejected()), (2, 1));

    drop(held.remove(0));
    assert_eq!(stats.connections(), 1);
    let again = listener.connect("192.0.2.1:2000");
    held.extend(drain(&mut limited, &listener));
    assert_eq!(ids(&held)[1], again, "the slot was free again");
    let over = listener.connect("192.0.2.1:2001");
    assert!(drain(&mut limited, &listener).is_empty());
    assert_eq!(listener.closed().last(), Some(&over));
    assert_eq!((stats.accepted(), stats.rejected()), (3, 2));
}

#[test]
fn a_peer_no_longer_counts_once_its_last_connection_is_dropped() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(3);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    listener.connect("192.0.2.1:1000");
    listener.connect("192.0.2.1:1001");
    listener.connect("192.0.2.2:1000");
    let mut held = drain(&mut limited, &listener);
    let a = held[0].0.peer();
    assert_eq!((stats.peers(), stats.connections_of(a)), (2, 2));

    drop(held.remove(0));
    assert_eq!((stats.peers(), stats.connections_of(a)), (2, 1));
    drop(held.remove(0));
    assert_eq!((stats.peers(), stats.connections_of(a)), (1, 0));
    drop(held);
    assert_eq!((stats.peers(), stats.connections()), (0, 0));
}

#[test]
fn the_addresses_of_one_ipv6_64_share_one_cap() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(2));
    let a1 = listener.connect("[2001:db8:1:2::1]:1000");
    let a2 = listener.connect("[2001:db8:1:2:aaaa::7]:1000");
    let a3 = listener.connect("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1000");
    let b1 = listener.connect("[2001:db8:1:3::1]:1000");
    let held = drain(&mut limited, &listener);
    assert_eq!(ids(&held), [a1, a2, b1]);
    assert_eq!(listener.closed(), [a3]);
}

#[test]
fn an_ipv4_mapped_address_shares_the_cap_of_the_ipv4_address() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(1));
    let a1 = listener.connect("192.0.2.1:1000");
    let a2 = listener.connect("[::ffff:192.0.2.1]:1000");
    let held = drain(&mut limited, &listener);
    assert_eq!(ids(&held), [a1]);
    assert_eq!(listener.closed(), [a2]);
}

#[test]
fn custom_prefixes_apply_to_the_cap() {
    let listener = Listener::default();
    let mut limited = spawn(
        listener
            .clone()
            .limit_per_peer(1)
            .ipv4_prefix(24)
            .ipv6_prefix(128),
    );
    let a1 = listener.connect("10.1.2.3:1000");
    let a2 = listener.connect("10.1.2.4:1000");
    let b1 = listener.connect("[2001:db8::1]:1000");
    let b2 = listener.connect("[2001:db8::2]:1000");
    let held = drain(&mut limited, &listener);
    assert_eq!(ids(&held), [a1, b1, b2]);
    assert_eq!(listener.closed(), [a2]);
}

#[test]
fn errors_of_the_inner_stream_pass_through_unchanged() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(1));
    let (_, notify) = CountingNotify::handle();
    listener.fail("EMFILE");
    let a1 = listener.connect("192.0.2.1:1000");
    assert_eq!(
        poll_stream_once(&mut limited, &notify).map(|_| ()),
        Err("EMFILE")
    );
    let held = next(&mut limited).expect("the stream carries on after an error");
    assert_eq!(held.0.id, a1);
}

#[test]
fn an_error_after_a_rejection_is_returned_in_the_same_poll() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(1));
    let (_, notify) = CountingNotify::handle();
    listener.connect("192.0.2.1:1000");
    let _held = next(&mut limited).unwrap();
    listener.connect("192.0.2.1:1001");
    listener.fail("ECONNABORTED");
    assert_eq!(
        poll_stream_once(&mut limited, &notify).map(|_| ()),
        Err("ECONNABORTED")
    );
}

#[test]
fn the_stream_ends_when_the_inner_stream_ends() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(1));
    let (_, notify) = CountingNotify::handle();
    listener.connect("192.0.2.1:1000");
    listener.connect("192.0.2.1:1001");
    listener.end();
    let held = next(&mut limited).unwrap();
    assert!(matches!(
        poll_stream_once(&mut limited, &notify),
        Ok(Async::Ready(None))
    ));
    assert_eq!(listener.closed(), [1]);
    drop(held);
}

#[test]
fn a_flood_from_one_peer_yields_to_other_tasks_after_64_rejections() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(1);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    let (woken, notify) = CountingNotify::handle();
    for port in 0..200 {
        listener.connect(&format!("192.0.2.1:{}", 1000 + port));
    }
    let _held = next(&mut limited).unwrap();
    let polled = poll_stream_once(&mut limited, &notify);
    assert!(matches!(polled, Ok(Async::NotReady)));
    assert_eq!(stats.rejected(), 64, "one poll closes at most 64");
    assert_eq!(woken.count(), 1, "the task asks to be polled again");
    assert_eq!(listener.waiting(), 199 - 64);
    let polled = poll_stream_once(&mut limited, &notify);
    assert!(matches!(polled, Ok(Async::NotReady)));
    assert_eq!((stats.rejected(), woken.count()), (128, 2));
}

#[test]
fn a_connection_dropped_on_another_thread_releases_its_slot() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(1);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    listener.connect("192.0.2.1:1000");
    let (connection, _) = next(&mut limited).unwrap();
    thread::spawn(move || drop(connection)).join().unwrap();
    assert_eq!((stats.connections(), stats.peers()), (0, 0));
    listener.connect("192.0.2.1:1001");
    assert!(next(&mut limited).is_some());
}

#[test]
fn thousands_of_peers_released_on_four_threads_leave_no_peer_counted() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(2);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    // 3000 peers (enough for the table to grow), two connections each.
    let peer = |n: usize| format!("[2001:db8:{:x}:{:x}::1]", n / 1000, n % 1000);
    for n in 0..3000 {
        listener.connect(&format!("{}:1", peer(n)));
        listener.connect(&format!("{}:2", peer(n)));
    }
    let held: Vec<_> = (0..6000).map_while(|_| next(&mut limited)).collect();
    assert_eq!((held.len(), stats.peers()), (6000, 3000));
    let (first, second): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, a)| a.port() == 1);
    let mut shares: Vec<Vec<Accepted>> = (0..4).map(|_| Vec::new()).collect();
    for (i, accepted) in first.into_iter().enumerate() {
        shares[i % 4].push(accepted);
    }
    let threads: Vec<_> = shares
        .into_iter()
        .map(|share| thread::spawn(move || drop(share)))
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!((stats.connections(), stats.peers()), (3000, 3000));
    for (connection, _) in second.iter().step_by(97) {
        assert_eq!(stats.connections_of(connection.peer()), 1);
    }
    drop(second);
    assert_eq!((stats.connections(), stats.peers()), (0, 0));
    assert_eq!(stats.connections_of("2001:db8:0:1::".parse().unwrap()), 0);
    listener.connect(&format!("{}:3", peer(1)));
    listener.connect(&format!("{}:4", peer(1)));
    listener.connect(&format!("{}:5", peer(1)));
    assert_eq!(drain(&mut limited, &listener).len(), 2);
}

/// The cap of the stress test below, and its new peers: enough for its
/// table (2048 or 4096 buckets, with some `HELD_FOR` peers holding
/// connections) to be rebuilt more than a dozen times, each rebuild setting
/// idle entries aside for the next new peers to take over under their own
/// keys.
const STRESS_CAP: usize = 2;
const NEW_PEERS: usize = 24_000;
/// How many new peers later the stream thread hands over a peer's last
/// connection: it holds one connection of this many peers across rebuilds.
const HELD_FOR: usize = 300;
/// How many new peers later a peer comes back once more, long gone by then.
const GONE_FOR: usize = 5_000;
/// Threads dropping the connections let through.
const DROPPERS: usize = 3;
/// More than the stress test ever offers (each peer offers up to
/// `STRESS_CAP + 1` connections three times), to bound the droppers' loops.
const OFFERS_AT_MOST: usize = 3 * NEW_PEERS * (STRESS_CAP + 1) + 100;

/// The address of the `n`th peer of the stress test with `host` in the
/// bits beyond its prefix (the port for IPv4), and the peer it counts as:
/// even ones are IPv4 addresses in 10.0.0.0/8, odd ones IPv6 /64s.
fn stress_peer(n: usize, host: u16) -> (SocketAddr, IpAddr) {
    assert!(n < 1 << 24, "peer {n} doesn't fit in 10.0.0.0/8");
    if n.is_multiple_of(2) {
        let ip = Ipv4Addr::from(0x0a00_0000 | n as u32);
        (SocketAddr::from((ip, 1000 + host)), IpAddr::V4(ip))
    } else {
        let (high, low) = ((n >> 16) as u16, n as u16);
        let ip = Ipv6Addr::new(0x2001, 0xdb8, high, low, host, 0, 0, 1);
        let peer = Ipv6Addr::new(0x2001, 0xdb8, high, low, 0, 0, 0, 0);
        (SocketAddr::from((ip, 1000)), IpAddr::V6(peer))
    }
}

/// Offers connections from the `n`th stress peer one at a time until one is
/// closed over the cap; the ones let through, held. Fails if more than the
/// cap are let through.
fn offer_until_closed(
    limited: &mut Spawn<LimitPerPeer<Listener>>,
    listener: &Listener,
    n: usize,
    round: u16,
) -> Vec<Accepted> {
    let mut held = Vec::new();
    for offer in 0..=STRESS_CAP as u16 {
        let (addr, peer) = stress_peer(n, round * 8 + offer);
        let id = listener.connect_from(addr);
        match next(limited) {
            Some(accepted) => {
                assert_eq!(accepted.0.id, id, "the connection just offered");
                held.push(accepted);
            }
            None => return held,
        }
        assert!(
            held.len() <= STRESS_CAP,
            "{} connections of {peer} held at once, over the cap of {STRESS_CAP}",
            held.len()
        );
    }
    unreachable!("the loop returns or fails by the last offer")
}

/// Threads that check each connection handed to them still counts against
/// its peer, then drop it.
struct Droppers {
    senders: Vec<mpsc::Sender<(Accepted, IpAddr)>>,
    threads: Vec<thread::JoinHandle<()>>,
    done: mpsc::Receiver<Result<usize, String>>,
    turn: usize,
}

impl Droppers {
    fn start() -> Droppers {
        let (done_tx, done) = mpsc::channel();
        let (senders, threads) = (0..DROPPERS)
            .map(|_| {
                let (sender, connections) = mpsc::channel::<(Accepted, IpAddr)>();
                let done = done_tx.clone();
                let thread = thread::spawn(move || {
                    let _ = done.send(drop_all(connections));
                });
                (sender, thread)
            })
            .unzip();
        Droppers {
            senders,
            threads,
            done,
            turn: 0,
        }
    }

    /// Hands `accepted`, which counts against `peer`, to the next thread.
    fn hand_over(&mut self, accepted: Accepted, peer: IpAddr) {
        self.senders[self.turn % DROPPERS]
            .send((accepted, peer))
            .expect("a dropping thread stopped early");
        self.turn += 1;
    }

    /// Waits for the threads to drop all they were handed; how many that was,
    /// or the first connection that counted against another peer.
    fn finish(self) -> Result<usize, String> {
        drop(self.senders);
        let mut dropped = 0;
        let mut first_wrong = None;
        for _ in 0..DROPPERS {
            match self.done.recv_timeout(GENEROUS) {
                Ok(Ok(n)) => dropped += n,
                Ok(Err(wrong)) => first_wrong = first_wrong.or(Some(wrong)),
                Err(_) => panic!("a dropping thread did not finish in time"),
            }
        }
        for thread in self.threads {
            thread.join().expect("a dropping thread panicked");
        }
        first_wrong.map_or(Ok(dropped), Err)
    }
}

/// A dropping thread: drops every connection it receives until the channel
/// is closed, after checking it still counts against the peer it came from.
fn drop_all(connections: mpsc::Receiver<(Accepted, IpAddr)>) -> Result<usize, String> {
    let mut first_wrong = None;
    for dropped in 0..=OFFERS_AT_MOST {
        let ((connection, addr), peer) = match connections.recv_timeout(GENEROUS) {
            Ok(received) => received,
            Err(RecvTimeoutError::Disconnected) => {
                return first_wrong.map_or(Ok(dropped), Err);
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("nothing received in {GENEROUS:?}"));
            }
        };
        // Dropped in any case, for the stream thread to carry on.
        if connection.peer() != peer && first_wrong.is_none() {
            first_wrong = Some(format!(
                "the connection from {addr} counts against {}, not {peer}",
                connection.peer()
            ));
        }
        drop(connection);
    }
    Err(format!("more than {OFFERS_AT_MOST} connections received"))
}

#[test]
fn tens_of_thousands_of_peers_never_exceed_their_cap_while_three_threads_drop_their_connections() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(STRESS_CAP);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    let mut droppers = Droppers::start();
    let mut held = VecDeque::with_capacity(HELD_FOR + 1);
    for n in 0..NEW_PEERS {
        // A new peer: its first connections are let through, the next is
        // closed while the stream thread holds them.
        let (_, peer) = stress_peer(n, 0);
        let mut new = offer_until_closed(&mut limited, &listener, n, 0);
        assert_eq!(new.len(), STRESS_CAP, "a new peer {peer} is let through");
        assert_eq!(stats.connections_of(peer), STRESS_CAP);
        held.push_back((new.pop().unwrap(), peer));
        for accepted in new {
            droppers.hand_over(accepted, peer);
        }

        // A peer that held one connection across rebuilds still counts it,
        // while the threads drop its others or not yet.
        if held.len() > HELD_FOR {
            let (accepted, peer) = held.pop_front().unwrap();
            assert_eq!(accepted.0.peer(), peer, "a held connection keeps its peer");
            let back = offer_until_closed(&mut limited, &listener, n - HELD_FOR, 1);
            assert!(
                back.len() < STRESS_CAP,
                "{peer} holds one connection and was let through {} more",
                back.len()
            );
            droppers.hand_over(accepted, peer);
            for accepted in back {
                droppers.hand_over(accepted, peer);
            }
        }

        // A peer long gone (its entry idle, a spare or another peer's by
        // now) comes back.
        if n >= GONE_FOR && n.is_multiple_of(7) {
            let (_, peer) = stress_peer(n - GONE_FOR, 0);
            for accepted in offer_until_closed(&mut limited, &listener, n - GONE_FOR, 2) {
                droppers.hand_over(accepted, peer);
            }
        }
    }
    for (accepted, peer) in held {
        droppers.hand_over(accepted, peer);
    }
    let dropped = droppers.finish().expect("every connection kept its peer");

    assert_eq!((stats.peers(), stats.connections()), (0, 0));
    assert_eq!(stats.accepted(), dropped as u64);
    let offered = listener.connected();
    assert!(offered > NEW_PEERS * (STRESS_CAP + 1), "{offered} offered");
    assert_eq!(stats.accepted() + stats.rejected(), offered as u64);
    assert_eq!(listener.closed().len(), offered, "every socket closed once");
    // The first peer comes back to a table that went through it all.
    let again = offer_until_closed(&mut limited, &listener, 0, 3);
    assert_eq!(again.len(), STRESS_CAP);
}

#[test]
fn into_inner_releases_the_slot_and_keeps_the_socket_open() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(1);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    listener.connect("192.0.2.1:1000");
    let (connection, _) = next(&mut limited).unwrap();
    let socket = connection.into_inner();
    assert_eq!((stats.connections(), stats.peers()), (0, 0));
    assert!(listener.closed().is_empty());
    drop(socket);
    assert_eq!(listener.closed(), [0]);
}

// 64-bit only: on 32 bits the slot is a 4-byte pointer.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_peer_connection_is_8_bytes_larger_than_its_socket() {
    use std::mem::size_of;
    assert_eq!(size_of::<PeerConnection<()>>(), 8);
    assert_eq!(
        size_of::<PeerConnection<[u64; 6]>>(),
        size_of::<[u64; 6]>() + 8
    );
    assert_eq!(size_of::<PeerConnection<Socket>>(), size_of::<Socket>() + 8);
    assert_eq!(
        size_of::<PeerConnection<tokio_core::net::TcpStream>>(),
        size_of::<tokio_core::net::TcpStream>() + 8
    );
    assert_eq!(
        size_of::<Option<PeerConnection<[u64; 6]>>>(),
        size_of::<[u64; 6]>() + 8,
        "the slot's pointer is never null, so an `Option` costs nothing"
    );
}

#[test]
#[should_panic(expected = "limit_per_peer(0) would close every connection")]
fn a_cap_of_zero_panics_at_once() {
    let _ = Listener::default().limit_per_peer(0);
}

#[test]
fn a_peer_connection_reads_and_writes_like_its_socket() {
    let client: SocketAddr = "192.0.2.1:1000".parse().unwrap();
    let socket = Cursor::new(b"GET / HTTP/1.0\r\n\r\n".to_vec());
    let accepts = futures::stream::iter_ok::<_, ()>(vec![(socket, client)]);
    let limited = accepts.limit_per_peer(1);
    let stats = limited.stats();
    let (connection, _) = limited.wait().next().unwrap().unwrap();

    let (connection, line) = tokio_io::io::read_until(connection, b'\n', Vec::new())
        .wait()
        .unwrap();
    assert_eq!(line, b"GET / HTTP/1.0\r\n");
    let (mut connection, _) = tokio_io::io::write_all(connection, b"200").wait().unwrap();
    assert!(matches!(
        tokio_io::AsyncWrite::shutdown(&mut connection),
        Ok(Async::Ready(()))
    ));
    let (reader, writer) = tokio_io::AsyncRead::split(connection);
    assert_eq!(stats.connections(), 1, "both halves hold the slot");
    drop(reader);
    drop(writer);
    assert_eq!(stats.connections(), 0);
}

/// A socket stand-in that records which of its methods are called, so that
/// a call a wrapper doesn't forward (and leaves to the trait's default,
/// which calls another method) shows.
#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<&'static str>,
}

impl Recorder {
    fn record(&mut self, call: &'static str) -> usize {
        self.calls.push(call);
        1
    }
}

impl std::io::Read for Recorder {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.record("read"))
    }
}

impl std::io::Write for Recorder {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Ok(self.record("write"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.record("flush");
        Ok(())
    }
}

impl tokio_io::AsyncRead for Recorder {
    fn poll_read(&mut self, _: &mut [u8]) -> Poll<usize, std::io::Error> {
        Ok(Async::Ready(self.record("poll_read")))
    }
}

impl tokio_io::AsyncWrite for Recorder {
    fn poll_write(&mut self, _: &[u8]) -> Poll<usize, std::io::Error> {
        Ok(Async::Ready(self.record("poll_write")))
    }

    fn poll_flush(&mut self) -> Poll<(), std::io::Error> {
        self.record("poll_flush");
        Ok(Async::Ready(()))
    }

    fn shutdown(&mut self) -> Poll<(), std::io::Error> {
        self.record("shutdown");
        Ok(Async::Ready(()))
    }
}

#[test]
fn a_peer_connection_forwards_every_io_call_to_its_socket() {
    use std::io::{Read, Write};
    use tokio_io::{AsyncRead, AsyncWrite};

    let client: SocketAddr = "192.0.2.1:1000".parse().unwrap();
    let accepts = futures::stream::iter_ok::<_, ()>(vec![(Recorder::default(), client)]);
    let (mut connection, _) = accepts.limit_per_peer(1).wait().next().unwrap().unwrap();
    let mut buf = [0; 4];
    assert_eq!(connection.read(&mut buf).unwrap(), 1);
    assert_eq!(connection.write(b"x").unwrap(), 1);
    connection.flush().unwrap();
    assert_eq!(connection.poll_read(&mut buf).unwrap(), Async::Ready(1));
    assert_eq!(connection.poll_write(b"x").unwrap(), Async::Ready(1));
    assert_eq!(connection.poll_flush().unwrap(), Async::Ready(()));
    assert_eq!(connection.shutdown().unwrap(), Async::Ready(()));
    assert_eq!(
        connection.calls,
        [
            "read",
            "write",
            "flush",
            "poll_read",
            "poll_write",
            "poll_flush",
            "shutdown"
        ]
    );
}

#[test]
fn a_connection_from_an_ipv4_mapped_address_counts_against_the_ipv4_peer() {
    let listener = Listener::default();
    let mut limited = spawn(listener.clone().limit_per_peer(1));
    listener.connect("[::ffff:192.0.2.1]:1000");
    let held = drain(&mut limited, &listener);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].0.peer(), IpAddr::from([192, 0, 2, 1]));
}

#[test]
fn the_debug_output_names_the_peer_and_the_counters() {
    let listener = Listener::default();
    let limited = listener.clone().limit_per_peer(1);
    let stats = limited.stats();
    let mut limited = spawn(limited);
    listener.connect("[2001:db8::5]:1000");
    let (connection, _) = next(&mut limited).unwrap();
    let debug = format!("{:?}", connection);
    assert!(debug.contains("peer: 2001:db8::"), "{debug}");
    let debug = format!("{:?}", stats);
    assert!(
        debug.contains("peers: 1") && debug.contains("rejected: 0"),
        "{debug}"
    );
}

/// The peers of the property test, and the peer each one counts as, worked
/// out by hand: the /64 of an IPv6 address, the IPv4 address of a mapped one.
const PEERS: [(&str, usize); 8] = [
    ("10.0.0.1", 0),
    ("10.0.0.2", 1),
    ("[::ffff:10.0.0.1]", 0),
    ("[2001:db8::1]", 2),
    ("[2001:db8::ffff:1]", 2),
    ("[2001:db8:0:1::1]", 3),
    ("192.0.2.9", 4),
    ("[::ffff:192.0.2.10]", 5),
];
const GROUPS: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// A client of `PEERS[peer]` connects.
    Open { peer: usize, port: u16 },
    /// The connection at this index (modulo the number held) ends.
    Close(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..PEERS.len(), 1u16..).prop_map(|(peer, port)| Op::Open { peer, port }),
        2 => any::<usize>().prop_map(Op::Close),
    ]
}

proptest! {
    #[test]
    fn no_peer_ever_exceeds_its_cap_and_every_slot_is_released_once(
        cap in 1usize..4,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let listener = Listener::default();
        let limited = listener.clone().limit_per_peer(cap);
        let stats = limited.stats();
        let mut limited = spawn(limited);
        let mut held: Vec<(Accepted, usize)> = Vec::new();
        let mut model = [0usize; GROUPS];
        let (mut accepted, mut rejected) = (0, 0);
        for op in ops {
            match op {
                Op::Open { peer, port } => {
                    let (addr, group) = PEERS[peer];
                    let id = listener.connect(&format!("{addr}:{port}"));
                    match next(&mut limited) {
                        Some(connection) => {
                            prop_assert!(model[group] < cap, "let through over the cap");
                            prop_assert_eq!(connection.0.id, id);
                            model[group] += 1;
                            accepted += 1;
                            held.push((connection, group));
                        }
                        None => {
                            prop_assert_eq!(model[group], cap, "closed under the cap");
                            prop_assert_eq!(listener.closed().last().copied(), Some(id));
                            rejected += 1;
                        }
                    }
                }
                Op::Close(i) if !held.is_empty() => {
                    let (connection, group) = held.remove(i % held.len());
                    let peer = connection.0.peer();
                    drop(connection);
                    model[group] -= 1;
                    prop_assert_eq!(stats.connections_of(peer), model[group]);
                }
                Op::Close(_) => {}
            }
            for (connection, group) in &held {
                let count = stats.connections_of(connection.0.peer());
                prop_assert_eq!(count, model[*group]);
                prop_assert!(count <= cap);
            }
            prop_assert_eq!(stats.connections(), held.len() as u64);
            let peers = model.iter().filter(|&&n| n > 0).count();
            prop_assert_eq!(stats.peers(), peers as u64);
        }
        prop_assert_eq!((stats.accepted(), stats.rejected()), (accepted, rejected));
        drop(held);
        prop_assert_eq!((stats.connections(), stats.peers()), (0, 0));
        prop_assert_eq!(listener.closed().len() as u64, accepted + rejected);
    }
}
