//! `Drain` on futures 0.1: watched connections learn that the graceful
//! shutdown began, on an idle, a busy and a full server; the drain deadline
//! drops what is left. Hand-polled where the order of events matters, on a
//! `Core` where a timer counts.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures::executor::{Notify, NotifyHandle};
use futures::future::{self, Empty, Future};
use futures::sync::oneshot;
use futures::{stream, Async, Stream};
use tk_listen::{Drain, ListenExt};
use tokio_core::reactor::{Core, Timeout};

use support::{poll_future_once, spawn, CountingNotify, GENEROUS};

/// A connection that runs until it is told of the drain, which drops its
/// inner future: `Option<Empty>` resolves once it is `None`.
type Idle = Option<Empty<(), ()>>;

/// A watched connection that records that it was told.
fn watched(drain: &Drain, told: &Rc<Cell<usize>>) -> Box<dyn Future<Item = (), Error = ()>> {
    let told = told.clone();
    Box::new(
        drain
            .watch(Some(future::empty()) as Idle, move |conn| {
                told.set(told.get() + 1);
                *conn = None;
            })
            .map(|_| ()),
    )
}

/// A connection that ends at once.
fn quick() -> Box<dyn Future<Item = (), Error = ()>> {
    Box::new(future::ok(()))
}

/// Polls the server by hand, at most `polls` times, until it resolves.
fn polls_until_done<F: Future>(server: &mut futures::executor::Spawn<F>, polls: usize) -> bool
where
    F::Error: std::fmt::Debug,
{
    let (_, notify) = CountingNotify::handle();
    (0..polls).any(|_| poll_future_once(server, &notify).unwrap().is_ready())
}

#[test]
fn an_idle_connection_learns_of_the_drain_on_an_idle_server() {
    support::init_logging();
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let told = Rc::new(Cell::new(0));
    let accepts = stream::iter_ok::<_, ()>(vec![watched(&drain, &told)]).chain(stream::empty());
    let server = accepts.listen(10).with_graceful_shutdown(drain.clone());
    let stats = server.stats();
    let mut server = spawn(server);
    let (woken, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::NotReady));
    assert_eq!((stats.running(), told.get()), (1, 0));

    let before = woken.count();
    stop.send(()).unwrap();
    assert!(woken.count() > before, "the signal woke the server");
    assert_eq!(poll_future_once(&mut server, &notify), Ok(Async::Ready(())));
    assert_eq!(told.get(), 1);
    assert!(drain.is_draining());
    assert_eq!((stats.finished(), stats.running()), (1, 0));
}

#[test]
fn an_idle_connection_learns_of_the_drain_on_a_busy_server() {
    support::init_logging();
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let told = Rc::new(Cell::new(0));
    // Clients arrive for ever, each served at once.
    let accepts = stream::iter_ok::<_, ()>(vec![watched(&drain, &told)])
        .chain(stream::repeat(()).map(|()| quick()));
    let server = accepts.listen(10).with_graceful_shutdown(drain.clone());
    let stats = server.stats();
    let mut server = spawn(server);
    assert!(!polls_until_done(&mut server, 3));
    assert!(stats.started() > 64, "busy: {:?}", stats);
    assert_eq!(told.get(), 0);

    stop.send(()).unwrap();
    assert!(polls_until_done(&mut server, 3), "drained");
    assert_eq!(told.get(), 1);
    assert_eq!(stats.running(), 0);
}

#[test]
fn idle_connections_learn_of_the_drain_on_a_full_server() {
    support::init_logging();
    let drain = Drain::new(future::empty::<(), ()>());
    let told = Rc::new(Cell::new(0));
    // Two slots, both taken by idle connections; more clients wait.
    let first = vec![watched(&drain, &told), watched(&drain, &told)];
    let accepts = stream::iter_ok::<_, ()>(first).chain(stream::repeat(()).map(|()| quick()));
    let server = accepts.listen(2).with_graceful_shutdown(drain.clone());
    let stats = server.stats();
    let mut server = spawn(server);
    assert!(!polls_until_done(&mut server, 3));
    assert_eq!((stats.started(), stats.running()), (2, 2), "full");

    drain.begin(); // by hand, from outside the server
    assert!(polls_until_done(&mut server, 3), "drained");
    assert_eq!(told.get(), 2);
    assert_eq!(
        (stats.started(), stats.finished()),
        (2, 2),
        "nobody else got in"
    );
}

