//! The server of `examples/http`: a minimal HTTP/1.1 server with a
//! connection limit and a per-connection deadline. `tests/http.rs` runs this
//! same module (with `#[path]`) and checks it with `curl`.
//!
//! One peer (an IPv4 address or an IPv6 /64) holds at most
//! `Config::per_peer` connections at once ([`MAX_PER_PEER`] unless told
//! otherwise); more are closed as soon as they are accepted.
//!
//! `GET /stats` answers the live counters of the accept loop as plain text,
//! one `name value` per line (the Prometheus text exposition format).
//!
//! Each connection answers one request and closes (`Connection: close`). A
//! connection gets at most `deadline` from accept to close, for reading the
//! request head and writing the answer: a client that sends nothing (or
//! trickles its request, or doesn't read the answer) is dropped then, so slow
//! clients can't hold the `listen(n)` slots forever.

use std::cell::OnceCell;
use std::fmt::Write;
use std::io::{self, BufReader, Read};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{self, Either, Loop};
use futures::{Future, IntoFuture, Stream};
use tk_listen::{AcceptStats, ListenExt, ListenStats, PeerConnection, PeerStats};
use tokio_core::net::{TcpListener, TcpStream};
use tokio_core::reactor::{Handle, Timeout};

/// The body of every successful answer.
pub const BODY: &str = "hello from tk-listen\n";

/// The longest request head (request line and headers) read, in bytes;
/// longer ones are answered `431`.
const MAX_HEAD: u64 = 8 * 1024;

/// The default of `Config::per_peer`.
pub const MAX_PER_PEER: usize = 8;

/// A connection, counted against its peer until it is dropped.
type Socket = PeerConnection<TcpStream>;

/// How the server limits its clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// At most this many connections are served at once; others wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// Each connection is closed this long after it was accepted, whatever
    /// it is doing.
    pub deadline: Duration,
    /// At most this many connections at once from one peer (an IPv4 address
    /// or an IPv6 /64); more are closed as soon as they are accepted, so one
    /// client can't take every slot.
    pub per_peer: usize,
}

/// Serves HTTP on `listener` until the event loop stops.
pub fn serve(
    listener: TcpListener,
    handle: &Handle,
    config: Config,
) -> impl Future<Item = (), Error = ()> {
    let conn_handle = handle.clone();
    let accepts = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), handle);
    let accept_stats = accepts.stats();
    let accepts = accepts.limit_per_peer(config.per_peer);
    let peer_stats = accepts.stats();
    // The connections answer `/stats` from the counters of the very pipeline
    // they run in, which exists only once they are part of it.
    let stats = Rc::new(OnceCell::new());
    let conn_stats = stats.clone();
    let server = accepts
        .map(move |(socket, peer)| {
            let stats = conn_stats.get().cloned();
            connection(socket, peer, config.deadline, stats, &conn_handle)
        })
        .listen(config.max_connections);
    let _ = stats.set(Stats {
        listen: server.stats(),
        accept: accept_stats,
        peers: peer_stats,
    });
    server
}

/// The counters `/stats` shows.
#[derive(Clone, Debug)]
pub struct Stats {
    listen: ListenStats,
    accept: AcceptStats,
    peers: PeerStats,
}

impl Stats {
    /// The counters in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        let (l, a, p) = (&self.listen, &self.accept, &self.peers);
        let lines: [(&str, f64); 13] = [
            ("tk_listen_connections_max", l.max_connections() as f64),
            ("tk_listen_connections_running", l.running() as f64),
            ("tk_listen_connections_started_total", l.started() as f64),
            ("tk_listen_connections_finished_total", l.finished() as f64),
            ("tk_listen_connections_failed_total", l.failed() as f64),
            ("tk_listen_connections_panicked_total", l.panicked() as f64),
            ("tk_listen_accepted_total", a.accepted() as f64),
            ("tk_listen_accept_errors_skipped_total", a.skipped() as f64),
            ("tk_listen_accept_pauses_total", a.pauses() as f64),
            (
                "tk_listen_accept_paused_seconds_total",
                a.paused_time().as_secs_f64(),
            ),
            ("tk_listen_max_per_peer", p.max_per_peer() as f64),
            ("tk_listen_peers", p.peers() as f64),
            ("tk_listen_peer_rejected_total", p.rejected() as f64),
        ];
        let mut text = String::new();
        for (name, value) in lines {
            let _ = writeln!(text, "{} {}", name, value);
        }
        text
    }
}

