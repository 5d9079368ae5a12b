//! The server of `examples/http` (the same module, not a copy), checked
//! with `curl`: answers, a burst above the limit, the per-connection deadline.

mod support;

#[path = "../examples/http/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{connect, init_logging, read_reply, Server, GENEROUS};

fn start(max_connections: usize, deadline: Duration) -> Server {
    init_logging();
    let config = server::Config {
        max_connections,
        deadline,
        per_peer: server::MAX_PER_PEER,
    };
    Server::start(move |listener, handle| server::serve(listener, handle, config))
}

/// `curl` with the options every test wants: quiet but with errors, and a
/// bound on the whole run.
fn curl() -> Command {
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--no-progress-meter"])
        .args(["--max-time", &GENEROUS.as_secs().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn(mut command: Command) -> Child {
    command
        .spawn()
        .expect("cannot run curl; install it (.ci/run does: apt-get install curl)")
}

fn finish(child: Child) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("curl did not finish");
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(status.success(), "curl failed ({}): {}", status, stderr);
    String::from_utf8(stdout).expect("curl printed UTF-8")
}

/// `count` requests in one `curl` run, all at once; one line per request:
/// `status:bytes of body`.
fn burst(addr: SocketAddr, count: usize) -> Child {
    let mut command = curl();
    command
        .args(["--parallel", "--parallel-immediate"])
        .args(["--parallel-max", &count.to_string()])
        .args(["--output", "/dev/null"])
        .args(["--write-out", "%{http_code}:%{size_download}\\n"])
        .arg(format!("http://{}/[1-{}]", addr, count));
    spawn(command)
}

fn assert_all_ok(output: &str, count: usize) {
    let expected = format!("200:{}", server::BODY.len());
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), count, "curl output: {:?}", output);
    assert!(
        lines.iter().all(|line| *line == expected),
        "not all requests got {}: {:?}",
        expected,
        lines
    );
}

#[test]
fn curl_gets_200_with_the_body_and_connection_close() {
    let server = start(4, GENEROUS);
    let mut command = curl();
    command
        .arg("--include")
        .arg(format!("http://{}/hello", server.addr));

    let reply = finish(spawn(command));

    assert!(
        reply.starts_with("HTTP/1.1 200 OK\r\n"),
        "reply: {:?}",
        reply
    );
    assert!(
        reply.contains("\r\nConnection: close\r\n"),
        "reply: {:?}",
        reply
    );
    assert!(
        reply.ends_with(&format!("\r\n\r\n{}", server::BODY)),
        "reply: {:?}",
        reply
    );
}

#[test]
fn a_malformed_request_gets_400() {
    let server = start(4, GENEROUS);
    let mut client = connect(server.addr);
    client.write_all(b"nonsense\r\n\r\n").unwrap();

    let reply = read_reply(client).unwrap();

    assert!(
        reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "reply: {:?}",
        reply
    );
}

#[test]
fn get_delay_answers_after_that_many_milliseconds_and_a_bad_one_gets_400() {
    let server = start(4, GENEROUS);
    let mut command = curl();
    command
        .args(["--write-out", "|%{http_code}"])
        .arg(format!("http://{}/delay/300", server.addr));
    let started = std::time::Instant::now();
    let out = finish(spawn(command));
    assert_eq!(out, "waited 300 ms\n|200");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );
    let mut command = curl();
    command
        .args(["--write-out", "|%{http_code}"])
        .arg(format!("http://{}/delay/soon", server.addr));
    assert_eq!(
        finish(spawn(command)),
        "usage: GET /delay/MS, MS at most 86400000\n|400"
    );
}

