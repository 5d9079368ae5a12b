//! `tokio1::ListenExt::listen` and `listen_local`: the cap, the budget,
//! shutdown, panics and counters. Mock streams of connection futures, on both
//! runtime flavours, or polled by hand where a step must be exact.

mod support;
mod tokio1_support;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use tk_listen::tokio1::ListenExt;
use tk_listen::ListenStats;
use tokio::runtime::Builder;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_stream::{Stream, StreamExt};

use tokio1_support::{
    poll_once, run, stream_fn, CountingNotify, Flavour, Gauge, OnDrop, StreamFn, FLAVOURS, GENEROUS,
};

type Connection = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

/// Connections that each wait for a permit of `release` (then succeed), and
/// a count of how often the stream was polled. The stream yields a
/// connection at every poll, `total` in all, then ends.
struct Held {
    polls: Arc<AtomicUsize>,
    gauge: Arc<Gauge>,
    release: Arc<Semaphore>,
    /// One message per connection that started running.
    started: mpsc::UnboundedReceiver<()>,
}

fn held_connections(total: usize) -> (Held, impl Stream<Item = Connection> + Unpin) {
    let polls = Arc::new(AtomicUsize::new(0));
    let gauge = Arc::new(Gauge::default());
    let release = Arc::new(Semaphore::new(0));
    let (started_tx, started) = mpsc::unbounded_channel();
    let (p, g, r) = (polls.clone(), gauge.clone(), release.clone());
    let stream = stream_fn(move |_: &mut std::task::Context<'_>| {
        if p.fetch_add(1, Ordering::SeqCst) >= total {
            return Poll::Ready(None);
        }
        let (gauge, release, started) = (g.clone(), r.clone(), started_tx.clone());
        let connection: Connection = Box::pin(async move {
            gauge.enter();
            let _ = started.send(());
            release.acquire().await.unwrap().forget();
            gauge.leave();
            Ok(())
        });
        Poll::Ready(Some(connection))
    });
    (
        Held {
            polls,
            gauge,
            release,
            started,
        },
        stream,
    )
}

impl Held {
    /// Waits until `n` more connections have started running.
    async fn started(&mut self, n: usize) {
        for _ in 0..n {
            self.started.recv().await.expect("connection started");
        }
    }

    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
}

fn assert_adds_up(stats: &ListenStats) {
    assert_eq!(
        stats.started(),
        stats.finished() + stats.failed() + stats.panicked() + stats.aborted() + stats.running(),
        "{:?}",
        stats
    );
}

#[test]
fn the_limit_is_reached_exactly_and_never_exceeded() {
    for flavour in FLAVOURS {
        let (mut held, connections) = held_connections(40);
        let server = connections.listen(4);
        let stats = server.stats();
        let stats_after = server.stats();
        let gauge = held.gauge.clone();
        run(flavour, async move {
            let server = tokio::spawn(server);
            held.started(4).await;
            // Full: the stream was polled once per connection, not once more.
            assert_eq!(held.polls(), 4, "{:?}: stream polled while full", flavour);
            assert_eq!((stats.started(), stats.running()), (4, 4));
            // One finished connection frees exactly one slot.
            held.release.add_permits(1);
            held.started(1).await;
            assert_eq!(held.polls(), 5, "{:?}", flavour);
            assert_eq!((stats.started(), stats.finished()), (5, 1));
            held.release.add_permits(100);
            server.await.unwrap();
            assert_eq!(held.polls(), 41, "polled until the stream ended");
        });
        assert_eq!(gauge.max(), 4, "{:?}: connections running at once", flavour);
        assert_eq!(gauge.finished(), 40);
        assert_eq!((stats_after.started(), stats_after.finished()), (40, 40));
        assert_adds_up(&stats_after);
    }
}