#[test]
fn a_connection_watched_after_the_drain_began_is_told_at_its_first_poll() {
    let drain = Drain::new(future::empty::<(), ()>());
    drain.begin();
    let told = Rc::new(Cell::new(0));
    let mut conn = spawn(watched(&drain, &told));
    let (_, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut conn, &notify), Ok(Async::Ready(())));
    assert_eq!(told.get(), 1);
}

#[test]
fn debug_says_whether_the_drain_began_and_the_connection_was_told() {
    let drain = Drain::new(future::empty::<(), ()>());
    let conn = drain.watch(future::ok::<u8, ()>(1), |_| {});
    assert_eq!(format!("{:?}", drain), "Drain { draining: false, .. }");
    assert_eq!(
        format!("{:?}", conn),
        "Watch { conn: FutureResult { inner: Some(Ok(1)) }, told: false }"
    );
    drain.begin();
    let mut conn = spawn(conn);
    let (_, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut conn, &notify), Ok(Async::Ready(1)));
    assert_eq!(format!("{:?}", drain), "Drain { draining: true, .. }");
    assert!(format!("{:?}", conn.get_ref()).ends_with("told: true }"));
}

/// A connection polled by another task than before (moved, as a
/// hand-written select may do) has the drain wake the task that polled it
/// last.
#[test]
fn the_drain_wakes_the_task_that_polled_a_connection_last() {
    let drain = Drain::new(future::empty::<(), ()>());
    let mut conn = spawn(drain.watch(future::empty::<(), ()>(), |_| {}));
    let (first, first_notify) = CountingNotify::handle();
    let (second, second_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut conn, &first_notify),
        Ok(Async::NotReady)
    );
    assert_eq!(
        poll_future_once(&mut conn, &second_notify),
        Ok(Async::NotReady)
    );
    drain.begin();
    assert_eq!(second.count(), 1, "the last task is woken");
    assert_eq!(first.count(), 0, "the task before it is not");
}

#[test]
fn each_connection_is_told_once() {
    let drain = Drain::new(future::empty::<(), ()>());
    let told = Rc::new(Cell::new(0));
    let told_in = told.clone();
    // A connection that doesn't stop when told.
    let conn = drain.watch(future::empty::<(), ()>(), move |_| {
        told_in.set(told_in.get() + 1)
    });
    let mut conn = spawn(conn);
    let (woken, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut conn, &notify), Ok(Async::NotReady));
    drain.begin();
    assert_eq!(woken.count(), 1, "the drain woke the connection");
    for _ in 0..3 {
        assert_eq!(poll_future_once(&mut conn, &notify), Ok(Async::NotReady));
    }
    assert_eq!(told.get(), 1);
}

/// The shutdown signal keeps only the task that polled it last. A clone of
/// the drain polled by another task (say, in a `select` with a timeout that
/// won), then dropped, must not take the signal's wake-up with it: the
/// server that polled the drain before is woken, and drains.
#[test]
fn the_signal_wakes_the_server_after_a_clone_polled_by_another_task_is_dropped() {
    support::init_logging();
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let told = Rc::new(Cell::new(0));
    let accepts = stream::iter_ok::<_, ()>(vec![watched(&drain, &told)]).chain(stream::empty());
    let mut server = spawn(accepts.listen(10).with_graceful_shutdown(drain.clone()));
    let (server_woken, server_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut server, &server_notify),
        Ok(Async::NotReady)
    );

    let mut other = spawn(drain.clone());
    let (_, other_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut other, &other_notify),
        Ok(Async::NotReady)
    );
    drop(other);

    stop.send(()).unwrap();
    assert!(server_woken.count() > 0, "the signal woke the server");
    assert_eq!(
        poll_future_once(&mut server, &server_notify),
        Ok(Async::Ready(()))
    );
    assert_eq!(told.get(), 1);
}

