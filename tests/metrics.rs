//! `Metrics`: the page of a running server on each stack, checked with
//! Python's `prometheus_client` parser: names, types and values.

mod support;

use std::io::{Read, Write};
use std::net;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures::{Future, Stream};
use tk_listen::{AcceptQueue, ListenExt, ListenStats, Metrics};
use tokio_core::net::TcpListener;
use tokio_core::reactor::Handle;

use support::prometheus::{parse, type_of, value};
use support::queue::{listener_with_backlog, serve_on, wait_until_waiting};
use support::{connect, GENEROUS};

/// The names `examples/http` showed before `Metrics` existed, and their
/// types; every one stays.
const NAMES_OF_0_1_1: [(&str, &str); 13] = [
    ("tk_listen_connections_max", "gauge"),
    ("tk_listen_connections_running", "gauge"),
    ("tk_listen_connections_started_total", "counter"),
    ("tk_listen_connections_finished_total", "counter"),
    ("tk_listen_connections_failed_total", "counter"),
    ("tk_listen_connections_panicked_total", "counter"),
    ("tk_listen_accepted_total", "counter"),
    ("tk_listen_accept_errors_skipped_total", "counter"),
    ("tk_listen_accept_pauses_total", "counter"),
    ("tk_listen_accept_paused_seconds_total", "counter"),
    ("tk_listen_max_per_peer", "gauge"),
    ("tk_listen_peers", "gauge"),
    ("tk_listen_peer_rejected_total", "counter"),
];

/// Waits (at most [`GENEROUS`]) until `done` says so of `stats`.
fn wait_for(stats: &ListenStats, what: &str, done: impl Fn(&ListenStats) -> bool) {
    let start = Instant::now();
    while !done(stats) {
        assert!(start.elapsed() < GENEROUS, "never {}: {:?}", what, stats);
        thread::sleep(Duration::from_millis(10));
    }
}

/// The page's histogram of durations is the server's: its count is every
/// connection that ended, each of its buckets the reading's, and the sum in
/// seconds.
fn assert_durations_match(samples: &[String], stats: &ListenStats) {
    let name = "tk_listen_connection_duration_seconds";
    let count_name = format!("{}_count", name);
    assert_eq!(type_of(samples, &count_name).as_deref(), Some("histogram"));
    let durations = stats.durations();
    let ended = stats.finished() + stats.failed() + stats.panicked() + stats.aborted();
    assert_eq!(value(samples, &count_name), Some(ended as f64));
    for (bound, count) in durations.buckets() {
        let le = if bound == Duration::MAX {
            "+Inf".to_string()
        } else {
            bound.as_secs_f64().to_string()
        };
        let bucket = format!("{}_bucket{{le=\"{}\"}}", name, le);
        assert_eq!(
            value(samples, &bucket),
            Some(count as f64),
            "{}: {:?}",
            bucket,
            samples
        );
    }
    let sum = value(samples, &format!("{}_sum", name)).unwrap();
    assert!(
        (sum - durations.sum().as_secs_f64()).abs() < 1e-9,
        "sum {}",
        sum
    );
}

/// Sends the byte a connection of these servers waits for, and reads the
/// answer to its end.
fn finish(mut client: net::TcpStream) {
    client.write_all(b"x").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"bye");
}

