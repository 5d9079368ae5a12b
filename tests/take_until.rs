//! `take_until` on mock streams: what it yields, when it ends, who wakes it.

mod support;

use std::cell::Cell;
use std::rc::Rc;

use futures::sync::oneshot;
use futures::{future, stream, Async, Stream};
use tk_listen::ListenExt;

use support::{poll_stream_once, spawn, CountingNotify};

/// A stream that is never ready and counts how many times it was dropped.
struct DropCounter(Rc<Cell<usize>>);

impl Stream for DropCounter {
    type Item = u32;
    type Error = ();
    fn poll(&mut self) -> futures::Poll<Option<u32>, ()> {
        Ok(Async::NotReady)
    }
}

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A stream that is never ready: an idle listener.
fn idle<T>() -> impl Stream<Item = T, Error = ()> {
    stream::poll_fn(|| Ok(Async::NotReady))
}

#[test]
fn items_and_errors_pass_through_until_the_stream_ends() {
    let (_stop, stopped) = oneshot::channel::<()>();
    let inner = stream::iter_result(vec![Ok(1), Err("boom"), Ok(2)]);
    let mut spawned = spawn(inner.take_until(stopped));
    let (_, notify) = CountingNotify::handle();
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(Some(1)))
    );
    assert_eq!(poll_stream_once(&mut spawned, &notify), Err("boom"));
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(Some(2)))
    );
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
    assert!(spawned.get_ref().is_stopped());
}

#[test]
fn the_signal_wins_over_an_item_that_is_ready() {
    let (stop, stopped) = oneshot::channel::<()>();
    stop.send(()).unwrap();
    let mut spawned = spawn(stream::repeat::<_, ()>(7).take_until(stopped));
    let (_, notify) = CountingNotify::handle();
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
}

#[test]
fn an_idle_stream_is_woken_by_the_signal_and_ends() {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut spawned = spawn(idle::<u32>().take_until(stopped));
    let (woken, notify) = CountingNotify::handle();
    assert_eq!(poll_stream_once(&mut spawned, &notify), Ok(Async::NotReady));
    assert_eq!(woken.count(), 0);
    stop.send(()).unwrap();
    assert!(woken.count() >= 1, "the signal did not wake the task");
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
}

#[test]
fn a_dropped_sender_counts_as_the_signal() {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut spawned = spawn(idle::<u32>().take_until(stopped));
    let (woken, notify) = CountingNotify::handle();
    assert_eq!(poll_stream_once(&mut spawned, &notify), Ok(Async::NotReady));
    drop(stop);
    assert!(
        woken.count() >= 1,
        "the dropped sender did not wake the task"
    );
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
}

#[test]
fn a_failing_signal_counts_as_the_signal() {
    let signal = future::err::<(), &str>("signal source broke");
    let mut spawned = spawn(stream::repeat::<_, ()>(7).take_until(signal));
    let (_, notify) = CountingNotify::handle();
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
}

#[test]
fn the_inner_stream_is_dropped_as_soon_as_the_signal_fires() {
    let drops = Rc::new(Cell::new(0));
    let (stop, stopped) = oneshot::channel::<()>();
    let mut spawned = spawn(DropCounter(drops.clone()).take_until(stopped));
    let (_, notify) = CountingNotify::handle();
    assert_eq!(poll_stream_once(&mut spawned, &notify), Ok(Async::NotReady));
    stop.send(()).unwrap();
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
    assert_eq!(drops.get(), 1, "the inner stream outlived the signal");
    assert!(spawned.get_ref().get_ref().is_none());
    // Polling again after the end stays at the end.
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
}

#[test]
fn listen_resolves_when_the_signal_fires_on_an_idle_stream() {
    let (stop, stopped) = oneshot::channel::<()>();
    let connections = idle::<future::FutureResult<(), ()>>();
    let mut spawned = spawn(connections.take_until(stopped).listen(4));
    let (woken, notify) = CountingNotify::handle();
    assert_eq!(
        support::poll_future_once(&mut spawned, &notify),
        Ok(Async::NotReady)
    );
    stop.send(()).unwrap();
    assert!(woken.count() >= 1);
    assert_eq!(
        support::poll_future_once(&mut spawned, &notify),
        Ok(Async::Ready(()))
    );
}

#[test]
fn debug_shows_the_inner_stream_until_it_is_dropped() {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut spawned = spawn(stream::iter_ok::<_, ()>(vec![1]).take_until(stopped));
    assert!(format!("{:?}", spawned.get_ref()).contains("Some"));
    stop.send(()).unwrap();
    let (_, notify) = CountingNotify::handle();
    assert_eq!(
        poll_stream_once(&mut spawned, &notify),
        Ok(Async::Ready(None))
    );
    assert!(format!("{:?}", spawned.get_ref()).starts_with("TakeUntil { stream: None"));
}
