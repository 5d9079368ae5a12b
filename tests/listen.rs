//! `listen(n)`: the concurrency limit, draining, error handling. Mock streams
//! and mock connection futures, polled by hand so every step is deterministic.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::executor::{NotifyHandle, Spawn};
use futures::future::{self, FutureResult};
use futures::sync::oneshot;
use futures::task::{self, Task};
use futures::{Async, Future, Poll, Stream};
use proptest::prelude::*;
use tk_listen::{Listen, ListenExt, ListenStats};
use tokio_core::reactor::Core;

use support::{poll_future_once, progress_when_another_task_ran, spawn, CountingNotify};

/// What the mock accept stream and its connections have done so far.
#[derive(Default)]
struct Script {
    /// Clients waiting in the "backlog": the stream yields one per poll.
    waiting: usize,
    /// Whether the stream ends once the backlog is empty.
    ended: bool,
    /// An error the stream returns once the backlog is empty.
    error: Option<&'static str>,
    /// One per accepted connection: `Some` while it runs; send `true` to
    /// finish it, `false` to fail it.
    running: Vec<Option<oneshot::Sender<bool>>>,
    in_flight: usize,
    max_in_flight: usize,
    finished: usize,
    /// The task the stream last said `NotReady` to: a stream must wake it
    /// when it has something new, and `listen` relies on that.
    waiter: Option<Task>,
}

impl Script {
    /// Changes the script as `change` says, and wakes the stream's task.
    fn update(shared: &Shared, change: impl FnOnce(&mut Script)) {
        let waiter = {
            let mut script = shared.borrow_mut();
            change(&mut script);
            script.waiter.take()
        };
        if let Some(task) = waiter {
            task.notify();
        }
    }
}

type Shared = Rc<RefCell<Script>>;

struct Accepts(Shared);

impl Stream for Accepts {
    type Item = Connection;
    type Error = &'static str;

    fn poll(&mut self) -> Poll<Option<Connection>, &'static str> {
        let mut script = self.0.borrow_mut();
        if script.waiting > 0 {
            script.waiting -= 1;
            let (finish, finished) = oneshot::channel();
            script.running.push(Some(finish));
            script.in_flight += 1;
            script.max_in_flight = script.max_in_flight.max(script.in_flight);
            return Ok(Async::Ready(Some(Connection {
                finished,
                script: self.0.clone(),
            })));
        }
        if let Some(error) = script.error.take() {
            return Err(error);
        }
        if script.ended {
            return Ok(Async::Ready(None));
        }
        script.waiter = Some(task::current());
        Ok(Async::NotReady)
    }
}

struct Connection {
    finished: oneshot::Receiver<bool>,
    script: Shared,
}

impl Future for Connection {
    type Item = ();
    type Error = ();

    fn poll(&mut self) -> Poll<(), ()> {
        let finished = self.finished.poll();
        if let Ok(Async::NotReady) = finished {
            return Ok(Async::NotReady);
        }
        let mut script = self.script.borrow_mut();
        script.in_flight -= 1;
        script.finished += 1;
        let succeeded = match finished {
            Ok(Async::Ready(succeeded)) => succeeded,
            // `Harness::panic` dropped the sender.
            _ => {
                drop(script);
                panic!("a mock connection panics on purpose");
            }
        };
        if succeeded {
            Ok(Async::Ready(()))
        } else {
            Err(())
        }
    }
}

/// A `listen(n)` over a scripted stream, polled by hand.
struct Harness {
    script: Shared,
    listen: Spawn<Listen<Accepts>>,
    stats: ListenStats,
    notify: NotifyHandle,
}

impl Harness {
    fn new(max_connections: usize, waiting: usize) -> Harness {
        let script = Shared::default();
        script.borrow_mut().waiting = waiting;
        let listen = Accepts(script.clone()).listen(max_connections);
        let stats = listen.stats();
        let (_, notify) = CountingNotify::handle();
        Harness {
            script,
            listen: spawn(listen),
            stats,
            notify,
        }
    }