#[test]
fn the_page_of_a_full_futures_server_parses_and_shows_who_runs_and_who_waits() {
    let listener = listener_with_backlog(16);
    let addr = listener.local_addr().unwrap();
    let queue = AcceptQueue::of(&listener).unwrap();
    let page_queue = queue.clone();
    let (metrics_tx, metrics_rx) = mpsc::channel();
    let server = serve_on(listener, move |listener: TcpListener, handle: &Handle| {
        let accepts = listener
            .incoming()
            .sleep_on_error(Duration::from_millis(100), handle);
        let accept_stats = accepts.stats();
        let accepts = accepts.limit_per_peer(8);
        let peer_stats = accepts.stats();
        let server = accepts
            .map(|(socket, _peer)| {
                tokio_io::io::read_exact(socket, [0u8; 1])
                    .and_then(|(socket, _)| tokio_io::io::write_all(socket, b"bye"))
                    .map(|_| ())
                    .map_err(|e| panic!("test connection failed: {}", e))
            })
            .listen(2);
        let metrics = Metrics::new()
            .listen(&server.stats())
            .accept(&accept_stats)
            .peers(&peer_stats)
            .queue(&page_queue);
        metrics_tx.send((metrics, server.stats())).unwrap();
        server
    });
    let (metrics, stats) = metrics_rx.recv_timeout(GENEROUS).unwrap();
    let running: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    wait_for(&stats, "2 running", |stats| stats.running() == 2);
    let waiting = connect(addr);
    wait_until_waiting(&queue, 1);

    let samples = parse(&metrics.to_string());
    for (name, kind) in NAMES_OF_0_1_1 {
        assert_eq!(type_of(&samples, name).as_deref(), Some(kind), "{}", name);
    }
    for (name, expected) in [
        ("tk_listen_connections_running", 2.0),
        ("tk_listen_connections_max", 2.0),
        ("tk_listen_connections_started_total", 2.0),
        ("tk_listen_accepted_total", 2.0),
        ("tk_listen_peers", 1.0),
        ("tk_listen_max_per_peer", 8.0),
        ("tk_listen_accept_paused", 0.0),
        ("tk_listen_queued_connections", 1.0),
        ("tk_listen_queued_connections_limit", 16.0),
    ] {
        assert_eq!(
            value(&samples, name),
            Some(expected),
            "{}: {:?}",
            name,
            samples
        );
    }
    for name in [
        "tk_listen_kernel_listen_overflows_total",
        "tk_listen_kernel_listen_drops_total",
    ] {
        assert_eq!(
            type_of(&samples, name).as_deref(),
            Some("counter"),
            "{}",
            name
        );
    }

    for client in running.into_iter().chain([waiting]) {
        finish(client);
    }
    wait_for(&stats, "3 finished", |stats| stats.finished() == 3);
    let samples = parse(&metrics.to_string());
    assert_eq!(
        value(&samples, "tk_listen_connections_finished_total"),
        Some(3.0)
    );
    assert_eq!(value(&samples, "tk_listen_queued_connections"), Some(0.0));
    assert_durations_match(&samples, &stats);
    // A connection still running when the server is dropped is aborted.
    let _unfinished = connect(addr);
    wait_for(&stats, "1 running", |stats| stats.running() == 1);
    server.shutdown().unwrap();

    // The listener is closed: the queue's lines are left out, the rest stays.
    let samples = parse(&metrics.to_string());
    assert_eq!(value(&samples, "tk_listen_queued_connections"), None);
    for (name, expected) in [
        ("tk_listen_connections_finished_total", 3.0),
        ("tk_listen_connections_aborted_total", 1.0),
        ("tk_listen_connections_running", 0.0),
    ] {
        assert_eq!(
            value(&samples, name),
            Some(expected),
            "{}: {:?}",
            name,
            samples
        );
    }
    assert_durations_match(&samples, &stats);
}

#[test]
fn a_prefix_replaces_tk_listen_in_every_name() {
    let listener = listener_with_backlog(4);
    let server =
        futures::stream::iter_ok::<_, ()>(vec![futures::future::ok::<(), ()>(())]).listen(5);
    let page = Metrics::new()
        .prefix("app:edge")
        .listen(&server.stats())
        .queue(&AcceptQueue::of(&listener).unwrap())
        .to_string();
    let samples = parse(&page);
    assert!(samples.len() >= 8, "{:?}", samples);
    for line in &samples {
        let name = line.split(' ').nth(1).unwrap();
        assert!(name.starts_with("app:edge_"), "{}", line);
    }
    assert_eq!(value(&samples, "app:edge_connections_max"), Some(5.0));
    assert_eq!(
        value(&samples, "app:edge_queued_connections_limit"),
        Some(4.0)
    );
}

#[test]
fn an_empty_prefix_leaves_the_names_bare() {
    let server =
        futures::stream::iter_ok::<_, ()>(vec![futures::future::ok::<(), ()>(())]).listen(5);
    let samples = parse(
        &Metrics::new()
            .prefix("")
            .listen(&server.stats())
            .to_string(),
    );
    assert_eq!(value(&samples, "connections_max"), Some(5.0));
}

#[test]
#[should_panic(expected = "Metrics::prefix(\"9lives\")")]
fn a_prefix_that_is_no_metric_name_panics() {
    let _ = Metrics::new().prefix("9lives");
}

#[test]
#[should_panic(expected = "Metrics::prefix(\"my-app\")")]
fn a_prefix_with_a_dash_panics() {
    let _ = Metrics::new().prefix("my-app");
}