/// The same with a clone whose task keeps it but stops polling it: both
/// tasks are woken, and the server drains.
#[test]
fn the_signal_wakes_the_server_after_a_clone_polled_by_another_task_stops_being_polled() {
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let mut server = spawn(drain.clone());
    let (server_woken, server_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut server, &server_notify),
        Ok(Async::NotReady)
    );
    let mut other = spawn(drain.clone());
    let (other_woken, other_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut other, &other_notify),
        Ok(Async::NotReady)
    );

    stop.send(()).unwrap();
    assert_eq!((server_woken.count(), other_woken.count()), (1, 1));
    assert_eq!(
        poll_future_once(&mut server, &server_notify),
        Ok(Async::Ready(()))
    );
    assert!(drain.is_draining());
    assert_eq!(other_woken.count(), 2, "woken again by the beginning");
    assert_eq!(
        poll_future_once(&mut other, &other_notify),
        Ok(Async::Ready(()))
    );
}

/// A signal that wakes its task during its own poll (as a signal that
/// yields once does) wakes the `Drain` that polls it, even on its first
/// poll.
#[test]
fn a_signal_that_wakes_during_the_first_poll_is_polled_again() {
    let mut yielded = false;
    let signal = future::poll_fn(move || {
        if yielded {
            return Ok(Async::Ready(()));
        }
        yielded = true;
        futures::task::current().notify();
        Ok::<_, ()>(Async::NotReady)
    });
    let drain = Drain::new(signal);
    let mut polled = spawn(drain.clone());
    let (woken, notify) = CountingNotify::handle();
    assert_eq!(poll_future_once(&mut polled, &notify), Ok(Async::NotReady));
    assert_eq!(woken.count(), 1, "woken during its poll");
    assert_eq!(poll_future_once(&mut polled, &notify), Ok(Async::Ready(())));
    assert!(drain.is_draining());
}

/// A task woken by the signal whose wake-up begins the drain at once is
/// woken outside the lock of the drain's waiters: no deadlock.
#[test]
fn a_wake_up_that_begins_the_drain_at_once_does_not_deadlock() {
    struct BeginsWhenWoken(Drain);

    impl Notify for BeginsWhenWoken {
        fn notify(&self, _id: usize) {
            self.0.begin();
        }
    }

    on_a_thread_bounded(|| {
        let (stop, stopped) = oneshot::channel::<()>();
        let drain = Drain::new(stopped);
        let notify = NotifyHandle::from(Arc::new(BeginsWhenWoken(drain.clone())));
        let mut polled = spawn(drain.clone());
        assert_eq!(poll_future_once(&mut polled, &notify), Ok(Async::NotReady));
        stop.send(()).unwrap();
        assert!(drain.is_draining());
    });
}

/// Runs `test` on a thread of its own, and fails if it fails or hasn't
/// returned after [`GENEROUS`] (a deadlock).
fn on_a_thread_bounded(test: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    assert_eq!(
        finished.recv_timeout(GENEROUS),
        Ok(()),
        "deadlocked or failed"
    );
}

/// A shutdown signal that fires once `stop` is sent (or dropped), and wakes
/// its task in the first poll after `yields` was raised, as a signal that
/// yields does.
fn yielding_signal(
    stopped: oneshot::Receiver<()>,
    yields: Arc<AtomicBool>,
) -> impl Future<Item = (), Error = ()> + Send {
    let mut stopped = stopped;
    future::poll_fn(move || {
        if yields.swap(false, Ordering::SeqCst) {
            futures::task::current().notify();
        }
        match stopped.poll() {
            Ok(Async::NotReady) => Ok(Async::NotReady),
            _ => Ok(Async::Ready(())),
        }
    })
}

/// An executor that polls its one task as soon as it is woken, on the
/// waking thread, unless the task is being polled already.
struct PollsInline {
    task: Mutex<Option<futures::executor::Spawn<Drain>>>,
    polls: AtomicUsize,
    itself: Mutex<Option<NotifyHandle>>,
}