    fn poll(&mut self) -> Poll<(), &'static str> {
        poll_future_once(&mut self.listen, &self.notify)
    }

    /// Finishes the `nth` connection still running (in acceptance order).
    fn finish(&mut self, nth: usize, succeed: bool) {
        self.take_sender(nth).send(succeed).unwrap();
    }

    /// Makes the `nth` connection still running panic at its next poll.
    fn panic(&mut self, nth: usize) {
        drop(self.take_sender(nth));
    }

    fn take_sender(&mut self, nth: usize) -> oneshot::Sender<bool> {
        let mut script = self.script.borrow_mut();
        script
            .running
            .iter_mut()
            .filter(|s| s.is_some())
            .nth(nth)
            .expect("no such running connection")
            .take()
            .unwrap()
    }

    /// `(started, running, finished, failed, panicked)`.
    fn counts(&self) -> (u64, u64, u64, u64, u64) {
        let s = &self.stats;
        (
            s.started(),
            s.running(),
            s.finished(),
            s.failed(),
            s.panicked(),
        )
    }

    fn running(&self) -> usize {
        self.script.borrow().running.iter().flatten().count()
    }

    fn accepted(&self) -> usize {
        self.script.borrow().running.len()
    }
}

#[test]
fn the_stream_is_not_polled_while_the_pool_is_full() {
    let mut server = Harness::new(3, 10);
    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.accepted(), 3, "exactly n accepted under load");
    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.accepted(), 3, "accepted more while full");
    server.finish(1, true);
    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.accepted(), 4, "a finished connection frees one slot");
    assert_eq!(server.script.borrow().max_in_flight, 3);
}

#[test]
fn every_connection_completes_and_the_future_resolves_only_after_the_last() {
    let mut server = Harness::new(2, 5);
    Script::update(&server.script, |s| s.ended = true);
    for _ in 0..4 {
        assert_eq!(server.poll(), Ok(Async::NotReady));
        server.finish(0, true);
    }
    assert_eq!(
        server.poll(),
        Ok(Async::NotReady),
        "resolved with one still running"
    );
    assert_eq!(server.running(), 1);
    server.finish(0, true);
    assert_eq!(server.poll(), Ok(Async::Ready(())));
    let script = server.script.borrow();
    assert_eq!((script.finished, script.max_in_flight), (5, 2));
}

#[test]
fn failing_connections_do_not_stop_the_listener() {
    let mut server = Harness::new(2, 6);
    Script::update(&server.script, |s| s.ended = true);
    let mut fail = true;
    while server.poll() == Ok(Async::NotReady) {
        assert!(server.running() > 0, "stalled with nothing running");
        server.finish(0, !fail);
        fail = !fail;
    }
    assert_eq!(server.script.borrow().finished, 6);
}

#[test]
fn an_error_of_the_stream_resolves_the_future_with_it() {
    let mut server = Harness::new(4, 2);
    Script::update(&server.script, |s| s.error = Some("accept failed"));
    assert_eq!(server.poll(), Err("accept failed"));
}

#[test]
#[should_panic(expected = "listen(0) would never accept a connection")]
fn listen_zero_panics_with_a_message_that_says_why() {
    let _ = Harness::new(0, 1);
}

#[test]
fn wait_works_without_an_event_loop() {
    let connections =
        futures::stream::iter_ok::<_, ()>((0..100).map(
            |i| {
                if i % 3 == 0 {
                    Err(())
                } else {
                    Ok(())
                }
            },
        ));
    assert_eq!(connections.listen(7).wait(), Ok(()));
}

#[test]
fn a_flood_of_connections_that_finish_at_once_lets_other_tasks_run() {
    let mut core = Core::new().unwrap();
    // Bounded so that a broken implementation finishes (and fails) too.
    let connections_in_total = 100_000;
    let accepted = Rc::new(Cell::new(0));
    let counted = accepted.clone();
    let flood = futures::stream::poll_fn(move || -> Poll<Option<FutureResult<(), ()>>, ()> {
        if counted.get() == connections_in_total {
            return Ok(Async::Ready(None));
        }
        counted.set(counted.get() + 1);
        Ok(Async::Ready(Some(future::ok(()))))
    });
    match progress_when_another_task_ran(&mut core, &accepted, flood.listen(10)) {
        Some(accepted) => assert!(
            accepted < connections_in_total,
            "the other task ran only after all {} connections",
            accepted
        ),
        None => panic!("the other task never ran during the flood"),
    }
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Step {
    /// A client arrives in the backlog.
    Arrive,
    /// The `usize`-th running connection (modulo how many run) finishes;
    /// `false` makes it fail.
    Finish(usize, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Arrive),
        (any::<usize>(), any::<bool>()).prop_map(|(nth, ok)| Step::Finish(nth, ok)),
    ]
}

