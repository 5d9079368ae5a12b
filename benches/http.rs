//! HTTP servers on tokio 1 under real load generators, in interleaved rounds:
//! `examples/hyper`'s server against the same service on a plain
//! accept-and-spawn loop, and axum through `axum_listener` against
//! `axum::serve(TcpListener)`; `wrk` with keep-alive and with
//! `Connection: close`, and `h2load` over h2c. Then the `EMFILE` recovery of
//! both axum variants: from descriptors freed to a new client answered.
//!
//! Each server is a child process (this binary, `http serve NAME`), so that
//! its CPU time is read from `/proc` apart from the load generator's.
//! Settings and figures: `benches/README.md`.
//!
//! For instruction counts that load doesn't change, `http count NAME MODE N`
//! (what `benches/callgrind_http.sh` runs under callgrind) serves as `NAME`
//! on a `current_thread` runtime in its main thread, inside `serve_counted`,
//! until a client child process has made `N` requests and exited: `http
//! client MODE N ADDR` for `keep-alive` and `close`, `h2load -m 1` for
//! `h2c`, each over 4 connections.
//!
//! ```sh
//! cargo bench --features axum --bench http                 # about 3 minutes
//! HTTP_ROUNDS=5 HTTP_SECONDS=5 cargo bench --features axum --bench http
//! HTTP_MODES=close HTTP_ROUNDS=12 cargo bench --features axum --bench http   # one client only
//! bash benches/callgrind_http.sh                          # instructions per request
//! ```

mod support;

#[path = "../examples/hyper/server.rs"]
#[allow(dead_code)]
mod hyper_example;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tk_listen::tokio1::{axum_listener, incoming, ListenExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use support::{env_usize, median, min_max, process_cpu, round_order};

const BODY: &str = "hello from tk-listen\n";
/// The servers, in pairs: tk-listen's, then the plain one it is compared to.
const SERVERS: [&str; 4] = ["hyper_tk", "hyper_plain", "axum_tk", "axum_plain"];
/// Connections `wrk` and `h2load` keep open (all from 127.0.0.1: the
/// tk-listen servers allow all of them from one peer).
const CONNECTIONS: usize = 32;
/// Clients of the `EMFILE` storm, against 64 descriptors.
const STORM_CLIENTS: usize = 200;
/// Connections of the client of `http count`.
const COUNT_CONNECTIONS: usize = 4;
/// The counted client's keep-alive request.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: tk-listen\r\n\r\n";
/// The counted client's request that asks the server to close.
const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: tk-listen\r\nConnection: close\r\n\r\n";
/// How long the counted client waits for an answer (the server runs under
/// valgrind, tens of times slower than natively).
const COUNT_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => return serve(&args[1]),
        Some("count") => return count(&args[1..]),
        Some("client") => return client(&args[1..]),
        _ => {}
    }
    if args.iter().any(|a| a == "--list") || args.iter().any(|a| a == "--test") {
        return; // `cargo test --benches` and `--list`: nothing to run
    }
    let rounds = env_usize("HTTP_ROUNDS", 3);
    let seconds = env_usize("HTTP_SECONDS", 3);
    println!(
        "{} rounds of {} s per server and client, {} connections",
        rounds, seconds, CONNECTIONS
    );
    let servers: Vec<ChildServer> = SERVERS[..if rounds == 0 { 0 } else { SERVERS.len() }]
        .iter()
        .map(|name| ChildServer::start(name, None))
        .collect();
    let modes = std::env::var("HTTP_MODES").unwrap_or_else(|_| "keep-alive,close,h2load".into());
    for mode in ["keep-alive", "close", "h2load"]
        .into_iter()
        .filter(|mode| rounds > 0 && modes.split(',').any(|m| m == *mode))
    {
        let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); SERVERS.len()];
        for round in 1..=rounds {
            for i in round_order(round, SERVERS.len()) {
                results[i].push(servers[i].load(mode, seconds));
            }
        }
        println!("\n{}:", mode);
        for (i, name) in SERVERS.iter().enumerate() {
            let rps: Vec<f64> = results[i].iter().map(|r| r.0).collect();
            let cpu: Vec<f64> = results[i].iter().map(|r| r.1).collect();
            let (lo, hi) = min_max(&rps);
            println!(
                "  {:<12} {:>9.0} req/s ({:.0}..{:.0})  {:>6.2} µs CPU/request",
                name,
                median(&rps),
                lo,
                hi,
                median(&cpu)
            );
        }
        for pair in [0, 2] {
            let ratio = |f: fn(&(f64, f64)) -> f64| {
                let tk: Vec<f64> = results[pair].iter().map(f).collect();
                let plain: Vec<f64> = results[pair + 1].iter().map(f).collect();
                median(&tk) / median(&plain)
            };
            // The two of a pair run next to each other in every round: the
            // median of the rounds' own ratios, less moved by the machine's
            // load drifting over the run.
            let per_round = |f: fn(&(f64, f64)) -> f64| {
                let ratios: Vec<f64> = results[pair]
                    .iter()
                    .zip(&results[pair + 1])
                    .map(|(tk, plain)| f(tk) / f(plain))
                    .collect();
                median(&ratios)
            };
            println!(
                "  {} / {}: requests/s {:.3}, CPU per request {:.3} (median of the rounds' ratios: {:.3}, {:.3})",
                SERVERS[pair],
                SERVERS[pair + 1],
                ratio(|r| r.0),
                ratio(|r| r.1),
                per_round(|r| r.0),
                per_round(|r| r.1)
            );
        }
    }
    drop(servers);

    let recoveries = env_usize("HTTP_RECOVERIES", 5);
    if recoveries == 0 {
        return; // and the last run's data file stays
    }
    println!(
        "\nEMFILE recovery (RLIMIT_NOFILE 64), {} runs each:",
        recoveries
    );
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 2];
    let mut csv = String::from("server,run,recovery_ms\n");
    for run in 1..=recoveries {
        for i in round_order(run, 2) {
            let name = ["axum_tk", "axum_plain"][i];
            let ms = recovery(name, run).as_secs_f64() * 1000.0;
            csv.push_str(&format!("{},{},{:.1}\n", name, run, ms));
            times[i].push(ms);
        }
    }
    for (i, name) in ["axum_tk", "axum_plain"].iter().enumerate() {
        let (lo, hi) = min_max(&times[i]);
        println!(
            "  {:<12} median {:>6.0} ms ({:.0}..{:.0}): {:?}",
            name,
            median(&times[i]),
            lo,
            hi,
            times[i].iter().map(|t| t.round()).collect::<Vec<_>>()
        );
    }
    support::write_data("http_recovery.csv", &csv);
}