impl PollsInline {
    fn new(drain: Drain) -> Arc<PollsInline> {
        let inline = Arc::new(PollsInline {
            task: Mutex::new(Some(spawn(drain))),
            polls: AtomicUsize::new(0),
            itself: Mutex::new(None),
        });
        *inline.itself.lock().unwrap() = Some(NotifyHandle::from(inline.clone()));
        inline
    }

    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
}

impl Notify for PollsInline {
    fn notify(&self, _id: usize) {
        let itself = self.itself.lock().unwrap().clone().unwrap();
        if let Ok(mut task) = self.task.try_lock() {
            if let Some(task) = task.as_mut() {
                self.polls.fetch_add(1, Ordering::SeqCst);
                let _ = task.poll_future_notify(&itself, 0);
            }
        }
    }
}

/// A signal whose poll wakes its task, with an executor that then polls
/// another clone at once, on the same thread, in the middle of the
/// signal's poll: that clone finds the signal out for polling, and is
/// polled again when the poll ends. No deadlock, no lost wake-up.
#[test]
fn a_clone_polled_inline_while_the_signal_runs_is_polled_again_after() {
    on_a_thread_bounded(|| {
        let (stop, stopped) = oneshot::channel::<()>();
        let yields = Arc::new(AtomicBool::new(false));
        let drain = Drain::new(yielding_signal(stopped, yields.clone()));
        let inline = PollsInline::new(drain.clone());
        // Polls the signal first, and registers.
        inline.notify(0);
        let polls = inline.polls();
        yields.store(true, Ordering::SeqCst);
        let mut other = spawn(drain.clone());
        let (_, other_notify) = CountingNotify::handle();
        // Its signal poll wakes the inline task, which finds the signal out.
        assert_eq!(
            poll_future_once(&mut other, &other_notify),
            Ok(Async::NotReady)
        );
        assert!(
            inline.polls() >= polls + 2,
            "polled inline, then again after the signal's poll"
        );
        drop(other);
        stop.send(()).unwrap();
        assert!(
            drain.is_draining(),
            "the inline task polled the fired signal"
        );
    });
}

/// A clone that finds the signal out for polling is woken when that poll
/// ends, and it alone: the other `Drain`s, woken once by the signal, are not
/// woken again (on a multi-thread runtime, such wake-ups of every `Drain`
/// at each collision made one wake-up of the signal cost thousands of
/// polls with 200 waiting tasks).
#[test]
fn only_the_clone_that_found_the_signal_out_is_woken_after_the_poll() {
    on_a_thread_bounded(|| {
        let (stop, stopped) = oneshot::channel::<()>();
        let yields = Arc::new(AtomicBool::new(false));
        let drain = Drain::new(yielding_signal(stopped, yields.clone()));
        let inline = PollsInline::new(drain.clone());
        inline.notify(0);
        let mut bystander = spawn(drain.clone());
        let (bystander_woken, bystander_notify) = CountingNotify::handle();
        assert_eq!(
            poll_future_once(&mut bystander, &bystander_notify),
            Ok(Async::NotReady)
        );
        let polls = inline.polls();
        yields.store(true, Ordering::SeqCst);
        let mut other = spawn(drain.clone());
        let (_, other_notify) = CountingNotify::handle();
        assert_eq!(
            poll_future_once(&mut other, &other_notify),
            Ok(Async::NotReady)
        );
        assert_eq!(inline.polls(), polls + 2, "inline, then after the poll");
        assert_eq!(bystander_woken.count(), 1, "by the signal only");
        stop.send(()).unwrap();
        assert!(drain.is_draining());
    });
}

