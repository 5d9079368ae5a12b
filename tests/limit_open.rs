//! `limit_open(n)` on futures 0.1: exactly `n` connections open, the inner
//! stream left alone while they are, and slots freed from any thread waking
//! the stream. Mock streams polled by hand.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use futures::executor::Spawn;
use futures::{stream, Async, Poll, Stream};
use tk_listen::{LimitOpen, ListenExt, OpenConnection};

use support::{poll_stream_once, spawn, CountingNotify};

/// An endless stream of sockets (numbered) that counts its polls.
struct Sockets {
    polls: Arc<AtomicUsize>,
}

impl Stream for Sockets {
    type Item = (usize, &'static str);
    type Error = &'static str;

    fn poll(&mut self) -> Poll<Option<Self::Item>, &'static str> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst);
        Ok(Async::Ready(Some((n, "a peer"))))
    }
}

type Limited = Spawn<LimitOpen<Sockets>>;

fn limited(max_open: usize) -> (Limited, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let sockets = Sockets {
        polls: polls.clone(),
    };
    (spawn(sockets.limit_open(max_open)), polls)
}

/// Polls until the stream is not ready (at most `bound` items), keeping
/// what it yields.
fn take_all(
    limited: &mut Limited,
    notify: &futures::executor::NotifyHandle,
    bound: usize,
) -> Vec<OpenConnection<usize>> {
    let mut open = Vec::new();
    for _ in 0..bound {
        match poll_stream_once(limited, notify) {
            Ok(Async::Ready(Some((connection, "a peer")))) => open.push(connection),
            Ok(Async::NotReady) => return open,
            other => panic!("unexpected {:?}", other.map(|a| a.map(|o| o.is_some()))),
        }
    }
    panic!("still ready after {bound} items");
}

#[test]
fn exactly_n_connections_are_open_at_once() {
    let (mut limited, polls) = limited(3);
    let stats = limited.get_ref().stats();
    let (_, notify) = CountingNotify::handle();
    let open = take_all(&mut limited, &notify, 10);
    let sockets: Vec<usize> = open.iter().map(|c| **c).collect();
    assert_eq!(sockets, [0, 1, 2]);
    assert_eq!(
        (stats.open(), stats.accepted(), stats.max_open()),
        (3, 3, 3)
    );
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert!(stats.is_full());
}

#[test]
fn the_inner_stream_is_not_polled_while_every_slot_is_taken() {
    let (mut limited, polls) = limited(2);
    let (woken, notify) = CountingNotify::handle();
    let _open = take_all(&mut limited, &notify, 10);
    for _ in 0..5 {
        assert!(matches!(
            poll_stream_once(&mut limited, &notify),
            Ok(Async::NotReady)
        ));
    }
    assert_eq!(
        polls.load(Ordering::SeqCst),
        2,
        "the inner stream was polled"
    );
    assert_eq!(woken.count(), 0, "nothing freed, nothing woke the task");
}

#[test]
fn a_slot_freed_on_another_thread_wakes_the_stream_and_lets_the_next_one_in() {
    let (mut limited, polls) = limited(2);
    let stats = limited.get_ref().stats();
    let (woken, notify) = CountingNotify::handle();
    let mut open = take_all(&mut limited, &notify, 10);
    let first = open.remove(0);
    thread::spawn(move || drop(first)).join().unwrap();
    assert_eq!(woken.count(), 1, "the drop woke the waiting task");
    assert_eq!(stats.open(), 1);
    let more = take_all(&mut limited, &notify, 10);
    assert_eq!(more.iter().map(|c| **c).collect::<Vec<_>>(), [2]);
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert_eq!((stats.accepted(), stats.full_periods()), (3, 2));
}

#[test]
fn slots_freed_while_the_stream_is_not_full_wake_nobody() {
    let (mut limited, _) = limited(3);
    let (woken, notify) = CountingNotify::handle();
    let first = match poll_stream_once(&mut limited, &notify) {
        Ok(Async::Ready(Some((connection, _)))) => connection,
        _ => panic!("a connection"),
    };
    thread::spawn(move || drop(first)).join().unwrap();
    assert_eq!(woken.count(), 0);
    assert_eq!(limited.get_ref().stats().open(), 0);
}

#[test]
fn into_inner_frees_the_slot_and_keeps_the_socket() {
    let (mut limited, _) = limited(1);
    let (woken, notify) = CountingNotify::handle();
    let mut open = take_all(&mut limited, &notify, 10);
    let socket = open.pop().unwrap().into_inner();
    assert_eq!((socket, woken.count()), (0, 1));
    assert_eq!(limited.get_ref().stats().open(), 0);
}

#[test]
fn the_time_spent_full_is_counted_once_per_wait() {
    let (mut limited, _) = limited(1);
    let stats = limited.get_ref().stats();
    let (_, notify) = CountingNotify::handle();
    let mut open = take_all(&mut limited, &notify, 10);
    // Polled again while still full: the same wait.
    assert!(matches!(
        poll_stream_once(&mut limited, &notify),
        Ok(Async::NotReady)
    ));
    assert_eq!(stats.full_periods(), 1);
    let during = stats.full_time();
    drop(open.pop());
    assert!(
        stats.is_full(),
        "the wait ends when the stream is polled again"
    );
    let _next = take_all(&mut limited, &notify, 10);
    assert_eq!(stats.full_periods(), 2, "the second wait began");
    assert!(stats.full_time() >= during);
}

#[test]
fn errors_and_the_end_of_the_inner_stream_pass_through() {
    let items = vec![Ok(("socket", 1)), Err("accept failed"), Ok(("socket", 2))];
    let limited = stream::iter_result(items).limit_open(5);
    let results: Vec<_> = limited
        .then(|item| Ok::<_, ()>(item.map(|(c, a)| (c.into_inner(), a))))
        .wait()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        results,
        [Ok(("socket", 1)), Err("accept failed"), Ok(("socket", 2))]
    );
}

#[test]
#[should_panic(expected = "limit_open(0) would never yield a connection")]
fn a_cap_of_zero_panics_with_a_message() {
    let _ = stream::empty::<((), ()), ()>().limit_open(0);
}

#[test]
fn an_open_connection_reads_and_writes_like_its_socket() {
    use std::io::{Read, Write};

    let accepts = stream::iter_ok::<_, ()>(vec![(std::io::Cursor::new(b"ping".to_vec()), ())]);
    let (mut connection, ()) = accepts.limit_open(1).wait().next().unwrap().unwrap();
    let mut read = [0; 4];
    connection.read_exact(&mut read).unwrap();
    assert_eq!(&read, b"ping");
    connection.write_all(b"pong").unwrap();
    assert_eq!(connection.get_ref().get_ref(), b"pingpong");
}
