//! Pure combinator cost, no sockets (criterion).
//!
//! * `listen(n)` over a stream of 100 000 ready futures, against the
//!   hand-written `buffer_unordered(n).for_each(..)` it is built on, and
//!   against the hand-written loop with `listen`'s semantics (each future's
//!   error swallowed with `then`, so that one failure doesn't end the loop);
//! * `sleep_on_error` over a stream of 100 000 `Ok` items, against the bare
//!   stream.
//!
//! Ready futures and ready items are the worst case for an adapter's relative
//! cost: there is no I/O to hide it behind.
//!
//! Run: `cargo bench --bench overhead`. With `TK_OVERHEAD_ONCE=<workload>`
//! (one of `listen`, `buffer_unordered`, `buffer_unordered_swallowing`,
//! `sleep_on_error`, `bare_stream`) the
//! binary runs that workload `TK_OVERHEAD_REPEAT` times (default 10) without
//! criterion and exits, for counting instructions with
//! `valgrind --tool=callgrind`.

mod support;

use std::io;
use std::time::Duration;

use criterion::{black_box, criterion_group, Criterion};
use futures::{future, stream, Future, Stream};
use tk_listen::ListenExt;
use tokio_core::reactor::{Core, Handle};

const ITEMS: usize = 100_000;
const IN_FLIGHT: [usize; 2] = [100, 1000];

fn ready_futures() -> impl Stream<Item = future::FutureResult<(), ()>, Error = ()> {
    stream::iter_ok((0..ITEMS).map(|_| future::ok(())))
}

#[inline(never)]
fn workload_listen(n: usize) {
    ready_futures().listen(n).wait().unwrap();
}

#[inline(never)]
fn workload_buffer_unordered(n: usize) {
    ready_futures()
        .buffer_unordered(n)
        .for_each(|()| Ok(()))
        .wait()
        .unwrap();
}

/// What a hand-written loop needs to match `listen`'s semantics: the futures'
/// errors are swallowed instead of ending the loop.
#[inline(never)]
fn workload_buffer_unordered_swallowing(n: usize) {
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

#[inline(never)]
fn workload_sleep_on_error(handle: &Handle) -> usize {
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

#[inline(never)]
fn workload_bare_stream() -> usize {
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

fn listen_vs_buffer_unordered(c: &mut Criterion) {
    for n in IN_FLIGHT {
        let mut group = c.benchmark_group(format!("100k ready futures, n={n}"));
        group.bench_function("listen(n)", |b| b.iter(|| workload_listen(n)));
        group.bench_function("buffer_unordered(n).for_each", |b| {
            b.iter(|| workload_buffer_unordered(n))
        });
        group.bench_function("map(then).buffer_unordered(n).for_each", |b| {
            b.iter(|| workload_buffer_unordered_swallowing(n))
        });
        group.finish();
    }
}

fn sleep_on_error_vs_bare(c: &mut Criterion) {
    let core = Core::new().expect("event loop");
    let handle = core.handle();
    let mut group = c.benchmark_group("100k Ok items");
    group.bench_function("sleep_on_error", |b| {
        b.iter(|| workload_sleep_on_error(&handle))
    });
    group.bench_function("bare stream", |b| b.iter(workload_bare_stream));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = listen_vs_buffer_unordered, sleep_on_error_vs_bare
}

fn main() {
    if let Ok(workload) = std::env::var("TK_OVERHEAD_ONCE") {
        let repeat = support::env_usize("TK_OVERHEAD_REPEAT", 10);
        let core = Core::new().expect("event loop");
        let handle = core.handle();
        for _ in 0..repeat {
            match workload.as_str() {
                "listen" => workload_listen(IN_FLIGHT[0]),
                "buffer_unordered" => workload_buffer_unordered(IN_FLIGHT[0]),
                "buffer_unordered_swallowing" => workload_buffer_unordered_swallowing(IN_FLIGHT[0]),
                "sleep_on_error" => {
                    black_box(workload_sleep_on_error(&handle));
                }
                "bare_stream" => {
                    black_box(workload_bare_stream());
                }
                other => panic!(
                    "TK_OVERHEAD_ONCE={other:?}: use listen, buffer_unordered, \
                     buffer_unordered_swallowing, sleep_on_error or bare_stream"
                ),
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
