//! Pure combinator cost, no sockets, in wall-clock time (criterion):
//!
//! * `listen(n)` over a stream of 100 000 ready futures, against the
//!   hand-written `buffer_unordered(n).for_each(..)` it is built on, and
//!   against the hand-written loop with `listen`'s semantics (each future's
//!   error swallowed with `then`, so that one failure doesn't end the loop);
//! * `sleep_on_error` over a stream of 100 000 `Ok` items, against the bare
//!   stream.
//!
//! The workloads live in `support/workloads.rs`; `benches/callgrind.sh`
//! counts their instructions. Settings and figures: `benches/README.md`.
//!
//! Run: `cargo bench --bench overhead`

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use support::workloads;
use tokio_core::reactor::Core;

const IN_FLIGHT: [usize; 2] = [100, 1000];

fn listen_vs_buffer_unordered(c: &mut Criterion) {
    for n in IN_FLIGHT {
        let mut group = c.benchmark_group(format!("100k ready futures, n={n}"));
        group.bench_function("listen(n)", |b| b.iter(|| workloads::listen(n)));
        group.bench_function("buffer_unordered(n).for_each", |b| {
            b.iter(|| workloads::buffer_unordered(n))
        });
        group.bench_function("map(then).buffer_unordered(n).for_each", |b| {
            b.iter(|| workloads::buffer_unordered_swallowing(n))
        });
        group.finish();
    }
}

fn sleep_on_error_vs_bare(c: &mut Criterion) {
    let core = Core::new().expect("event loop");
    let handle = core.handle();
    let mut group = c.benchmark_group("100k Ok items");
    group.bench_function("sleep_on_error", |b| {
        b.iter(|| workloads::sleep_on_error(&handle))
    });
    group.bench_function("bare stream", |b| b.iter(workloads::bare_stream));
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
criterion_main!(benches);