/// The signal's wake-up wakes the `Drain` futures, not the watched
/// connections: they are told when the drain begins.
#[test]
fn the_signal_wakes_the_drains_and_not_the_connections() {
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let mut server = spawn(drain.clone());
    let (server_woken, server_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut server, &server_notify),
        Ok(Async::NotReady)
    );
    let mut connection = spawn(drain.watch(future::empty::<(), ()>(), |_| ()));
    let (connection_woken, connection_notify) = CountingNotify::handle();
    assert_eq!(
        poll_future_once(&mut connection, &connection_notify),
        Ok(Async::NotReady)
    );
    stop.send(()).unwrap();
    assert_eq!((server_woken.count(), connection_woken.count()), (1, 0));
    assert_eq!(
        poll_future_once(&mut server, &server_notify),
        Ok(Async::Ready(()))
    );
    assert_eq!(connection_woken.count(), 1, "told by the drain's beginning");
}

/// Runs `server` on `core`, failing the test after [`GENEROUS`].
fn run_bounded<F: Future>(core: &mut Core, server: F) -> F::Item {
    let give_up = Timeout::new(GENEROUS, &core.handle()).unwrap();
    match core.run(server.select2(give_up)) {
        Ok(future::Either::A((item, _))) => item,
        Ok(future::Either::B(_)) => panic!("not finished after {:?}", GENEROUS),
        Err(_) => panic!("failed"),
    }
}

/// `connections`, then a shutdown signal fired by the stream once they are
/// all taken, then nothing.
fn then_stop(
    connections: Vec<Box<dyn Future<Item = (), Error = ()>>>,
) -> (
    impl Stream<Item = Box<dyn Future<Item = (), Error = ()>>, Error = ()>,
    oneshot::Receiver<()>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut stop = Some(stop);
    let fire = stream::poll_fn(move || {
        if let Some(stop) = stop.take() {
            let _ = stop.send(());
        }
        Ok(Async::NotReady)
    });
    (stream::iter_ok(connections).chain(fire), stopped)
}

#[test]
fn the_drain_deadline_drops_what_is_left_counts_it_as_aborted_and_resolves() {
    support::init_logging();
    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let stuck = (0..10)
        .map(|_| Box::new(future::empty()) as Box<dyn Future<Item = (), Error = ()>>)
        .collect();
    let (accepts, stopped) = then_stop(stuck);
    let deadline = Duration::from_millis(50);
    // A slot to spare, so that the stream is polled again and fires.
    let server = accepts
        .listen(11)
        .with_graceful_shutdown(stopped)
        .drain_deadline(deadline, &handle);
    let stats = server.stats();
    let begun = Instant::now();
    // Read as it resolves, before it is dropped (which would abort them too).
    let at_the_end = stats.clone();
    let counts = run_bounded(
        &mut core,
        server.map(move |()| (at_the_end.aborted(), at_the_end.running())),
    );
    assert_eq!(counts, (10, 0));
    let took = begun.elapsed();
    assert!(took >= deadline, "resolved after {:?}", took);
    assert!(took < GENEROUS, "resolved after {:?}", took);
    assert_eq!(
        (stats.started(), stats.aborted(), stats.running()),
        (10, 10, 0)
    );
    let durations = stats.durations();
    assert_eq!(durations.count(), 10);
    // Each was cut at about the deadline's age.
    let under_deadline = durations
        .buckets()
        .find(|&(b, _)| b == Duration::from_millis(25));
    assert_eq!(under_deadline, Some((Duration::from_millis(25), 0)));
}

#[test]
fn a_drain_that_ends_before_its_deadline_resolves_at_once() {
    support::init_logging();
    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let drain = Drain::new(future::empty::<(), ()>());
    let told = Rc::new(Cell::new(0));
    let idle = (0..10).map(|_| watched(&drain, &told)).collect();
    let (accepts, stopped) = then_stop(idle);
    let begin = drain.clone();
    let signal = stopped.then(move |_| {
        begin.begin();
        Ok::<(), ()>(())
    });
    let server = accepts
        .listen(11)
        .with_graceful_shutdown(signal)
        .drain_deadline(GENEROUS * 100, &handle);
    let stats = server.stats();
    let begun = Instant::now();
    run_bounded(&mut core, server);
    assert!(begun.elapsed() < GENEROUS, "waited for the deadline");
    assert_eq!(told.get(), 10);
    assert_eq!(
        (stats.finished(), stats.aborted(), stats.running()),
        (10, 0, 0)
    );
}