proptest! {
    #[test]
    fn any_schedule_respects_the_limit_and_completes_everything_once(
        max_connections in 1usize..6,
        steps in proptest::collection::vec(step(), 0..60),
        finish_order in proptest::collection::vec(any::<usize>(), 60),
    ) {
        let mut server = Harness::new(max_connections, 0);
        let mut arrived = 0;
        for step in steps {
            match step {
                Step::Arrive => {
                    arrived += 1;
                    Script::update(&server.script, |s| s.waiting += 1);
                }
                Step::Finish(nth, ok) => {
                    let running = server.running();
                    if running > 0 {
                        server.finish(nth % running, ok);
                    }
                }
            }
            prop_assert_eq!(server.poll(), Ok(Async::NotReady), "resolved before the end");
            prop_assert!(server.script.borrow().in_flight <= max_connections);
            let (started, running, finished, failed, panicked) = server.counts();
            prop_assert!(running <= max_connections as u64);
            prop_assert_eq!(started, finished + failed + panicked + running);
            prop_assert_eq!(running, server.running() as u64);
        }

        // The stream ends; drain in a random order. It resolves exactly when
        // the last connection is done, never before.
        Script::update(&server.script, |s| s.ended = true);
        let mut order = finish_order.into_iter().cycle();
        let mut resolved = server.poll() == Ok(Async::Ready(()));
        for _ in 0..=arrived {
            if resolved {
                break;
            }
            let running = server.running();
            prop_assert!(running > 0, "not resolved although nothing runs");
            server.finish(order.next().unwrap() % running, true);
            prop_assert!(server.script.borrow().in_flight <= max_connections);
            resolved = server.poll() == Ok(Async::Ready(()));
            let (started, running, finished, failed, panicked) = server.counts();
            prop_assert_eq!(started, finished + failed + panicked + running);
        }
        prop_assert!(resolved, "never resolved");
        let script = server.script.borrow();
        prop_assert_eq!(script.finished, arrived);
        prop_assert_eq!(server.running(), 0);
        prop_assert_eq!(script.waiting, 0);
    }
}

#[test]
fn the_counters_follow_every_start_and_end_exactly() {
    let mut server = Harness::new(2, 4);
    assert_eq!(server.stats.max_connections(), 2);
    assert_eq!(
        server.counts(),
        (0, 0, 0, 0, 0),
        "nothing before the first poll"
    );

    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.counts(), (2, 2, 0, 0, 0), "two started, two wait");
    server.finish(0, true);
    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.counts(), (3, 2, 1, 0, 0));
    server.finish(0, false);
    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.counts(), (4, 2, 1, 1, 0));
    server.panic(1);
    assert_eq!(server.poll(), Ok(Async::NotReady));
    assert_eq!(server.counts(), (4, 1, 1, 1, 1), "the panic freed its slot");

    Script::update(&server.script, |s| s.ended = true);
    server.finish(0, true);
    assert_eq!(server.poll(), Ok(Async::Ready(())));
    assert_eq!(server.counts(), (4, 0, 2, 1, 1));
}

#[test]
fn debug_shows_the_cap_and_counters_even_for_a_stream_with_a_closure() {
    let connections = futures::stream::iter_ok::<_, ()>(vec![1, 2])
        .map(|_| future::ok::<(), ()>(()))
        .listen(7);
    let printed = format!(
        "{:?}",
        connections.with_graceful_shutdown(future::empty::<(), ()>())
    );
    assert!(printed.contains("max_connections: 7"), "{}", printed);
    assert!(printed.contains("running: 0"), "{}", printed);
}
