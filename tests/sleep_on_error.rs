//! `sleep_on_error`: which accept errors are skipped, which pause, and that
//! skipping never starves the event loop. Mock streams, no sockets.

mod support;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::Either;
use futures::{stream, Async, Future, Stream};
use tk_listen::ListenExt;
use tokio_core::reactor::{Core, Timeout};

use support::{
    os_error, per_connection_errors, poll_stream_once, progress_when_another_task_ran,
    resource_errors, spawn, CountingNotify, GENEROUS,
};

/// Long enough that a test which paused by mistake could never pass.
const FOREVER: Duration = Duration::from_secs(3600);

#[test]
fn per_connection_errors_are_skipped_without_delay() {
    let core = Core::new().unwrap();
    for error in per_connection_errors() {
        let description = error.to_string();
        let accepts = stream::iter_result(vec![Err(error), Ok(7)]);
        let mut skipping = spawn(accepts.sleep_on_error(FOREVER, &core.handle()));
        let (_, notify) = CountingNotify::handle();
        // The item behind the error comes out of the very same poll: no pause.
        match poll_stream_once(&mut skipping, &notify) {
            Ok(Async::Ready(Some(7))) => {}
            other => panic!("{} was not skipped at once: {:?}", description, other),
        }
    }
}

#[test]
fn resource_errors_stop_accepting_until_woken_by_the_timer() {
    let core = Core::new().unwrap();
    for error in resource_errors() {
        let description = error.to_string();
        let polls = Rc::new(Cell::new(0));
        let counted = polls.clone();
        let mut results = vec![Err(error), Ok(7)].into_iter();
        let accepts = stream::poll_fn(move || {
            counted.set(counted.get() + 1);
            results.next().transpose().map(Async::Ready)
        });
        let mut pausing = spawn(accepts.sleep_on_error(FOREVER, &core.handle()));
        let (woken, notify) = CountingNotify::handle();
        for _ in 0..3 {
            match poll_stream_once(&mut pausing, &notify) {
                Ok(Async::NotReady) => {}
                other => panic!("{} did not pause: {:?}", description, other),
            }
        }
        assert_eq!(
            polls.get(),
            1,
            "{}: accept() was called during the pause",
            description
        );
        assert_eq!(
            woken.count(),
            0,
            "{}: woken before the timer fired",
            description
        );
    }
}

/// Runs `future`; fails the test if it doesn't finish within [`GENEROUS`]
/// (for instance, because nothing woke the task after a pause).
fn run_or_fail<F: Future>(core: &mut Core, future: F) -> F::Item
where
    F::Error: std::fmt::Debug,
{
    let limit = Timeout::new(GENEROUS, &core.handle()).unwrap();
    match core.run(future.select2(limit)) {
        Ok(Either::A((item, _))) => item,
        Ok(Either::B(_)) => panic!("not finished after {:?}", GENEROUS),
        Err(Either::A((e, _))) => panic!("failed: {:?}", e),
        Err(Either::B((e, _))) => panic!("timer failed: {}", e),
    }
}

#[test]
fn resource_errors_pause_for_the_delay_then_accepting_resumes() {
    let mut core = Core::new().unwrap();
    let delay = Duration::from_millis(100);
    for error in resource_errors() {
        let description = error.to_string();
        let accepts = stream::iter_result(vec![Ok(1), Err(error), Ok(2)]);
        let started = Instant::now();
        let pausing = accepts.sleep_on_error(delay, &core.handle());
        let items = run_or_fail(&mut core, pausing.collect());
        let waited = started.elapsed();
        assert_eq!(items, vec![1, 2], "{}", description);
        assert!(
            waited >= delay * 9 / 10,
            "{}: paused only {:?}",
            description,
            waited
        );
        assert!(waited < GENEROUS, "{}: paused {:?}", description, waited);
    }
}

#[test]
fn items_and_the_end_of_the_stream_pass_through_unchanged() {
    let mut core = Core::new().unwrap();
    let accepts = stream::iter_ok::<_, io::Error>(vec!["a", "b", "c"]);
    let items = core
        .run(accepts.sleep_on_error(FOREVER, &core.handle()).collect())
        .unwrap();
    assert_eq!(items, vec!["a", "b", "c"]);
}

#[test]
fn a_long_run_of_skipped_errors_yields_and_asks_to_be_polled_again() {
    let core = Core::new().unwrap();
    let polls = Rc::new(Cell::new(0));
    let counted = polls.clone();
    let resets = stream::poll_fn(move || -> Result<Async<Option<()>>, io::Error> {
        counted.set(counted.get() + 1);
        Err(io::ErrorKind::ConnectionReset.into())
    });
    let mut skipping = spawn(resets.sleep_on_error(FOREVER, &core.handle()));
    let (woken, notify) = CountingNotify::handle();
    assert!(matches!(
        poll_stream_once(&mut skipping, &notify),
        Ok(Async::NotReady)
    ));
    assert_eq!(polls.get(), 64, "errors skipped in one poll");
    assert_eq!(woken.count(), 1, "the task must ask to be polled again");
    assert!(matches!(
        poll_stream_once(&mut skipping, &notify),
        Ok(Async::NotReady)
    ));
    assert_eq!(polls.get(), 128, "the next poll carries on skipping");
}

#[test]
fn endless_connection_resets_let_other_tasks_on_the_core_run() {
    let mut core = Core::new().unwrap();
    // Bounded so that a broken implementation finishes (and fails) too.
    let errors_in_total = 100_000;
    let polls = Rc::new(Cell::new(0));
    let counted = polls.clone();
    let resets = stream::poll_fn(move || {
        counted.set(counted.get() + 1);
        if counted.get() > errors_in_total {
            Ok(Async::Ready(None::<()>))
        } else {
            Err(io::ErrorKind::ConnectionReset.into())
        }
    });
    let skipping = resets
        .sleep_on_error(FOREVER, &core.handle())
        .for_each(|()| Ok(()));
    match progress_when_another_task_ran(&mut core, &polls, skipping) {
        Some(polls) => assert!(
            polls < errors_in_total,
            "the other task ran only after all {} errors",
            polls
        ),
        None => panic!("the other task never ran while errors were skipped"),
    }
}

#[test]
fn delays_too_long_for_the_timer_pause_instead_of_panicking() {
    let core = Core::new().unwrap();
    for delay in [Duration::MAX, Duration::from_secs(10 * 365 * 24 * 3600)] {
        let accepts = stream::iter_result(vec![Err(os_error(libc::EMFILE)), Ok(7)]);
        let mut pausing = spawn(accepts.sleep_on_error(delay, &core.handle()));
        let (_, notify) = CountingNotify::handle();
        assert_eq!(
            poll_stream_once(&mut pausing, &notify),
            Ok(Async::NotReady),
            "{:?}",
            delay
        );
    }
}
