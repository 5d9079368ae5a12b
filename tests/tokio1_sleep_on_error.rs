//! `tokio1::ListenExt::sleep_on_error`: which accept errors are skipped,
//! which pause, the poll budget and the counters. Mock streams, no sockets.

mod support;
mod tokio1_support;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tk_listen::tokio1::ListenExt;
use tokio::runtime::Builder;
use tokio_stream::{Stream, StreamExt};

use support::{os_error, per_connection_errors, resource_errors, GENEROUS};
use tokio1_support::{poll_stream_once, run, stream_fn, CountingNotify, StreamFn, FLAVOURS};

/// Long enough that a test which paused by mistake could never pass.
const FOREVER: Duration = Duration::from_secs(3600);

/// A runtime whose context the hand-polled tests enter, so that a pause can
/// start its timer; its tasks never run.
fn timer_runtime() -> tokio::runtime::Runtime {
    Builder::new_current_thread().enable_time().build().unwrap()
}

/// A stream of `results`, counting how often it is polled.
fn counted(
    results: Vec<io::Result<u32>>,
) -> (Rc<Cell<usize>>, impl Stream<Item = io::Result<u32>> + Unpin) {
    let polls = Rc::new(Cell::new(0));
    let counter = polls.clone();
    let mut results = results.into_iter();
    let stream = stream_fn(move |_: &mut std::task::Context<'_>| {
        counter.set(counter.get() + 1);
        Poll::Ready(results.next())
    });
    (polls, stream)
}

#[test]
fn per_connection_errors_are_skipped_without_delay() {
    let runtime = timer_runtime();
    let _context = runtime.enter();
    for error in per_connection_errors() {
        let description = error.to_string();
        let (_, accepts) = counted(vec![Err(error), Ok(7)]);
        let mut skipping = accepts.sleep_on_error(FOREVER);
        let stats = skipping.stats();
        let (_, waker) = CountingNotify::waker();
        // The item behind the error comes out of the very same poll: no pause.
        match poll_stream_once(&mut skipping, &waker) {
            Poll::Ready(Some(7)) => {}
            other => panic!("{} was not skipped at once: {:?}", description, other),
        }
        assert_eq!(
            (stats.accepted(), stats.skipped(), stats.pauses()),
            (1, 1, 0),
            "{}",
            description
        );
    }
}

#[test]
fn resource_errors_stop_accepting_until_woken_by_the_timer() {
    let runtime = timer_runtime();
    let _context = runtime.enter();
    for error in resource_errors() {
        let description = error.to_string();
        let code = error.raw_os_error();
        let (polls, accepts) = counted(vec![Err(error), Ok(7)]);
        let mut pausing = accepts.sleep_on_error(FOREVER);
        let stats = pausing.stats();
        let (woken, waker) = CountingNotify::waker();
        for _ in 0..3 {
            match poll_stream_once(&mut pausing, &waker) {
                Poll::Pending => {}
                other => panic!("{} did not pause: {:?}", description, other),
            }
        }
        assert_eq!(
            polls.get(),
            1,
            "{}: accept() was called during the pause",
            description
        );
        assert_eq!(woken.count(), 0, "{}: woken before the timer", description);
        assert_eq!((stats.skipped(), stats.pauses()), (0, 1), "{}", description);
        assert!(stats.is_paused(), "{}", description);
        let cause = stats.last_pause_error().expect("the pause's cause");
        assert_eq!(cause.raw_os_error(), code, "{}", description);
        assert_eq!(cause.to_string(), description);
    }
}

#[test]
fn resource_errors_pause_for_the_delay_then_accepting_resumes() {
    let delay = Duration::from_millis(100);
    for flavour in FLAVOURS {
        for error in resource_errors() {
            let description = error.to_string();
            let accepts = tokio_stream::iter(vec![Ok(1), Err(error), Ok(2)]);
            let pausing = accepts.sleep_on_error(delay);
            let stats = pausing.stats();
            let started = Instant::now();
            let items: Vec<u32> = run(flavour, pausing.collect());
            let waited = started.elapsed();
            assert_eq!(items, vec![1, 2], "{}", description);
            assert!(
                waited >= delay,
                "{:?} {}: paused only {:?}",
                flavour,
                description,
                waited
            );
            assert!(!stats.is_paused());
            assert_eq!((stats.accepted(), stats.pauses()), (2, 1));
            assert!(
                stats.paused_time() >= delay && stats.paused_time() <= waited,
                "{:?} {}: paused_time {:?}, waited {:?}",
                flavour,
                description,
                stats.paused_time(),
                waited
            );
        }
    }
}

#[test]
fn items_and_the_end_of_the_stream_pass_through_unchanged() {
    for flavour in FLAVOURS {
        let accepts = tokio_stream::iter(vec![Ok("a"), Ok("b"), Ok("c")]);
        let items: Vec<&str> = run(flavour, accepts.sleep_on_error(FOREVER).collect());
        assert_eq!(items, vec!["a", "b", "c"]);
    }
}

