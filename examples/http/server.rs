//! The server of `examples/http`: a minimal HTTP/1.1 server with a
//! connection limit and a per-connection deadline. `tests/http.rs` runs this
//! same module (with `#[path]`) and checks it with `curl`.
//!
//! One peer (an IPv4 address or an IPv6 /64) holds at most
//! `Config::per_peer` connections at once ([`MAX_PER_PEER`] unless told
//! otherwise); more are closed as soon as they are accepted.
//!
//! `GET /stats` answers the live counters of the accept loop, the clients
//! waiting in the listener's accept queue included, as a Prometheus metrics
//! page ([`tk_listen::Metrics`]). The same page is served on a listener of
//! its own when one is given ([`serve_with_metrics`], `--metrics ADDR`):
//! its connections don't wait behind the main listener's, so a scrape is
//! answered even while every slot of the main `listen(n)` is taken, which
//! is when the page matters most.
//!
//! `GET /delay/MS` answers after `MS` milliseconds (at most a day); every
//! other path answers [`BODY`].
//!
//! Each connection answers one request and closes (`Connection: close`). A
//! connection gets at most `deadline` for reading the request head, and as
//! long again for writing the answer: a client that sends nothing (or
//! trickles its request, or doesn't read the answer) is dropped then, so slow
//! clients can't hold the `listen(n)` slots forever. The wait the client
//! asked for with `/delay/MS` is not counted.

use std::cell::OnceCell;
use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{self, Either, Loop};
use futures::{Future, IntoFuture, Stream};
use tk_listen::{AcceptQueue, Listen, ListenExt, Metrics};
use tokio_core::net::TcpListener;
use tokio_core::reactor::{Handle, Timeout};
use tokio_io::{AsyncRead, AsyncWrite};

/// The body of every successful answer.
pub const BODY: &str = "hello from tk-listen\n";

/// The longest request head (request line and headers) read, in bytes;
/// longer ones are answered `431`.
const MAX_HEAD: u64 = 8 * 1024;

/// The longest `/delay/MS` answered, in milliseconds (a day): longer ones
/// get `400`.
const MAX_DELAY_MS: u64 = 24 * 3600 * 1000;

/// The default of `Config::per_peer`.
pub const MAX_PER_PEER: usize = 8;

/// At most this many scrapes at once on the metrics listener: a page is
/// written in one go, so a few slots are plenty, and a flood of scrapes
/// can't take more than that from the main server.
const METRICS_CONNECTIONS: usize = 4;

/// How the server limits its clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// At most this many connections are served at once; others wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// A connection is closed if its request head hasn't come this long
    /// after it was accepted, or if its answer isn't written this long
    /// after it was ready.
    pub deadline: Duration,
    /// At most this many connections at once from one peer (an IPv4 address
    /// or an IPv6 /64); more are closed as soon as they are accepted, so one
    /// client can't take every slot.
    pub per_peer: usize,
}

/// Serves HTTP on `listener` until the event loop stops.
#[allow(dead_code)] // `main` calls `serve_until`; tests/http.rs calls this
pub fn serve(
    listener: TcpListener,
    handle: &Handle,
    config: Config,
) -> impl Future<Item = (), Error = ()> {
    serve_until(listener, None, handle, config, future::empty())
}

/// [`serve`], and the metrics page on `metrics_listener` too, if there is
/// one (every request there is answered with the page: Prometheus scrapes
/// `/metrics`; any path works), by a small `listen` of its own; until `stop`
/// resolves, then the main server stops accepting and this resolves once its
/// running connections have finished (a graceful shutdown).
pub fn serve_until(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    handle: &Handle,
    config: Config,
    stop: impl Future<Item = (), Error = ()>,
) -> impl Future<Item = (), Error = ()> {
    let (server, metrics) = server_and_metrics(listener, handle, config);
    let server = server.with_graceful_shutdown(stop);
    match metrics_listener {
        None => Either::A(server),
        Some(metrics_listener) => {
            let scrapes = metrics_server(metrics_listener, metrics, handle, config.deadline);
            Either::B(server.select(scrapes).map(|_| ()).map_err(|_| ()))
        }
    }
}

/// The server of [`serve`] and its metrics page, for a caller that shows
/// the page its own way (`benches/overload.rs` samples it).
pub fn server_and_metrics(
    listener: TcpListener,
    handle: &Handle,
    config: Config,
) -> (
    Listen<impl Stream<Item = impl Future<Item = (), Error = ()>, Error = ()>>,
    Metrics,
) {
    // Read from the kernel at each scrape; the handle keeps no descriptor
    // of the listener. `None` on systems other than Linux: no queue then.
    let queue = AcceptQueue::of(&listener).ok();
    let conn_handle = handle.clone();
    let accepts = listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), handle);
    let accept_stats = accepts.stats();
    let accepts = accepts.limit_per_peer(config.per_peer);
    let peer_stats = accepts.stats();
    // The connections answer `/stats` from the counters of the very pipeline
    // they run in, which exists only once they are part of it.
    let page = Rc::new(OnceCell::new());
    let conn_page = page.clone();
    let server = accepts
        .map(move |(socket, peer)| {
            let pages = Pages::Main(conn_page.clone());
            connection(socket, peer, config.deadline, pages, &conn_handle)
        })
        .listen(config.max_connections);
    let mut metrics = Metrics::new()
        .listen(&server.stats())
        .accept(&accept_stats)
        .peers(&peer_stats);
    if let Some(queue) = &queue {
        metrics = metrics.queue(queue);
    }
    let _ = page.set(metrics.clone());
    (server, metrics)
}

