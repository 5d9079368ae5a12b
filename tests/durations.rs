//! The counters that say how connections ended and how long they lived:
//! `aborted`, `running` after a forced shutdown, and the histogram of
//! durations. Futures 0.1, polled by hand; the tokio 1 side is in
//! `tokio1_listen.rs`.

mod support;

use std::time::{Duration, Instant};

use futures::future::{self, Future};
use futures::sync::oneshot;
use futures::{stream, Async, Stream};
use tk_listen::{ListenExt, ListenStats};

use support::{poll_future_once, spawn, CountingNotify};

/// A connection that ends when told: `true` finishes it, `false` fails it,
/// dropping the sender makes it panic.
fn told(receiver: oneshot::Receiver<bool>) -> Box<dyn Future<Item = (), Error = ()>> {
    Box::new(receiver.then(|told| match told {
        Ok(true) => Ok(()),
        Ok(false) => Err(()),
        Err(_) => panic!("told to panic"),
    }))
}

fn assert_adds_up(stats: &ListenStats) {
    let ended = stats.finished() + stats.failed() + stats.panicked() + stats.aborted();
    assert_eq!(stats.started(), ended + stats.running(), "{:?}", stats);
    assert_eq!(stats.durations().count(), ended, "{:?}", stats);
}

/// The cumulative count of the bucket whose bound is `bound`.
fn cumulative(stats: &ListenStats, bound: Duration) -> u64 {
    let durations = stats.durations();
    let bucket = durations.buckets().find(|&(b, _)| b == bound);
    bucket.unwrap_or_else(|| panic!("no bucket {:?}", bound)).1
}

#[test]
fn each_ended_connection_lands_in_the_bucket_of_its_duration() {
    support::init_logging();
    let mut senders = Vec::new();
    let mut connections = Vec::new();
    // Three end in their first poll: finished, failed, finished.
    for ends in [true, false, true] {
        connections.push(
            Box::new(future::result(if ends { Ok(()) } else { Err(()) }))
                as Box<dyn Future<Item = (), Error = ()>>,
        );
    }
    // Four end later, after at least 30 ms: two finish, one fails, one panics.
    for _ in 0..4 {
        let (tx, rx) = oneshot::channel();
        senders.push(tx);
        connections.push(told(rx));
    }
    let server = stream::iter_ok::<_, ()>(connections).listen(10);
    let stats = server.stats();
    let mut server = spawn(server);
    let (_, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::NotReady));
    assert_eq!((stats.started(), stats.running()), (7, 4));
    assert_eq!(stats.durations().count(), 3, "the three that ended");
    assert_eq!(cumulative(&stats, Duration::from_millis(1)), 3);

    let begun = Instant::now();
    std::thread::sleep(Duration::from_millis(30));
    let mut senders = senders.into_iter();
    for told in [true, true, false] {
        senders.next().unwrap().send(told).unwrap();
    }
    drop(senders); // the fourth panics
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::Ready(())));
    let waited = begun.elapsed();
    assert_eq!(
        (
            stats.finished(),
            stats.failed(),
            stats.panicked(),
            stats.aborted()
        ),
        (4, 2, 1, 0)
    );
    assert_adds_up(&stats);
    let durations = stats.durations();
    assert_eq!(durations.count(), 7);
    // The four late ones lasted at least 30 ms: none is at or under 25 ms.
    assert_eq!(cumulative(&stats, Duration::from_millis(1)), 3);
    assert_eq!(cumulative(&stats, Duration::from_millis(25)), 3);
    // They lasted at most as long as this test waited (generous bound).
    let above: u64 = durations
        .buckets()
        .filter(|&(bound, _)| bound >= waited.max(Duration::from_millis(50)))
        .map(|(_, count)| count)
        .next()
        .unwrap();
    assert_eq!(above, 7);
    assert_eq!(durations.buckets().last(), Some((Duration::MAX, 7)));
    assert!(
        durations.sum() >= Duration::from_millis(4 * 30),
        "{:?}",
        durations
    );
    assert!(durations.sum() <= 4 * waited, "{:?}", durations);
}

#[test]
fn dropping_the_server_counts_its_running_connections_as_aborted() {
    support::init_logging();
    let pending = (0..10).map(|_| future::empty::<(), ()>());
    let server = stream::iter_ok::<_, ()>(pending).listen(10);
    let stats = server.stats();
    let mut server = spawn(server);
    let (_, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::NotReady));
    assert_eq!(
        (stats.started(), stats.running(), stats.aborted()),
        (10, 10, 0)
    );
    drop(server);
    assert_eq!((stats.running(), stats.aborted()), (0, 10));
    assert_eq!(stats.finished() + stats.failed() + stats.panicked(), 0);
    assert_adds_up(&stats);
}

#[test]
fn dropping_a_graceful_server_while_it_drains_counts_what_is_left_as_aborted() {
    support::init_logging();
    let mut senders = Vec::new();
    let connections: Vec<_> = (0..10)
        .map(|_| {
            let (tx, rx) = oneshot::channel();
            senders.push(tx);
            told(rx)
        })
        .collect();
    let (stop, stopped) = oneshot::channel::<()>();
    let accepts = stream::iter_ok::<_, ()>(connections).chain(stream::empty());
    let server = accepts.listen(10).with_graceful_shutdown(stopped);
    let stats = server.stats();
    let mut server = spawn(server);
    let (_, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::NotReady));
    stop.send(()).unwrap();
    senders.remove(0).send(true).unwrap();
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::NotReady));
    assert_eq!((stats.finished(), stats.running()), (1, 9));
    drop(server);
    assert_eq!((stats.running(), stats.aborted()), (0, 9));
    assert_adds_up(&stats);
}

#[test]
fn a_server_that_ran_to_its_end_aborted_nothing() {
    let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(()); 5]);
    let server = connections.listen(2);
    let stats = server.stats();
    server.wait().unwrap();
    assert_eq!(
        (stats.finished(), stats.aborted(), stats.running()),
        (5, 0, 0)
    );
    assert_adds_up(&stats);
}