/// A server child: `http serve NAME`, optionally under a lower
/// `RLIMIT_NOFILE`; killed when dropped.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(name: &str, nofile: Option<u32>) -> ChildServer {
        let exe = std::env::current_exe().unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {} && exec \"$@\"",
                nofile.unwrap_or(4096)
            ))
            .arg("sh")
            .arg(exe)
            .args(["serve", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{}: {:?}", name, line))
            .parse()
            .unwrap();
        ChildServer { child, addr }
    }

    /// One run of the client of `mode`; requests per second and server
    /// CPU µs per request.
    fn load(&self, mode: &str, seconds: usize) -> (f64, f64) {
        let url = format!("http://{}/", self.addr);
        let connections = CONNECTIONS.to_string();
        let duration = format!("{}s", seconds);
        let mut command = match mode {
            "h2load" => {
                let mut c = Command::new("h2load");
                c.args(["-c", &connections, "-m", "8", "-D", &seconds.to_string()]);
                c
            }
            _ => {
                let mut c = Command::new("wrk");
                c.args(["-t", "1", "-c", &connections, "-d", &duration]);
                if mode == "close" {
                    c.args(["-H", "Connection: close"]);
                }
                c
            }
        };
        command.arg(&url);
        let cpu_before = process_cpu(self.child.id()).unwrap();
        let out = command
            .output()
            .expect("run wrk / h2load (apt-get install wrk nghttp2-client)");
        let cpu = process_cpu(self.child.id()).unwrap() - cpu_before;
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        let requests = requests(mode, &out);
        let elapsed = elapsed(mode, &out).unwrap_or(seconds as f64);
        (
            requests / elapsed,
            cpu.as_secs_f64() * 1e6 / requests.max(1.0),
        )
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Completed requests in a `wrk` or `h2load` report; panics on errors.
fn requests(mode: &str, out: &str) -> f64 {
    if mode == "h2load" {
        let line = out
            .lines()
            .find(|l| l.starts_with("requests: "))
            .unwrap_or_else(|| panic!("h2load: {}", out));
        assert!(
            line.contains(" 0 failed, 0 errored, 0 timeout"),
            "h2load: {}",
            line
        );
        let succeeded = line
            .split(", ")
            .find(|f| f.ends_with(" succeeded"))
            .unwrap();
        succeeded.trim_end_matches(" succeeded").parse().unwrap()
    } else {
        assert!(
            !out.contains("Socket errors") && !out.contains("Non-2xx"),
            "wrk: {}",
            out
        );
        out.lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .map(|(n, _)| n.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("wrk: {}", out))
    }
}

/// The run's duration in seconds as the tool measured it.
fn elapsed(mode: &str, out: &str) -> Option<f64> {
    if mode == "h2load" {
        // "finished in 3.00s, 12345.67 req/s, ..."
        let rest = out.split("finished in ").nth(1)?;
        rest.split('s').next()?.parse().ok()
    } else {
        // "  123456 requests in 3.00s, 12.34MB read"
        let rest = out.split(" requests in ").nth(1)?;
        rest.split("s,").next()?.parse().ok()
    }
}

/// How long after every descriptor is freed a new client is answered, for
/// server `name` under `RLIMIT_NOFILE` 64: 200 clients send a request (the
/// first ones are answered and hold their descriptors, the rest wait in the
/// backlog), then all of them close at once (the queued ones become dead
/// connections the server still has to accept), and a new client's request
/// is timed. The storm lasts 300 ms plus a part of a second that changes
/// with `run`, so that the runs meet the server's pauses at different
/// phases.
fn recovery(name: &str, run: usize) -> Duration {
    let server = ChildServer::start(name, Some(64));
    let clients: Vec<TcpStream> = (0..STORM_CLIENTS)
        .map(|_| {
            let mut client = TcpStream::connect(server.addr).unwrap();
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: tk-listen\r\n\r\n")
                .unwrap();
            client
        })
        .collect();
    // Wait for the first answer, so that the server has run out.
    let mut first = clients[0].try_clone().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = first.read(&mut [0; 64]).expect("the first client answered");
    // Let the server meet EMFILE with the backlog still full.
    std::thread::sleep(Duration::from_millis(300 + (run as u64 * 373) % 1000));
    drop(first);
    let freed = Instant::now();
    drop(clients);
    let mut client = TcpStream::connect(server.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: tk-listen\r\n\r\n")
        .unwrap();
    let n = client.read(&mut [0; 256]).expect("the new client answered");
    assert!(n > 0, "the new client was closed unanswered");
    freed.elapsed()
}

/// The child: serves as `name` on 127.0.0.1 port 0 until killed.
fn serve(name: &str) {
    // Two workers on any machine, as benches/README.md says.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = bind();
        println!("listening on {}", listener.local_addr().unwrap());
        run_server(name, listener).await
    });
}

/// A listener on 127.0.0.1 port 0 with a backlog of 1024 (tokio's default
/// is 128), so that the storm's 200 clients all wait in it, for both
/// variants alike. Call it inside the runtime.
fn bind() -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    socket.listen(1024).unwrap()
}