/// The metrics listener's server: each connection is answered the page.
fn metrics_server(
    listener: TcpListener,
    metrics: Metrics,
    handle: &Handle,
    deadline: Duration,
) -> impl Future<Item = (), Error = ()> {
    let conn_handle = handle.clone();
    let metrics = Rc::new(metrics);
    listener
        .incoming()
        .sleep_on_error(Duration::from_millis(100), handle)
        .map(move |(socket, peer)| {
            let pages = Pages::Metrics(metrics.clone());
            connection(socket, peer, deadline, pages, &conn_handle)
        })
        .listen(METRICS_CONNECTIONS)
}

/// What a connection answers.
#[derive(Clone)]
enum Pages {
    /// The main listener: `/stats` is the metrics page (once it exists),
    /// anything else is [`BODY`].
    Main(Rc<OnceCell<Metrics>>),
    /// The metrics listener: the page, whatever the path.
    Metrics(Rc<Metrics>),
}

/// One connection's whole life: read a request, answer, close; or give up
/// at a deadline.
fn connection<S: AsyncRead + AsyncWrite>(
    socket: S,
    peer: SocketAddr,
    deadline: Duration,
    pages: Pages,
    handle: &Handle,
) -> impl Future<Item = (), Error = ()> {
    let handle = handle.clone();
    within(read_head(socket), deadline, &handle)
        .and_then(move |read| {
            let Some((socket, head)) = read else {
                return Either::A(future::ok(Some("no request")));
            };
            let Some((response, delay)) = answer(head, peer, pages) else {
                return Either::A(future::ok(None));
            };
            let wait = match delay {
                Some(delay) => Either::A(Timeout::new(delay, &handle).into_future().flatten()),
                None => Either::B(future::ok(())),
            };
            let write = move |()| {
                within(tokio_io::io::write_all(socket, response), deadline, &handle)
                    .map(|written| written.map_or(Some("the answer not read"), |_| None))
            };
            Either::B(wait.and_then(write))
        })
        .then(move |outcome| {
            match outcome {
                Ok(None) => {}
                Ok(Some(what)) => log::info!("{}: dropped, {} within {:?}", peer, what, deadline),
                Err(e) => log::debug!("{}: {}", peer, e),
            }
            Ok(())
        })
}

/// `work`, or `None` if `deadline` passes first.
fn within<F: Future<Error = io::Error>>(
    work: F,
    deadline: Duration,
    handle: &Handle,
) -> impl Future<Item = Option<F::Item>, Error = io::Error> {
    let timer = Timeout::new(deadline, handle).into_future().flatten();
    work.select2(timer).then(|outcome| match outcome {
        Ok(Either::A((done, _timer))) => Ok(Some(done)),
        Ok(Either::B(((), _work))) => Ok(None),
        Err(Either::A((e, _))) | Err(Either::B((e, _))) => Err(e),
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
fn read_head<S: AsyncRead>(socket: S) -> impl Future<Item = (S, Head), Error = io::Error> {
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

/// The answer to `head`, and how long to wait before writing it (for
/// `GET /delay/MS`); `None` if the client closed without asking.
fn answer(head: Head, peer: SocketAddr, pages: Pages) -> Option<(Vec<u8>, Option<Duration>)> {
    let mut delay = None;
    let response = match head {
        Head::Complete(head) => match request_line(&head) {
            Some((method, target)) => match (target.strip_prefix("/delay/"), pages) {
                (Some(ms), Pages::Main(_)) => match ms.parse::<u64>() {
                    Ok(ms) if ms <= MAX_DELAY_MS => {
                        log::debug!("{}: waiting {} ms", peer, ms);
                        delay = Some(Duration::from_millis(ms));
                        let body = format!("waited {} ms\n", ms);
                        let sent = if method == "HEAD" { "" } else { body.as_str() };
                        response("200 OK", TEXT, body.len(), sent)
                    }
                    _ => {
                        log::info!("{}: {} {} -> 400", peer, method, target);
                        let body = format!("usage: GET /delay/MS, MS at most {}\n", MAX_DELAY_MS);
                        response("400 Bad Request", TEXT, body.len(), &body)
                    }
                },
                (_, pages) => {
                    log::info!("{}: {} {} -> 200", peer, method, target);
                    let page = match (&pages, target.as_str()) {
                        (Pages::Metrics(metrics), _) => Some(metrics.to_string()),
                        (Pages::Main(page), "/stats") => page.get().map(Metrics::to_string),
                        _ => None,
                    };
                    let (content_type, body) = match page {
                        Some(page) => (METRICS_TYPE, page),
                        None => (TEXT, BODY.to_string()),
                    };
                    let sent = if method == "HEAD" { "" } else { body.as_str() };
                    response("200 OK", content_type, body.len(), sent)
                }
            },
            None => {
                log::info!("{}: malformed request -> 400", peer);
                response("400 Bad Request", TEXT, 0, "")
            }
        },
        Head::TooLarge => {
            log::info!("{}: request head over {} bytes -> 431", peer, MAX_HEAD);
            response("431 Request Header Fields Too Large", TEXT, 0, "")
        }
        Head::Closed => {
            log::debug!("{}: closed before sending a request", peer);
            return None;
        }
    };
    Some((response, delay))
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

/// The content type of [`BODY`] and the error answers.
const TEXT: &str = "text/plain";

/// The content type of the metrics page: Prometheus's text format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn response(status: &str, content_type: &str, content_length: usize, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Pid: {}\r\n\r\n{}",
        status,
        content_type,
        content_length,
        std::process::id(),
        body
    )
    .into_bytes()
}