#[test]
fn a_delay_longer_than_the_deadline_is_answered_and_not_counted_against_it() {
    let server = start(4, Duration::from_millis(300));
    let mut command = curl();
    command
        .args(["--write-out", "|%{http_code}"])
        .arg(format!("http://{}/delay/900", server.addr));
    let started = std::time::Instant::now();
    assert_eq!(finish(spawn(command)), "waited 900 ms\n|200");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_burst_above_the_limit_waits_for_free_slots_and_all_get_200() {
    const LIMIT: usize = 2;
    const REQUESTS: usize = 16;
    let server = start(LIMIT, Duration::from_secs(1));
    // Two silent clients take both slots until the deadline, so the whole
    // burst starts out waiting in the backlog.
    let silent: Vec<_> = (0..LIMIT).map(|_| connect(server.addr)).collect();

    let output = finish(burst(server.addr, REQUESTS));

    assert_all_ok(&output, REQUESTS);
    for client in silent {
        assert_eq!(
            read_reply(client).unwrap(),
            b"",
            "a silent client got an answer"
        );
    }
}

#[test]
fn a_silent_client_is_dropped_at_the_deadline_while_others_are_served() {
    const DEADLINE: Duration = Duration::from_secs(5);
    const REQUESTS: usize = 8;
    let server = start(2, DEADLINE);
    let connected = Instant::now();
    let silent = connect(server.addr);

    // Wait for EOF on the silent client in the background.
    let dropped = thread::spawn(move || {
        let reply = read_reply(silent);
        (reply, Instant::now())
    });
    let output = finish(burst(server.addr, REQUESTS));
    let served = Instant::now();
    let (reply, dropped_at) = dropped.join().unwrap();

    assert_all_ok(&output, REQUESTS);
    assert_eq!(reply.unwrap(), b"", "the silent client got an answer");
    assert!(
        served < dropped_at,
        "the burst was served only after the silent client was dropped"
    );
    let held = dropped_at - connected;
    assert!(
        held >= DEADLINE.mul_f64(0.9),
        "dropped after {:?}, before the deadline",
        held
    );
    assert!(
        held < DEADLINE + GENEROUS / 2,
        "dropped only after {:?}",
        held
    );
}

#[test]
fn a_request_waits_in_the_backlog_while_every_slot_is_taken() {
    let server = start(1, GENEROUS);
    let mut silent = connect(server.addr);
    let mut command = curl();
    command.arg(format!("http://{}/", server.addr));
    let mut waiting = spawn(command);

    // While the silent client holds the only slot, curl gets no answer.
    // (A stalled machine can only make this pass wrongly, never fail.)
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let status = waiting.try_wait().expect("curl status");
        assert!(
            status.is_none(),
            "curl finished while the slot was taken: {:?}",
            status
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Closing the silent client frees the slot.
    silent.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).unwrap();

    assert_eq!(finish(waiting), server::BODY);
    assert!(rest.is_empty(), "the silent client got an answer");
}

/// The counters of `GET /stats`, by name, asked from the address `from`
/// (any 127.0.0.0/8 address works on Linux); the page is read by
/// Prometheus's own parser.
fn stats(addr: SocketAddr, from: &str) -> std::collections::HashMap<String, f64> {
    let mut command = curl();
    command
        .args(["--interface", from])
        .arg(format!("http://{}/stats", addr));
    support::prometheus::parse(&finish(spawn(command)))
        .iter()
        .map(|line| {
            let mut parts = line.split(' ').skip(1);
            let (name, value) = (parts.next().unwrap(), parts.next().unwrap());
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn the_stats_page_counts_a_burst_above_the_limit() {
    const LIMIT: usize = 2;
    const REQUESTS: usize = 16;
    const READINGS: usize = 3;
    let server = start(LIMIT, GENEROUS);
    let requests = burst(server.addr, REQUESTS);
    for _ in 0..READINGS {
        let now = stats(server.addr, "127.0.0.1");
        assert_eq!(now["tk_listen_connections_max"], LIMIT as f64);
        assert!(
            now["tk_listen_connections_running"] >= 1.0
                && now["tk_listen_connections_running"] <= LIMIT as f64,
            "running: {:?}",
            now
        );
    }
    assert_all_ok(&finish(requests), REQUESTS);

    let last = stats(server.addr, "127.0.0.1");
    // Every request so far, this one included (still running as it reads).
    let served = (REQUESTS + READINGS) as f64;
    assert_eq!(last["tk_listen_connections_started_total"], served + 1.0);
    assert_eq!(last["tk_listen_accepted_total"], served + 1.0);
    assert_eq!(last["tk_listen_connections_finished_total"], served);
    assert_eq!(last["tk_listen_connections_running"], 1.0);
    assert_eq!(last["tk_listen_connections_panicked_total"], 0.0);
    assert_eq!(last["tk_listen_accept_pauses_total"], 0.0);
    assert_eq!(last["tk_listen_peer_rejected_total"], 0.0);
}

#[test]
fn a_peer_over_its_cap_is_closed_at_once_while_another_peer_reads_the_stats() {
    let server = start(2 * server::MAX_PER_PEER, GENEROUS);
    // From 127.0.0.1: as many silent connections as one peer may hold...
    let held: Vec<_> = (0..server::MAX_PER_PEER)
        .map(|_| connect(server.addr))
        .collect();
    // ...so the next one is closed as soon as it is accepted.
    assert_eq!(read_reply(connect(server.addr)).unwrap(), b"");

    // Another peer (Linux answers from any 127.0.0.0/8 address) is served.
    let stats = stats(server.addr, "127.0.0.2");
    assert_eq!(stats["tk_listen_max_per_peer"], server::MAX_PER_PEER as f64);
    assert_eq!(stats["tk_listen_peer_rejected_total"], 1.0);
    assert_eq!(stats["tk_listen_peers"], 2.0, "127.0.0.1 and 127.0.0.2");
    assert_eq!(
        stats["tk_listen_connections_running"],
        server::MAX_PER_PEER as f64 + 1.0,
        "the held connections and this one; the rejected one took no slot"
    );
    drop(held);
}
