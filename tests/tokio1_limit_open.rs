//! `tk_listen::tokio1`'s `limit_open(n)`: exactly `n` connections open, the
//! inner stream left alone while they are, slots freed from any thread
//! waking the stream; with mock streams, real sockets and tasks on both
//! runtime flavours.

mod support;
mod tokio1_support;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use tk_listen::tokio1::{incoming, ListenExt, OpenConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use tokio1_support::{
    connect, init_logging, poll_stream_once, run, stream_fn, CountingNotify, Gauge, Server,
    FLAVOURS, GENEROUS,
};

/// An endless stream of numbered sockets, and how often it was polled.
fn sockets() -> (
    impl futures_core::Stream<Item = (usize, &'static str)> + Unpin,
    Arc<AtomicUsize>,
) {
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let stream =
        stream_fn(move |_| Poll::Ready(Some((counter.fetch_add(1, Ordering::SeqCst), "a peer"))));
    (stream, polls)
}

/// Polls until the stream is pending (at most `bound` items), keeping what
/// it yields.
fn take_all<S>(
    limited: &mut S,
    waker: &std::task::Waker,
    bound: usize,
) -> Vec<OpenConnection<usize>>
where
    S: futures_core::Stream<Item = (OpenConnection<usize>, &'static str)> + Unpin,
{
    let mut open = Vec::new();
    for _ in 0..bound {
        match poll_stream_once(limited, waker) {
            Poll::Ready(Some((connection, "a peer"))) => open.push(connection),
            Poll::Pending => return open,
            Poll::Ready(_) => panic!("the stream ended or yielded another peer"),
        }
    }
    panic!("still ready after {bound} items");
}

#[test]
fn exactly_n_are_open_and_the_inner_stream_is_not_polled_while_they_are() {
    let (sockets, polls) = sockets();
    let mut limited = sockets.limit_open(3);
    let stats = limited.stats();
    let (woken, waker) = CountingNotify::waker();
    let open = take_all(&mut limited, &waker, 10);
    assert_eq!(open.iter().map(|c| **c).collect::<Vec<_>>(), [0, 1, 2]);
    for _ in 0..5 {
        assert!(poll_stream_once(&mut limited, &waker).is_pending());
    }
    assert_eq!(polls.load(Ordering::SeqCst), 3, "polled while full");
    assert_eq!(
        (stats.open(), stats.accepted(), stats.full_periods()),
        (3, 3, 1)
    );
    assert_eq!(woken.count(), 0);
}

#[test]
fn a_slot_freed_on_another_thread_wakes_the_stream() {
    let (sockets, polls) = sockets();
    let mut limited = sockets.limit_open(2);
    let (woken, waker) = CountingNotify::waker();
    let mut open = take_all(&mut limited, &waker, 10);
    let last = open.pop().unwrap();
    thread::spawn(move || drop(last)).join().unwrap();
    assert_eq!(woken.count(), 1, "the drop woke the waiting task");
    let next = take_all(&mut limited, &waker, 10);
    assert_eq!(next.iter().map(|c| **c).collect::<Vec<_>>(), [2]);
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

#[test]
fn connections_dropped_by_tasks_on_every_worker_never_exceed_the_cap_and_all_get_through() {
    for flavour in FLAVOURS {
        let gauge = Arc::new(Gauge::default());
        let stats = run(flavour, {
            let gauge = gauge.clone();
            async move {
                let limited = tokio_stream::iter(0..2000usize)
                    .map(|n| (n, ()))
                    .limit_open(4);
                let stats = limited.stats();
                let mut limited = limited;
                let mut tasks = Vec::new();
                while let Some((connection, ())) = limited.next().await {
                    gauge.enter();
                    let gauge = gauge.clone();
                    tasks.push(tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        gauge.leave();
                        drop(connection);
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
                stats
            }
        });
        assert_eq!(gauge.finished(), 2000, "{flavour:?}");
        assert!(
            gauge.max() <= 4,
            "{flavour:?}: {} open at once",
            gauge.max()
        );
        assert_eq!((stats.accepted(), stats.open()), (2000, 0), "{flavour:?}");
    }
}

#[test]
fn a_server_that_spawns_its_connections_keeps_the_next_client_waiting_until_one_closes() {
    init_logging();
    for flavour in FLAVOURS {
        let (stats_tx, stats_rx) = mpsc::channel();
        let server = Server::start(flavour, move |listener| async move {
            let mut limited = incoming(listener)
                .sleep_on_error(Duration::from_millis(100))
                .limit_open(2);
            stats_tx.send(limited.stats()).unwrap();
            while let Some((mut connection, _peer)) = limited.next().await {
                tokio::spawn(async move {
                    connection.write_all(b"hello\n").await?;
                    let mut rest = Vec::new();
                    connection.read_to_end(&mut rest).await?;
                    Ok::<_, io::Error>(())
                });
            }
        });
        let stats = stats_rx.recv_timeout(GENEROUS).unwrap();
        let mut first = connect(server.addr);
        let mut second = connect(server.addr);
        let mut hello = [0; 6];
        first.read_exact_blocking(&mut hello);
        second.read_exact_blocking(&mut hello);
        let mut third = connect(server.addr);
        // A short look: the third client waits in the backlog (a server
        // without the cap answers it at once).
        third
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let waited = std::io::Read::read(&mut third, &mut hello).unwrap_err();
        assert!(
            matches!(
                waited.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{flavour:?}: {waited}"
        );
        assert_eq!((stats.open(), stats.accepted()), (2, 2), "{flavour:?}");
        drop(first);
        third.set_read_timeout(Some(GENEROUS)).unwrap();
        third.read_exact_blocking(&mut hello);
        assert_eq!(&hello, b"hello\n");
        assert_eq!(stats.accepted(), 3, "{flavour:?}");
        server.shutdown();
    }
}

/// `read_exact` on a blocking client, failing the test on an error.
trait ReadExactBlocking {
    fn read_exact_blocking(&mut self, buf: &mut [u8]);
}

impl ReadExactBlocking for std::net::TcpStream {
    fn read_exact_blocking(&mut self, buf: &mut [u8]) {
        std::io::Read::read_exact(self, buf).expect("a reply");
    }
}

#[test]
#[should_panic(expected = "limit_open(0) would never yield a connection")]
fn a_cap_of_zero_panics_with_a_message() {
    let _ = tokio_stream::iter(Vec::<((), ())>::new()).limit_open(0);
}

#[test]
fn an_open_connection_forwards_tokio_io_and_vectored_writes() {
    use std::io::IoSlice;
    use std::pin::Pin;
    use tokio::io::AsyncWrite;

    // A `Vec<u8>` is a tokio `AsyncWrite` that takes vectored writes.
    let accepts = tokio_stream::iter(vec![(Vec::<u8>::new(), ())]);
    let mut limited = accepts.limit_open(1);
    let (_, waker) = CountingNotify::waker();
    let (mut connection, ()) = match poll_stream_once(&mut limited, &waker) {
        Poll::Ready(Some(item)) => item,
        _ => panic!("a connection"),
    };
    assert!(connection.is_write_vectored());
    let mut cx = std::task::Context::from_waker(&waker);
    let bufs = [IoSlice::new(b"head"), IoSlice::new(b"body")];
    let written = Pin::new(&mut connection).poll_write_vectored(&mut cx, &bufs);
    assert!(matches!(written, Poll::Ready(Ok(8))));
    assert_eq!(connection.get_ref(), b"headbody");
}