#[test]
fn a_full_server_does_not_poll_its_stream_however_often_it_is_polled() {
    // Hand-polled inside a runtime whose tasks never run, so the spawned
    // connections stay in flight.
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    let _context = runtime.enter();
    let (held, connections) = held_connections(10);
    let mut server = connections.listen(3);
    let (_, waker) = CountingNotify::waker();
    for _ in 0..5 {
        assert!(poll_once(&mut server, &waker).is_pending());
        assert_eq!(held.polls(), 3, "stream polled while full");
    }
    assert_eq!(server.stats().running(), 3);
}

#[test]
fn at_most_64_connections_start_or_finish_in_one_poll() {
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = finished.clone();
    let mut left = 100;
    let connections = StreamFn(move |_: &mut std::task::Context<'_>| {
        if left == 0 {
            return Poll::Ready(None);
        }
        left -= 1;
        let counter = counter.clone();
        Poll::Ready(Some(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        }))
    });
    let mut server = connections.listen(1000);
    let stats = server.stats();
    let (woken, waker) = CountingNotify::waker();
    {
        let _context = runtime.enter();
        assert!(poll_once(&mut server, &waker).is_pending());
        assert_eq!(
            (stats.started(), woken.count()),
            (64, 1),
            "started in one poll"
        );
        assert!(poll_once(&mut server, &waker).is_pending());
        assert_eq!(stats.started(), 100);
    }
    // Let the 100 connections run to the end.
    runtime.block_on(async {
        for _ in 0..10_000 {
            if finished.load(Ordering::SeqCst) == 100 {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(finished.load(Ordering::SeqCst), 100);
    // The tasks count their own ends; the server frees their slots.
    assert_eq!(stats.finished(), 100);
    let _context = runtime.enter();
    let woken_before = woken.count();
    assert!(
        poll_once(&mut server, &waker).is_pending(),
        "freed more than 64 slots in one poll"
    );
    assert_eq!(
        woken.count(),
        woken_before + 1,
        "must ask to be polled again"
    );
    assert_eq!(poll_once(&mut server, &waker), Poll::Ready(()));
    assert_eq!((stats.finished(), stats.running()), (100, 0));
}

#[test]
fn a_connection_that_ends_wakes_the_server_only_if_it_waits_for_a_slot() {
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    let release = Arc::new(Semaphore::new(0));
    let (r, mut given) = (release.clone(), 0);
    // Three clients, then none for now (never ready again).
    let connections = stream_fn(move |_: &mut std::task::Context<'_>| {
        if given == 3 {
            return Poll::Pending;
        }
        given += 1;
        let release = r.clone();
        Poll::Ready(Some(async move {
            release.acquire().await.unwrap().forget();
        }))
    });
    let mut server = connections.listen(3);
    let stats = server.stats();
    let (woken, waker) = CountingNotify::waker();
    let end_one = |ended: u64| {
        release.add_permits(1);
        runtime.block_on(async {
            for _ in 0..10_000 {
                if stats.finished() == ended {
                    break;
                }
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(stats.finished(), ended);
    };
    {
        let _context = runtime.enter();
        assert!(poll_once(&mut server, &waker).is_pending());
    }
    assert_eq!((stats.running(), woken.count()), (3, 0));
    // Full: the end of a connection frees the slot the server waits for.
    end_one(1);
    assert_eq!(woken.count(), 1, "a full server was not woken");
    {
        let _context = runtime.enter();
        assert!(poll_once(&mut server, &waker).is_pending());
    }
    // Now a slot is free and the server waits for its stream only.
    end_one(2);
    assert_eq!(woken.count(), 1, "woken with a slot free");
    assert_eq!(stats.running(), 1);
}

#[test]
fn failed_connections_are_counted_and_do_not_stop_the_server() {
    for flavour in FLAVOURS {
        let connections = tokio_stream::iter(0..40).map(|i| async move {
            if i % 2 == 0 {
                Ok(())
            } else {
                Err("this connection failed")
            }
        });
        let server = connections.listen(4);
        let stats = server.stats();
        run(flavour, server);
        assert_eq!(
            (stats.started(), stats.finished(), stats.failed()),
            (40, 20, 20),
            "{:?}",
            flavour
        );
        assert_adds_up(&stats);
    }
}

#[test]
fn unit_outputs_count_as_finished() {
    for flavour in FLAVOURS {
        let server = tokio_stream::iter(0..5).map(|_| async {}).listen(2);
        let stats = server.stats();
        run(flavour, server);
        assert_eq!((stats.finished(), stats.failed()), (5, 0), "{:?}", flavour);
    }
}

#[test]
fn a_panicking_connection_is_counted_and_its_slot_freed() {
    tokio1_support::init_logging();
    for flavour in FLAVOURS {
        let connections = tokio_stream::iter(0..5).map(|i| async move {
            if i == 1 || i == 3 {
                panic!("connection {} panics on purpose", i);
            }
        });
        // One slot: if a panic didn't free it, nothing after it would run.
        let server = connections.listen(1);
        let stats = server.stats();
        run(flavour, server);
        assert_eq!(
            (
                stats.started(),
                stats.finished(),
                stats.panicked(),
                stats.running()
            ),
            (5, 3, 2, 0),
            "{:?}",
            flavour
        );
    }
}

#[test]
fn a_panic_in_the_accept_stream_itself_propagates() {
    for flavour in FLAVOURS {
        let connections = StreamFn(
            |_: &mut std::task::Context<'_>| -> Poll<Option<std::future::Ready<()>>> {
                panic!("the accept stream panics on purpose")
            },
        );
        let joined = run(flavour, async { tokio::spawn(connections.listen(4)).await });
        let error = joined.expect_err("the panic was swallowed");
        assert!(error.is_panic(), "{:?}: {}", flavour, error);
    }
}

#[test]
fn a_spawn_that_panics_counts_its_connection_as_failed_and_frees_its_slot() {
    // Polled outside a runtime (and outside a `LocalSet`), the spawn of the
    // first connection panics; inside one, the second connection runs in
    // the slot the first never took.
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    let (_woken, waker) = CountingNotify::waker();
    let outside = |poll: &mut dyn FnMut() -> Poll<()>| {
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(poll));
        assert!(polled.is_err(), "a spawn outside a runtime did not panic");
    };

    let mut server = tokio_stream::iter(0..2).map(|_| async {}).listen(1);
    let stats = server.stats();
    outside(&mut || poll_once(&mut server, &waker));
    assert_eq!(
        (stats.started(), stats.failed(), stats.running()),
        (1, 1, 0)
    );
    runtime.block_on(server);
    assert_eq!(
        (stats.started(), stats.finished(), stats.failed()),
        (2, 1, 1)
    );
    assert_eq!((stats.aborted(), stats.running()), (0, 0));

    let mut server = tokio_stream::iter(0..2).map(|_| async {}).listen_local(1);
    let stats = server.stats();
    outside(&mut || poll_once(&mut server, &waker));
    assert_eq!(
        (stats.started(), stats.failed(), stats.running()),
        (1, 1, 0)
    );
    runtime.block_on(tokio::task::LocalSet::new().run_until(server));
    assert_eq!(
        (stats.started(), stats.finished(), stats.failed()),
        (2, 1, 1)
    );
    assert_eq!((stats.aborted(), stats.running()), (0, 0));
}

#[test]
#[should_panic(expected = "listen(0) would never accept a connection")]
fn listen_zero_panics_with_a_message_saying_why() {
    drop(tokio_stream::pending::<std::future::Ready<()>>().listen(0));
}

/// A stream that never yields and tells `dropped` when it is dropped (as a
/// listener closing).
fn idle_stream(dropped: oneshot::Sender<()>) -> impl Stream<Item = std::future::Ready<()>> + Unpin {
    let guard = OnDrop::new(move || {
        let _ = dropped.send(());
    });
    stream_fn(move |_: &mut std::task::Context<'_>| {
        let _ = &guard;
        Poll::Pending
    })
}

#[test]
fn the_signal_stops_an_idle_server() {
    for flavour in FLAVOURS {
        let (stop, stopped) = oneshot::channel::<()>();
        let (dropped_tx, dropped) = oneshot::channel();
        let server = idle_stream(dropped_tx)
            .listen(4)
            .with_graceful_shutdown(stopped);
        run(flavour, async move {
            let server = tokio::spawn(server);
            tokio::task::yield_now().await;
            stop.send(()).unwrap();
            dropped.await.expect("the stream was dropped");
            server.await.unwrap();
        });
    }
}

#[test]
fn a_dropped_signal_sender_stops_the_server_too() {
    for flavour in FLAVOURS {
        let (stop, stopped) = oneshot::channel::<()>();
        let (dropped_tx, _dropped) = oneshot::channel();
        let server = idle_stream(dropped_tx)
            .listen(4)
            .with_graceful_shutdown(stopped);
        drop(stop);
        run(flavour, server);
    }
}

#[test]
fn the_signal_closes_a_full_server_at_once_and_running_connections_finish() {
    for flavour in FLAVOURS {
        let (mut held, connections) = held_connections(1000);
        let (stop, stopped) = oneshot::channel::<()>();
        let (dropped_tx, dropped) = oneshot::channel();
        let guard = OnDrop::new(move || {
            let _ = dropped_tx.send(());
        });
        let connections = connections.map(move |c| {
            let _ = &guard;
            c
        });
        let server = connections.listen(2).with_graceful_shutdown(stopped);
        let stats = server.stats();
        run(flavour, async move {
            let server = tokio::spawn(server);
            held.started(2).await;
            stop.send(()).unwrap();
            // Full, yet the stream is dropped without a connection ending.
            dropped.await.expect("the stream was dropped");
            assert_eq!(stats.running(), 2, "{:?}", flavour);
            assert!(!server.is_finished(), "resolved before its connections");
            held.release.add_permits(2);
            server.await.unwrap();
            assert_eq!(held.polls(), 2, "accepted after the signal");
            assert_eq!((stats.started(), stats.finished()), (2, 2));
        });
    }
}

#[test]
fn stop_accepting_drops_the_stream_and_drains() {
    for flavour in FLAVOURS {
        let (mut held, connections) = held_connections(1000);
        let mut server = connections.listen(3);
        let stats = server.stats();
        run(flavour, async move {
            // Polled once here, in this task, so that it can be reached
            // between polls.
            std::future::poll_fn(|cx| {
                assert!(Pin::new(&mut server).poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            held.started(3).await;
            server.stop_accepting();
            assert!(server.get_ref().is_none());
            held.release.add_permits(3);
            server.await;
            assert_eq!((stats.started(), stats.finished()), (3, 3));
            assert_eq!(held.polls(), 3, "accepted after stop_accepting");
        });
    }
}

#[test]
fn dropping_the_server_aborts_every_connection_and_counts_them_as_aborted() {
    for flavour in FLAVOURS {
        let (aborted_tx, mut aborted) = mpsc::unbounded_channel::<()>();
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let connections = tokio_stream::iter(0..10).map(move |_| {
            let guard = AbortGuard(aborted_tx.clone());
            let started = started_tx.clone();
            async move {
                let _guard = guard;
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
        });
        let server = connections.listen(10);
        let stats = server.stats();
        run(flavour, async move {
            tokio::select! {
                () = server => panic!("a server whose connections never end resolved"),
                () = async {
                    for _ in 0..10 {
                        started.recv().await.unwrap();
                    }
                } => {}
            }
            // `select!` has dropped the server.
            for _ in 0..10 {
                aborted.recv().await.expect("a connection was aborted");
            }
        });
        assert_eq!(
            (stats.running(), stats.aborted()),
            (0, 10),
            "{:?}: aborted ones are counted as such",
            flavour
        );
        assert_eq!(stats.durations().count(), 10, "{:?}", flavour);
    }
}

#[test]
fn connections_cancelled_by_a_runtime_shutting_down_count_as_aborted() {
    for flavour in FLAVOURS {
        let runtime = flavour.runtime();
        let connections = tokio_stream::iter(0..3).map(|_| std::future::pending::<()>());
        let mut server = connections.listen(10);
        let stats = server.stats();
        let (_woken, waker) = CountingNotify::waker();
        {
            let _context = runtime.enter();
            assert!(poll_once(&mut server, &waker).is_pending());
        }
        assert_eq!(stats.started(), 3, "{:?}", flavour);
        // Shutting down cancels the three tasks, and the server outlives it.
        drop(runtime);
        assert_eq!(
            poll_once(&mut server, &waker),
            Poll::Ready(()),
            "{:?}",
            flavour
        );
        assert_eq!(
            (stats.aborted(), stats.failed(), stats.running()),
            (3, 0, 0),
            "{:?}",
            flavour
        );
        assert_eq!(stats.durations().count(), 3, "{:?}", flavour);
    }
}

#[test]
fn a_runtime_shutting_down_with_the_server_as_one_of_its_tasks_counts_every_connection_as_aborted()
{
    // The runtime drops the server's task and the connections' tasks in
    // whatever order: the pool aborts some, the runtime cancels others, and
    // all are counted alike.
    for flavour in FLAVOURS {
        let runtime = flavour.runtime();
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let connections = tokio_stream::iter(0..10).map(move |_| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
        });
        let server = connections.listen(10);
        let stats = server.stats();
        runtime.spawn(server);
        runtime.block_on(async {
            for _ in 0..10 {
                started.recv().await.expect("a connection started");
            }
        });
        drop(runtime);
        assert_eq!(
            (stats.aborted(), stats.failed(), stats.running()),
            (10, 0, 0),
            "{:?}",
            flavour
        );
        assert_eq!(stats.durations().count(), 10, "{:?}", flavour);
    }
}

#[test]
fn dropping_the_server_aborts_connections_that_took_a_freed_slot() {
    for flavour in FLAVOURS {
        let (aborted_tx, mut aborted) = mpsc::unbounded_channel::<()>();
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        // Two slots: the first connection holds one, the second ends at once
        // and frees the other, which the third one takes.
        let connections = tokio_stream::iter([false, true, false]).map(move |ends| {
            let guard = AbortGuard(aborted_tx.clone());
            let started = started_tx.clone();
            async move {
                if !ends {
                    let _guard = guard;
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                }
            }
        });
        let server = connections.listen(2);
        let stats = server.stats();
        run(flavour, async move {
            tokio::select! {
                () = server => panic!("a server whose connections never end resolved"),
                () = async {
                    for _ in 0..2 {
                        started.recv().await.unwrap();
                    }
                } => {}
            }
            // The second connection's guard was dropped when it ended.
            for _ in 0..3 {
                aborted.recv().await.expect("a connection was aborted");
            }
        });
        assert_eq!(
            (
                stats.started(),
                stats.finished(),
                stats.aborted(),
                stats.running()
            ),
            (3, 1, 2, 0),
            "{:?}",
            flavour
        );
    }
}

#[test]
fn dropping_the_server_aborts_connections_that_outlived_many_others() {
    for flavour in FLAVOURS {
        let (aborted_tx, mut aborted) = mpsc::unbounded_channel::<()>();
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        // Every tenth connection never ends; the other 90 end at once, so
        // the server forgets their tasks while the 10 run.
        let connections = tokio_stream::iter(0..100).map(move |i| {
            let guard = AbortGuard(aborted_tx.clone());
            let started = started_tx.clone();
            async move {
                let _guard = guard;
                if i % 10 == 0 {
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                }
            }
        });
        let server = connections.chain(tokio_stream::pending()).listen(100);
        let stats = server.stats();
        let s = stats.clone();
        run(flavour, async move {
            tokio::select! {
                () = server => panic!("a server whose stream never ends resolved"),
                () = async {
                    for _ in 0..10 {
                        started.recv().await.unwrap();
                    }
                    // Each yield polls the server too, which counts the
                    // ends and forgets the tasks that finished.
                    for _ in 0..10_000 {
                        if s.finished() == 90 {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                } => {}
            }
            // 90 ended, 10 aborted (`run` fails the test if they never are).
            for _ in 0..100 {
                aborted.recv().await.expect("a connection was aborted");
            }
        });
        assert_eq!(
            (stats.finished(), stats.aborted(), stats.running()),
            (90, 10, 0),
            "{:?}",
            flavour
        );
    }
}

#[test]
fn connections_that_ended_unseen_by_the_server_are_not_counted_as_aborted() {
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    // Two end at once, one never; then no client for now, so nothing wakes
    // the server to take in the two ends before it is dropped.
    let connections = tokio_stream::iter([true, true, false])
        .map(|ends| async move {
            if !ends {
                std::future::pending::<()>().await;
            }
        })
        .chain(tokio_stream::pending());
    let mut server = connections.listen(10);
    let stats = server.stats();
    let (woken, waker) = CountingNotify::waker();
    {
        let _context = runtime.enter();
        assert!(poll_once(&mut server, &waker).is_pending());
    }
    runtime.block_on(async {
        for _ in 0..10_000 {
            if stats.finished() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    assert_eq!((stats.finished(), woken.count()), (2, 0));
    drop(server);
    assert_eq!(
        (stats.finished(), stats.aborted(), stats.running()),
        (2, 1, 0),
        "{:?}",
        stats
    );
}

#[test]
fn an_aborted_connection_is_recorded_with_its_own_age() {
    let runtime = Builder::new_current_thread().enable_all().build().unwrap();
    let (clients, accepted) = mpsc::unbounded_channel::<bool>();
    let connections = tokio_stream::wrappers::UnboundedReceiverStream::new(accepted).map(
        |ends: bool| async move {
            if !ends {
                std::future::pending::<()>().await;
            }
        },
    );
    let mut server = connections.listen(10);
    let stats = server.stats();
    let (_woken, waker) = CountingNotify::waker();
    let poll = |server: &mut tk_listen::tokio1::Listen<_>| {
        let _context = runtime.enter();
        assert!(poll_once(server, &waker).is_pending());
    };
    // An old one that never ends and one that ends at once; 30 ms later a
    // new one that never ends.
    clients.send(false).unwrap();
    clients.send(true).unwrap();
    poll(&mut server);
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(30)).await });
    assert_eq!(stats.finished(), 1);
    clients.send(false).unwrap();
    poll(&mut server);
    drop(server);
    assert_eq!((stats.finished(), stats.aborted()), (1, 2));
    // The one that ended and the new one lasted under 25 ms, the old one
    // over 30 ms.
    let durations = stats.durations();
    let under = |bound| durations.buckets().find(|&(b, _)| b == bound).unwrap().1;
    assert_eq!(under(Duration::from_millis(25)), 2, "{:?}", durations);
    assert_eq!(durations.count(), 3, "{:?}", durations);
}

#[test]
fn the_server_wakes_the_task_that_polled_it_last() {
    for flavour in FLAVOURS {
        let runtime = flavour.runtime();
        let (release, released) = oneshot::channel::<()>();
        let connections = tokio_stream::iter([released]).map(|released| async move {
            let _ = released.await;
        });
        let mut server = connections.listen(1);
        let stats = server.stats();
        // Polled by hand first, then moved into a task.
        let (_woken, waker) = CountingNotify::waker();
        {
            let _context = runtime.enter();
            assert!(poll_once(&mut server, &waker).is_pending());
        }
        runtime.block_on(async move {
            let _ = release.send(());
            // Not woken, the server would still resolve when the timeout's
            // timer wakes the task and polls it: so time it.
            let start = Instant::now();
            let _ = tokio::time::timeout(GENEROUS, server).await;
            assert!(
                start.elapsed() < GENEROUS,
                "{:?}: the server was not woken",
                flavour
            );
        });
        assert_eq!(stats.finished(), 1, "{:?}", flavour);
    }
}

/// Reports on a channel when a connection's future is dropped.
struct AbortGuard(mpsc::UnboundedSender<()>);

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Lets `waiting` connections meet, each blocking its worker thread until
/// all have arrived or [`GENEROUS`] has passed; returns the threads seen.
struct Meeting {
    threads: Mutex<HashSet<ThreadId>>,
    arrived: Condvar,
    waiting: usize,
}

impl Meeting {
    fn attend(&self) {
        let mut threads = self.threads.lock().unwrap();
        threads.insert(thread::current().id());
        self.arrived.notify_all();
        let _ = self
            .arrived
            .wait_timeout_while(threads, GENEROUS, |t| t.len() < self.waiting)
            .unwrap();
    }
}

#[test]
fn on_a_multi_thread_runtime_connections_run_on_every_worker() {
    let meeting = Arc::new(Meeting {
        threads: Mutex::new(HashSet::new()),
        arrived: Condvar::new(),
        waiting: 2,
    });
    let m = meeting.clone();
    let connections = tokio_stream::iter(0..2).map(move |_| {
        let meeting = m.clone();
        async move { meeting.attend() }
    });
    let runtime = Flavour::MultiThread.runtime();
    runtime.block_on(async {
        tokio::time::timeout(GENEROUS * 2, tokio::spawn(connections.listen(2)))
            .await
            .expect("finished")
            .unwrap();
    });
    assert_eq!(
        meeting.threads.lock().unwrap().len(),
        2,
        "both connections ran on one worker"
    );
}

#[test]
fn listen_local_runs_connections_that_are_not_send() {
    for flavour in FLAVOURS {
        let shared = Rc::new(std::cell::Cell::new(0));
        let counter = shared.clone();
        let gauge = Arc::new(Gauge::default());
        let g = gauge.clone();
        let connections = tokio_stream::iter(0..20).map(move |i| {
            let (counter, gauge) = (counter.clone(), g.clone());
            async move {
                gauge.enter();
                tokio::task::yield_now().await;
                counter.set(counter.get() + 1);
                gauge.leave();
                if i == 7 {
                    panic!("connection 7 panics on purpose");
                }
                if i % 5 == 0 {
                    return Err(());
                }
                Ok(())
            }
        });
        let server = connections.listen_local(3);
        let stats = server.stats();
        run(flavour, server);
        assert_eq!(shared.get(), 20);
        assert_eq!(gauge.max(), 3, "{:?}", flavour);
        assert_eq!(
            (
                stats.started(),
                stats.finished(),
                stats.failed(),
                stats.panicked()
            ),
            (20, 15, 4, 1)
        );
    }
}

#[test]
fn listen_local_stops_on_its_signal_while_full() {
    for flavour in FLAVOURS {
        let (stop, stopped) = oneshot::channel::<()>();
        let (release_tx, release) = tokio::sync::watch::channel(false);
        let started = Rc::new(std::cell::Cell::new(0));
        let s = started.clone();
        let connections = tokio_stream::iter(0..100).map(move |_| {
            let mut release = release.clone();
            let started = s.clone();
            async move {
                started.set(started.get() + 1);
                let _ = release.wait_for(|&r| r).await;
            }
        });
        let server = connections.listen_local(2).with_graceful_shutdown(stopped);
        let stats = server.stats();
        run(flavour, async move {
            let server = tokio::task::spawn_local(server);
            for _ in 0..1000 {
                if started.get() == 2 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            stop.send(()).unwrap();
            tokio::task::yield_now().await;
            release_tx.send(true).unwrap();
            server.await.unwrap();
        });
        assert_eq!((stats.started(), stats.finished()), (2, 2), "{:?}", flavour);
    }
}

#[test]
fn a_server_future_is_send_and_its_stats_are_readable_from_other_threads() {
    fn assert_send<T: Send>(_: &T) {}
    let server = tokio_stream::iter(0..1).map(|_| async {}).listen(1);
    assert_send(&server);
    let stats = server.stats();
    let reader = thread::spawn(move || stats.max_connections());
    assert_eq!(reader.join().unwrap(), 1);
}

#[test]
fn a_connection_is_recorded_in_the_histogram_with_its_duration_when_its_task_ends() {
    for flavour in FLAVOURS {
        // One ends at once, one after at least 30 ms.
        let waits = [Duration::ZERO, Duration::from_millis(30)];
        let connections = tokio_stream::iter(waits).map(tokio::time::sleep);
        let server = connections.listen(10);
        let stats = server.stats();
        let begun = Instant::now();
        run(flavour, server);
        let waited = begun.elapsed();
        let durations = stats.durations();
        let bucket = |bound| durations.buckets().find(|&(b, _)| b == bound).unwrap().1;
        assert_eq!(durations.count(), 2, "{:?}", flavour);
        assert_eq!(
            bucket(Duration::from_millis(25)),
            1,
            "{:?}: {:?}",
            flavour,
            durations
        );
        assert!(
            durations.sum() >= Duration::from_millis(30),
            "{:?}",
            durations
        );
        assert!(durations.sum() <= 2 * waited, "{:?}", durations);
    }
}

/// Eight connection futures of more than 4 KiB each (well above the 1 KiB
/// over which `listen` boxes them before spawning), each holding an
/// [`AbortGuard`]: two finish, two fail, two panic and two wait for ever;
/// each reports on `started` when it first runs.
fn big_connections(
    started: mpsc::UnboundedSender<()>,
    dropped: mpsc::UnboundedSender<()>,
) -> impl Stream<Item = impl Future<Output = Result<(), ()>> + Send> + Unpin {
    tokio_stream::iter(0..8u8).map(move |i| {
        let (started, guard) = (started.clone(), AbortGuard(dropped.clone()));
        let conn = async move {
            let _guard = guard;
            let buffer = [i; 4096];
            let _ = started.send(());
            tokio::task::yield_now().await;
            std::hint::black_box(&buffer);
            match i % 4 {
                0 => Ok(()),
                1 => Err(()),
                2 => panic!("big connection {} panics on purpose", i),
                _ => std::future::pending().await,
            }
        };
        assert!(std::mem::size_of_val(&conn) > 4096);
        conn
    })
}

/// Runs `server` (from [`big_connections`]) until its eight connections
/// started and the six that end did, then drops it and waits for the two
/// left to be dropped; checks the counters.
async fn serve_big_then_drop(
    server: impl Future<Output = ()>,
    stats: ListenStats,
    mut started: mpsc::UnboundedReceiver<()>,
    mut dropped: mpsc::UnboundedReceiver<()>,
) {
    tokio::select! {
        () = server => panic!("a server whose connections never all end resolved"),
        () = async {
            for _ in 0..8 {
                started.recv().await.unwrap();
            }
            for _ in 0..6 {
                dropped.recv().await.unwrap();
            }
            // Dropped before they counted their ends: wait for the counts
            // (bounded by `run`'s timeout).
            while stats.finished() + stats.failed() + stats.panicked() < 6 {
                tokio::task::yield_now().await;
            }
        } => {}
    }
    for _ in 0..2 {
        dropped
            .recv()
            .await
            .expect("a waiting connection was aborted");
    }
    assert_eq!(
        (
            stats.finished(),
            stats.failed(),
            stats.panicked(),
            stats.aborted(),
            stats.running()
        ),
        (2, 2, 2, 2, 0)
    );
    assert_eq!(stats.durations().count(), 8);
}

#[test]
fn big_connection_futures_run_fail_panic_and_abort_like_small_ones() {
    tokio1_support::init_logging();
    for flavour in FLAVOURS {
        let (started_tx, started) = mpsc::unbounded_channel();
        let (dropped_tx, dropped) = mpsc::unbounded_channel();
        let server = big_connections(started_tx, dropped_tx).listen(8);
        let stats = server.stats();
        run(
            flavour,
            serve_big_then_drop(server, stats, started, dropped),
        );
    }
}

#[test]
fn big_connection_futures_run_fail_panic_and_abort_like_small_ones_on_listen_local() {
    tokio1_support::init_logging();
    for flavour in FLAVOURS {
        let (started_tx, started) = mpsc::unbounded_channel();
        let (dropped_tx, dropped) = mpsc::unbounded_channel();
        let server = big_connections(started_tx, dropped_tx).listen_local(8);
        let stats = server.stats();
        run(
            flavour,
            serve_big_then_drop(server, stats, started, dropped),
        );
    }
}
