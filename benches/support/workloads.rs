//! Socket-free workloads for the pure cost of the combinators: timed by
//! criterion in `overhead.rs`, counted by `callgrind.rs` for
//! `benches/callgrind.sh`.
//!
//! Ready futures and ready items are the worst case for an adapter's relative
//! cost: there is no I/O to hide it behind.

use std::io;
use std::time::Duration;

use criterion::black_box;
use futures::{future, stream, Future, Stream};
use tk_listen::ListenExt;
use tokio_core::reactor::Handle;

/// Futures or items per run of a workload.
pub const ITEMS: usize = 100_000;

/// The workloads by name, as `callgrind.sh` calls them.
pub const NAMES: [&str; 5] = [
    "listen",
    "buffer_unordered",
    "buffer_unordered_swallowing",
    "sleep_on_error",
    "bare_stream",
];

/// Runs the workload `name` once; `n` is the number of futures in flight
/// for the first three.
///
/// # Panics
///
/// Panics if there is no workload called `name`.
pub fn run(name: &str, n: usize, handle: &Handle) {
    match name {
        "listen" => listen(n),
        "buffer_unordered" => buffer_unordered(n),
        "buffer_unordered_swallowing" => buffer_unordered_swallowing(n),
        "sleep_on_error" => {
            black_box(sleep_on_error(handle));
        }
        "bare_stream" => {
            black_box(bare_stream());
        }
        other => panic!("unknown workload {other:?}; use one of {NAMES:?}"),
    }
}

fn ready_futures() -> impl Stream<Item = future::FutureResult<(), ()>, Error = ()> {
    stream::iter_ok((0..ITEMS).map(|_| future::ok(())))
}

/// `listen(n)` over [`ITEMS`] ready futures.
#[inline(never)]
pub fn listen(n: usize) {
    ready_futures().listen(n).wait().unwrap();
}

/// `buffer_unordered(n).for_each(..)`, which `listen` is built on.
#[inline(never)]
pub fn buffer_unordered(n: usize) {
    ready_futures()
        .buffer_unordered(n)
        .for_each(|()| Ok(()))
        .wait()
        .unwrap();
}

/// What a hand-written loop needs to match `listen`'s semantics: the futures'
/// errors are swallowed instead of ending the loop.
#[inline(never)]
pub fn buffer_unordered_swallowing(n: usize) {
    ready_futures()
        .map(|f| f.then(|_| Ok::<(), ()>(())))
        .buffer_unordered(n)
        .for_each(|()| Ok(()))
        .wait()
        .unwrap();
}

fn ok_items() -> impl Stream<Item = usize, Error = io::Error> {
    stream::iter_ok(0..ITEMS)
}

/// `sleep_on_error` over [`ITEMS`] `Ok` items.
#[inline(never)]
pub fn sleep_on_error(handle: &Handle) -> usize {
    let mut sum = 0;
    ok_items()
        .sleep_on_error(Duration::from_millis(100), handle)
        .for_each(|i| {
            sum += black_box(i);
            Ok(())
        })
        .wait()
        .unwrap();
    sum
}

/// The same [`ITEMS`] `Ok` items without `sleep_on_error`.
#[inline(never)]
pub fn bare_stream() -> usize {
    let mut sum = 0;
    ok_items()
        .for_each(|i| {
            sum += black_box(i);
            Ok(())
        })
        .wait()
        .unwrap();
    sum
}