#[cfg(feature = "tokio1")]
#[test]
fn the_page_of_a_full_tokio1_server_parses_and_shows_who_runs_and_who_waits() {
    use tk_listen::tokio1::{incoming, ListenExt as _};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = listener_with_backlog(16);
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let queue = AcceptQueue::of(&listener).unwrap();
    let (metrics, stats) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let accepts = incoming(listener).sleep_on_error(Duration::from_millis(100));
        let accept_stats = accepts.stats();
        let server = accepts
            .map(|(mut socket, _peer)| async move {
                let mut byte = [0u8; 1];
                socket.read_exact(&mut byte).await?;
                socket.write_all(b"bye").await
            })
            .listen(2);
        let stats = server.stats();
        let metrics = Metrics::new()
            .listen(&stats)
            .accept(&accept_stats)
            .queue(&queue);
        tokio::spawn(server);
        (metrics, stats)
    });
    let running: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    wait_for(&stats, "2 running", |stats| stats.running() == 2);
    let waiting = connect(addr);
    wait_until_waiting(&queue, 1);

    let samples = parse(&metrics.to_string());
    for (name, expected) in [
        ("tk_listen_connections_running", 2.0),
        ("tk_listen_connections_max", 2.0),
        ("tk_listen_accepted_total", 2.0),
        ("tk_listen_queued_connections", 1.0),
        ("tk_listen_queued_connections_limit", 16.0),
    ] {
        assert_eq!(
            value(&samples, name),
            Some(expected),
            "{}: {:?}",
            name,
            samples
        );
    }
    for client in running.into_iter().chain([waiting]) {
        finish(client);
    }
    wait_for(&stats, "3 finished", |stats| stats.finished() == 3);
    let samples = parse(&metrics.to_string());
    assert_eq!(
        value(&samples, "tk_listen_connections_finished_total"),
        Some(3.0)
    );
    assert_durations_match(&samples, &stats);
    drop(runtime);
}

/// Two of three connections through `limit_open(2)`, rendered by the page
/// `with(stats)` makes: the samples with two held, then with none.
fn limit_open_page(with: impl Fn(&tk_listen::OpenStats) -> Metrics) -> (Vec<String>, Vec<String>) {
    let accepts = futures::stream::iter_ok::<_, ()>(vec![("a", ()), ("b", ()), ("c", ())]);
    let limited = accepts.limit_open(2);
    let metrics = with(&limited.stats());
    let mut limited = limited.wait();
    let held: Vec<_> = (0..2).map(|_| limited.next().unwrap().unwrap()).collect();
    let full = parse(&metrics.to_string());
    drop(held);
    (full, parse(&metrics.to_string()))
}

fn assert_values(samples: &[String], expected: &[(&str, f64)]) {
    for &(name, expected) in expected {
        assert_eq!(
            value(samples, name),
            Some(expected),
            "{}: {:?}",
            name,
            samples
        );
    }
}

#[test]
fn without_listen_the_counters_of_limit_open_are_the_servers_connections() {
    let (full, empty) = limit_open_page(|open| Metrics::new().open(open));
    assert_values(
        &full,
        &[
            ("tk_listen_connections_running", 2.0),
            ("tk_listen_connections_max", 2.0),
            ("tk_listen_connections_started_total", 2.0),
            ("tk_listen_open_full", 0.0),
            ("tk_listen_open_full_total", 0.0),
            ("tk_listen_open_full_seconds_total", 0.0),
        ],
    );
    assert_eq!(
        type_of(&full, "tk_listen_connections_running").as_deref(),
        Some("gauge")
    );
    assert_eq!(
        type_of(&full, "tk_listen_connections_started_total").as_deref(),
        Some("counter")
    );
    assert_eq!(value(&full, "tk_listen_open_connections"), None);
    assert_eq!(
        type_of(&full, "tk_listen_connection_duration_seconds_count").as_deref(),
        Some("histogram")
    );
    assert_values(
        &full,
        &[("tk_listen_connection_duration_seconds_count", 0.0)],
    );
    // Both closed, after staying open while the first page was parsed.
    assert_values(
        &empty,
        &[
            ("tk_listen_connections_running", 0.0),
            ("tk_listen_connection_duration_seconds_count", 2.0),
            (
                "tk_listen_connection_duration_seconds_bucket{le=\"+Inf\"}",
                2.0,
            ),
        ],
    );
    let sum = value(&empty, "tk_listen_connection_duration_seconds_sum").unwrap();
    assert!(sum > 0.0, "sum {}", sum);
}

#[test]
fn next_to_listen_the_counters_of_limit_open_keep_names_of_their_own() {
    let server = futures::stream::empty::<futures::future::FutureResult<(), ()>, ()>().listen(5);
    let listen = server.stats();
    let (full, empty) = limit_open_page(|open| Metrics::new().listen(&listen).open(open));
    assert_values(
        &full,
        &[
            ("tk_listen_open_connections", 2.0),
            ("tk_listen_open_connections_max", 2.0),
            ("tk_listen_open_accepted_total", 2.0),
            ("tk_listen_open_full", 0.0),
            ("tk_listen_connections_running", 0.0),
            ("tk_listen_connections_max", 5.0),
        ],
    );
    assert_values(&empty, &[("tk_listen_open_connections", 0.0)]);
}