#[test]
fn a_long_run_of_skipped_errors_yields_and_asks_to_be_polled_again() {
    let runtime = timer_runtime();
    let _context = runtime.enter();
    let polls = Rc::new(Cell::new(0));
    let counter = polls.clone();
    let resets = StreamFn(move |_: &mut std::task::Context<'_>| {
        counter.set(counter.get() + 1);
        Poll::Ready(Some(Err::<(), _>(io::Error::from(
            io::ErrorKind::ConnectionReset,
        ))))
    });
    let mut skipping = resets.sleep_on_error(FOREVER);
    let (woken, waker) = CountingNotify::waker();
    assert!(poll_stream_once(&mut skipping, &waker).is_pending());
    assert_eq!(polls.get(), 64, "errors skipped in one poll");
    assert_eq!(woken.count(), 1, "the task must ask to be polled again");
    assert!(poll_stream_once(&mut skipping, &waker).is_pending());
    assert_eq!(polls.get(), 128, "the next poll carries on skipping");
    assert_eq!(skipping.stats().skipped(), 128);
}

#[test]
fn a_zero_delay_retries_within_the_budget_instead_of_spinning_in_one_poll() {
    let runtime = timer_runtime();
    let _context = runtime.enter();
    let polls = Rc::new(Cell::new(0));
    let counter = polls.clone();
    let exhausted = StreamFn(move |_: &mut std::task::Context<'_>| {
        counter.set(counter.get() + 1);
        // Bounded, so that a broken implementation finishes (and fails) too.
        if counter.get() > 100_000 {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Err::<(), _>(os_error(libc::EMFILE))))
        }
    });
    let mut pausing = exhausted.sleep_on_error(Duration::ZERO);
    let (_, waker) = CountingNotify::waker();
    assert!(poll_stream_once(&mut pausing, &waker).is_pending());
    assert!(
        polls.get() <= 64,
        "accept() retried {} times in one poll",
        polls.get()
    );
}

#[test]
fn endless_connection_resets_let_other_tasks_run() {
    for flavour in FLAVOURS {
        // Bounded so that a broken implementation finishes (and fails) too.
        let errors_in_total = 100_000;
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = polls.clone();
        let resets = StreamFn(move |_: &mut std::task::Context<'_>| {
            if counter.fetch_add(1, Ordering::SeqCst) >= errors_in_total {
                Poll::Ready(None::<io::Result<()>>)
            } else {
                Poll::Ready(Some(Err(io::ErrorKind::ConnectionReset.into())))
            }
        });
        let seen = run(flavour, async move {
            // Both on the same worker: the skipping task first, then the
            // one that reports how far it had got.
            let skipping = tokio::task::spawn_local(async move {
                let mut skipping = resets.sleep_on_error(FOREVER);
                while skipping.next().await.is_some() {}
            });
            let other = tokio::task::spawn_local(async move { polls.load(Ordering::SeqCst) });
            let seen = other.await.unwrap();
            skipping.await.unwrap();
            seen
        });
        assert!(
            seen < errors_in_total,
            "{:?}: the other task ran only after all {} errors",
            flavour,
            seen
        );
    }
}

#[test]
fn delays_too_long_for_the_timer_pause_instead_of_panicking() {
    let runtime = timer_runtime();
    let _context = runtime.enter();
    for delay in [Duration::MAX, Duration::from_secs(10 * 365 * 24 * 3600)] {
        let (_, accepts) = counted(vec![Err(os_error(libc::EMFILE)), Ok(7)]);
        let mut pausing = accepts.sleep_on_error(delay);
        let (_, waker) = CountingNotify::waker();
        assert!(
            poll_stream_once(&mut pausing, &waker).is_pending(),
            "{:?}",
            delay
        );
    }
}

#[test]
fn a_pause_cut_short_by_dropping_the_stream_still_counts_its_time() {
    for flavour in FLAVOURS {
        let stats = run(flavour, async {
            let (_, accepts) = counted(vec![Err(os_error(libc::EMFILE)), Ok(7)]);
            let mut pausing = accepts.sleep_on_error(FOREVER);
            let stats = pausing.stats();
            let cut = Duration::from_millis(50);
            assert!(tokio::time::timeout(cut, pausing.next()).await.is_err());
            assert!(stats.is_paused());
            assert!(stats.paused_time() >= cut);
            drop(pausing);
            stats
        });
        assert!(!stats.is_paused(), "{:?}", flavour);
        let paused = stats.paused_time();
        assert!(
            paused >= Duration::from_millis(50) && paused < GENEROUS,
            "{:?}: paused_time {:?}",
            flavour,
            paused
        );
        // Stopped counting when the pause was dropped.
        assert_eq!(stats.paused_time(), paused);
    }
}