/// Server `name` on `listener`, for ever.
async fn run_server(name: &str, listener: TcpListener) {
    let addr = listener.local_addr().unwrap();
    let pending = std::future::pending::<()>();
    match name {
        "hyper_tk" => {
            let config = hyper_example::config(CONNECTIONS * 4);
            hyper_example::serve(listener, None, config, pending).await
        }
        "hyper_plain" => plain_hyper(listener).await,
        "axum_tk" => {
            let accepts = incoming(listener)
                .sleep_on_error(Duration::from_millis(100))
                .limit_per_peer(CONNECTIONS * 4)
                .limit_open(1000);
            axum::serve(axum_listener(accepts, addr), router())
                .await
                .unwrap()
        }
        "axum_plain" => axum::serve(listener, router()).await.unwrap(),
        _ => panic!("no server {:?}", name),
    }
}

/// `http count NAME MODE N`: serves as `NAME` on a `current_thread` runtime
/// in this thread while a client child process makes `N` requests, then
/// returns. Valgrind does not follow the child (no `--trace-children`), so
/// only the server runs under it; `benches/callgrind_http.sh` counts the
/// instructions inside `serve_counted`.
fn count(args: &[String]) {
    let usage = "usage: http count hyper_tk|hyper_plain|axum_tk|axum_plain keep-alive|close|h2c N";
    let [name, mode, n] = args else {
        panic!("{}", usage)
    };
    let n: usize = n.parse().unwrap_or_else(|_| panic!("{}", usage));
    assert!(SERVERS.contains(&name.as_str()), "{}", usage);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(async { bind() });
    let addr = listener.local_addr().unwrap();
    let mut client = match mode.as_str() {
        "h2c" => {
            let mut c = Command::new("h2load");
            c.args(["-n", &n.to_string(), "-c", &COUNT_CONNECTIONS.to_string()])
                .args(["-m", "1", &format!("http://{}/", addr)]);
            c
        }
        "keep-alive" | "close" => {
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.args(["client", mode, &n.to_string(), &addr.to_string()]);
            c
        }
        _ => panic!("{}", usage),
    };
    let client = client
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client (h2load: apt-get install nghttp2-client)");
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    let waiter = std::thread::spawn(move || {
        let out = client.wait_with_output();
        let _ = done.send(());
        out
    });
    serve_counted(
        &runtime,
        Box::pin(async move {
            tokio::select! {
                _ = run_server(name, listener) => {}
                _ = stopped => {}
            }
        }),
    );
    let out = waiter.join().unwrap().expect("wait for the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the client failed: {}", stdout);
    if mode == "h2c" {
        assert_eq!(requests("h2load", &stdout), n as f64, "h2load: {}", stdout);
    }
    println!("{} answered {} requests ({})", name, n, mode);
}