/// One connection's whole life: read a request, answer, close; or give up
/// at the deadline.
fn connection(
    socket: Socket,
    peer: SocketAddr,
    deadline: Duration,
    stats: Option<Stats>,
    handle: &Handle,
) -> impl Future<Item = (), Error = ()> {
    let timer = Timeout::new(deadline, handle).into_future().flatten();
    read_head(socket)
        .and_then(move |(socket, head)| answer(socket, head, peer, stats))
        .select2(timer)
        .then(move |outcome| {
            match outcome {
                Ok(Either::A(((), _timer))) => {}
                Ok(Either::B(((), _exchange))) => {
                    log::info!(
                        "{}: dropped, no request and answer within {:?}",
                        peer,
                        deadline
                    )
                }
                Err(Either::A((e, _timer))) => log::debug!("{}: {}", peer, e),
                Err(Either::B((e, _exchange))) => log::error!("{}: timer failed: {}", peer, e),
            }
            Ok(())
        })
}

/// What reading the request head gave.
enum Head {
    /// The bytes up to and including the blank line that ends the head.
    Complete(Vec<u8>),
    /// The client closed its side before the end of the head.
    Closed,
    /// The head is longer than `MAX_HEAD`.
    TooLarge,
}

/// Reads the request head line by line, up to the blank line that ends it.
fn read_head(socket: Socket) -> impl Future<Item = (Socket, Head), Error = io::Error> {
    let reader = BufReader::new(socket.take(MAX_HEAD));
    future::loop_fn((reader, Vec::new()), |(reader, head)| {
        let line_start = head.len();
        tokio_io::io::read_until(reader, b'\n', head).map(move |(reader, head)| {
            let line = &head[line_start..];
            if line == b"\r\n" || line == b"\n" {
                Loop::Break((reader.into_inner().into_inner(), Head::Complete(head)))
            } else if line.is_empty() && reader.get_ref().limit() == 0 {
                Loop::Break((reader.into_inner().into_inner(), Head::TooLarge))
            } else if line.is_empty() {
                Loop::Break((reader.into_inner().into_inner(), Head::Closed))
            } else {
                Loop::Continue((reader, head))
            }
        })
    })
}

/// Writes the answer to `head` and closes.
fn answer(
    socket: Socket,
    head: Head,
    peer: SocketAddr,
    stats: Option<Stats>,
) -> impl Future<Item = (), Error = io::Error> {
    let response = match head {
        Head::Complete(head) => match request_line(&head) {
            Some((method, target)) => {
                log::info!("{}: {} {} -> 200", peer, method, target);
                let body = match (target.as_str(), stats) {
                    ("/stats", Some(stats)) => stats.prometheus(),
                    _ => BODY.to_string(),
                };
                let sent = if method == "HEAD" { "" } else { body.as_str() };
                response("200 OK", body.len(), sent)
            }
            None => {
                log::info!("{}: malformed request -> 400", peer);
                response("400 Bad Request", 0, "")
            }
        },
        Head::TooLarge => {
            log::info!("{}: request head over {} bytes -> 431", peer, MAX_HEAD);
            response("431 Request Header Fields Too Large", 0, "")
        }
        Head::Closed => {
            log::debug!("{}: closed before sending a request", peer);
            return Either::A(future::ok(()));
        }
    };
    Either::B(tokio_io::io::write_all(socket, response).map(|_| ()))
}

/// The method and target of an `HTTP/1.x` request line, if it is one.
fn request_line(head: &[u8]) -> Option<(String, String)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty() && !target.is_empty() && version.starts_with("HTTP/1.") =>
        {
            Some((method.to_string(), target.to_string()))
        }
        _ => None,
    }
}

fn response(status: &str, content_length: usize, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        status, content_length, body
    )
    .into_bytes()
}