/// Runs `server` on `runtime` until it returns: the instructions
/// `benches/callgrind_http.sh` counts.
#[inline(never)]
fn serve_counted(runtime: &Runtime, server: Pin<Box<dyn Future<Output = ()> + '_>>) {
    runtime.block_on(server)
}

/// `http client MODE N ADDR`: `N` requests for `GET /` over
/// `COUNT_CONNECTIONS` connections, in rounds of one request on each:
/// `keep-alive` keeps the connections for all rounds, `close` connects anew
/// for each request and asks the server to close. Panics on a wrong answer.
fn client(args: &[String]) {
    let usage = "usage: http client keep-alive|close N ADDR";
    let [mode, n, addr] = args else {
        panic!("{}", usage)
    };
    let n: usize = n.parse().unwrap_or_else(|_| panic!("{}", usage));
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| panic!("{}", usage));
    assert!(
        n.is_multiple_of(COUNT_CONNECTIONS),
        "{} requests are not a whole number of rounds of {}",
        n,
        COUNT_CONNECTIONS
    );
    let connect = || {
        let client = TcpStream::connect(addr).expect("connect");
        client.set_read_timeout(Some(COUNT_TIMEOUT)).unwrap();
        client.set_nodelay(true).unwrap();
        client
    };
    match mode.as_str() {
        "keep-alive" => {
            let mut clients: Vec<BufReader<TcpStream>> = (0..COUNT_CONNECTIONS)
                .map(|_| BufReader::new(connect()))
                .collect();
            for _ in 0..n / COUNT_CONNECTIONS {
                for client in &mut clients {
                    client.get_mut().write_all(REQUEST).unwrap();
                }
                for client in &mut clients {
                    read_response(client);
                }
            }
        }
        "close" => {
            for _ in 0..n / COUNT_CONNECTIONS {
                let clients: Vec<TcpStream> = (0..COUNT_CONNECTIONS)
                    .map(|_| {
                        let mut client = connect();
                        client.write_all(CLOSE_REQUEST).unwrap();
                        client
                    })
                    .collect();
                for client in clients {
                    let mut client = BufReader::new(client);
                    read_response(&mut client);
                    let mut rest = Vec::new();
                    client.read_to_end(&mut rest).unwrap();
                    assert!(rest.is_empty(), "more after the answer: {:?}", rest);
                }
            }
        }
        _ => panic!("{}", usage),
    }
}

/// Reads one answer to `GET /` (status 200, a `content-length`, the body
/// `BODY`) from `client`.
fn read_response(client: &mut BufReader<TcpStream>) {
    let mut line = String::new();
    client.read_line(&mut line).expect("read the status line");
    assert!(line.starts_with("HTTP/1.1 200 "), "answer: {:?}", line);
    let mut length = None;
    loop {
        line.clear();
        client.read_line(&mut line).expect("read a header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0; length.expect("a content-length")];
    client.read_exact(&mut body).expect("read the body");
    assert_eq!(body, BODY.as_bytes(), "the body");
}

/// `GET /` of both axum variants.
fn router() -> Router {
    Router::new().route("/", get(|| async { BODY }))
}

/// The service of `examples/hyper` (its `respond`, without counters) on a
/// bare accept-and-spawn loop with hyper-util's auto builder: what a user
/// writes without tk-listen.
async fn plain_hyper(listener: TcpListener) {
    let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let stats = Arc::new(OnceLock::new());
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let (http, stats) = (http.clone(), stats.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |request| hyper_example::respond(request, peer, stats.clone()));
            let _ = http.serve_connection(TokioIo::new(socket), service).await;
        });
    }
}
