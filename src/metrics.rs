//! The counters of a server as a Prometheus metrics page.

use std::fmt;
use std::time::Duration;

use crate::queue::{AcceptQueue, ListenDrops};
use crate::{AcceptStats, ListenStats, OpenStats, PeerStats};

/// A metrics page in the Prometheus text exposition format (version 0.0.4),
/// rendered from the live counters of a server.
///
/// Made by [`Metrics::new`], given the stats handles with
/// [`listen`](Metrics::listen), [`accept`](Metrics::accept),
/// [`peers`](Metrics::peers), [`open`](Metrics::open) and
/// [`queue`](Metrics::queue); each rendering
/// (`metrics.to_string()`, or `write!` through its [`Display`](fmt::Display))
/// reads the counters as they are then. Each metric has its `# HELP` and
/// `# TYPE` lines; counters end in `_total`; durations are in seconds. Serve
/// it with `Content-Type: text/plain; version=0.0.4`.
///
/// The names, with the default prefix `tk_listen` (see
/// [`prefix`](Metrics::prefix)), and the nearest of OpenTelemetry's
/// semantic conventions for Kestrel (ASP.NET Core's server, the only
/// server-side connection metrics OpenTelemetry has made stable):
///
/// | name | type | what it counts | from | OpenTelemetry (Kestrel) |
/// |---|---|---|---|---|
/// | `tk_listen_connections_running` | gauge | connections running now | [`ListenStats::running`] | `kestrel.active_connections` |
/// | `tk_listen_connections_max` | gauge | the most that run at once (`listen(n)`) | [`ListenStats::max_connections`] | (Kestrel's `MaxConcurrentConnections`) |
/// | `tk_listen_connections_started_total` | counter | connections started | [`ListenStats::started`] | |
/// | `tk_listen_connections_finished_total` | counter | connections whose future resolved `Ok` | [`ListenStats::finished`] | `kestrel.connection.duration` without `error.type` |
/// | `tk_listen_connections_failed_total` | counter | ... resolved `Err` | [`ListenStats::failed`] | `kestrel.connection.duration` with `error.type` |
/// | `tk_listen_connections_panicked_total` | counter | ... panicked | [`ListenStats::panicked`] | |
/// | `tk_listen_connections_aborted_total` | counter | ... dropped unfinished (server dropped, drain deadline) | [`ListenStats::aborted`] | |
/// | `tk_listen_connection_duration_seconds` | histogram | how long connections ran, start to end, every outcome | [`ListenStats::durations`] ([`OpenStats::durations`] on a page without `listen`) | `kestrel.connection.duration` |
/// | `tk_listen_accepted_total` | counter | connections accepted | [`AcceptStats::accepted`] | |
/// | `tk_listen_accept_errors_skipped_total` | counter | per-connection `accept()` errors skipped | [`AcceptStats::skipped`] | |
/// | `tk_listen_accept_pauses_total` | counter | pauses on `EMFILE` and friends | [`AcceptStats::pauses`] | |
/// | `tk_listen_accept_paused_seconds_total` | counter | time spent paused | [`AcceptStats::paused_time`] | |
/// | `tk_listen_accept_paused` | gauge | 1 while paused, else 0 | [`AcceptStats::is_paused`] | |
/// | `tk_listen_max_per_peer` | gauge | the most connections of one peer | [`PeerStats::max_per_peer`] | |
/// | `tk_listen_peers` | gauge | peers holding a connection now | [`PeerStats::peers`] | |
/// | `tk_listen_peer_rejected_total` | counter | connections closed at once: their peer was at its cap | [`PeerStats::rejected`] | `kestrel.rejected_connections` (Kestrel rejects at its global cap; `listen(n)` lets those wait in the queue instead) |
/// | `tk_listen_open_connections` | gauge | connections open now (`limit_open`) | [`OpenStats::open`] | `kestrel.active_connections` |
/// | `tk_listen_open_connections_max` | gauge | the most open at once | [`OpenStats::max_open`] | |
/// | `tk_listen_open_accepted_total` | counter | connections let through | [`OpenStats::accepted`] | |
/// | `tk_listen_open_full_total` | counter | times every slot was taken and the stream waited | [`OpenStats::full_periods`] | |
/// | `tk_listen_open_full_seconds_total` | counter | time spent waiting at the cap | [`OpenStats::full_time`] | |
/// | `tk_listen_open_full` | gauge | 1 while waiting at the cap, else 0 | [`OpenStats::is_full`] | |
/// | `tk_listen_queued_connections` | gauge | clients in the accept queue, not accepted yet | [`AcceptQueue::read`] | `kestrel.queued_connections` |
/// | `tk_listen_queued_connections_limit` | gauge | the accept queue's limit | [`AcceptQueue::read`] | |
/// | `tk_listen_kernel_listen_overflows_total` | counter | handshakes discarded by full accept queues, whole network namespace | [`ListenDrops::read`] | |
/// | `tk_listen_kernel_listen_drops_total` | counter | connection attempts dropped by listeners, whole network namespace | [`ListenDrops::read`] | |
///
/// A server capped by [`limit_open`](crate::ListenExt::limit_open) instead
/// of `listen` (because something else spawns its connections, as
/// `axum::serve` does) has its connections counted by [`OpenStats`]: on a
/// page given [`open`](Metrics::open) and no [`listen`](Metrics::listen),
/// the first three rows of `limit_open` are named
/// `tk_listen_connections_running`, `tk_listen_connections_max` and
/// `tk_listen_connections_started_total` instead, and
/// `tk_listen_connection_duration_seconds` is [`OpenStats::durations`], so
/// that dashboards read both kinds of server alike.
///
/// A page shows the metrics of the handles it was given. The queue's lines
/// are left out when it can't be read (the listener is closed, or the system
/// is not Linux), and so are the kernel's counts.
///
/// # Examples
///
/// ```
/// use futures::{future, stream};
/// use tk_listen::{ListenExt, Metrics};
///
/// let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(())]);
/// let server = connections.listen(10);
/// let metrics = Metrics::new().listen(&server.stats());
/// assert!(metrics
///     .to_string()
///     .contains("# TYPE tk_listen_connections_running gauge\ntk_listen_connections_running 0\n"));
/// ```
///
/// The page of a whole server, to serve on a listener of its own (so that a
/// scrape still works when every slot of the main one is taken; see
/// `examples/http`):
///
/// ```no_run
/// use std::time::Duration;
///
/// use futures::Stream;
/// use tk_listen::{AcceptQueue, ListenExt, Metrics};
/// use tokio_core::net::TcpListener;
/// use tokio_core::reactor::Core;
///
/// let core = Core::new().unwrap();
/// let handle = core.handle();
/// let addr = "127.0.0.1:8080".parse().unwrap();
/// let listener = TcpListener::bind(&addr, &handle).unwrap();
/// let queue = AcceptQueue::of(&listener).ok(); // None on other systems than Linux
/// let accepts = listener
///     .incoming()
///     .sleep_on_error(Duration::from_millis(100), &handle);
/// let accept_stats = accepts.stats();
/// let accepts = accepts.limit_per_peer(8);
/// let peer_stats = accepts.stats();
/// let server = accepts
///     .map(|(_socket, _peer)| Ok::<(), ()>(()))
///     .listen(1000);
/// let mut metrics = Metrics::new()
///     .listen(&server.stats())
///     .accept(&accept_stats)
///     .peers(&peer_stats);
/// if let Some(queue) = &queue {
///     metrics = metrics.queue(queue);
/// }
/// // Each `metrics.to_string()` is the page as the counters are then.
/// ```
#[derive(Clone, Debug)]
pub struct Metrics {
    prefix: String,
    listen: Option<ListenStats>,
    accept: Option<AcceptStats>,
    peers: Option<PeerStats>,
    open: Option<OpenStats>,
    queue: Option<AcceptQueue>,
}

impl Metrics {
    /// An empty page with the prefix `tk_listen`.
    pub fn new() -> Metrics {
        Metrics {
            prefix: "tk_listen_".to_string(),
            listen: None,
            accept: None,
            peers: None,
            open: None,
            queue: None,
        }
    }

    /// Puts `prefix` and `_` before every name instead of `tk_listen_`,
    /// e.g. `myapp` for `myapp_connections_running`; an empty prefix leaves
    /// the names bare (`connections_running`).
    ///
    /// # Panics
    ///
    /// If `prefix` is not a valid start of a Prometheus metric name: ASCII
    /// letters, digits, `_` and `:`, not starting with a digit.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream};
    /// use tk_listen::{ListenExt, Metrics};
    ///
    /// let server = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(())]).listen(10);
    /// let page = Metrics::new().prefix("api").listen(&server.stats()).to_string();
    /// assert!(page.contains("\napi_connections_max 10\n"));
    /// ```
    pub fn prefix(mut self, prefix: &str) -> Metrics {
        let valid = prefix.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        assert!(
            valid,
            "Metrics::prefix({:?}): a metric name prefix has only ASCII letters, digits, \
             '_' and ':', and doesn't start with a digit",
            prefix
        );
        self.prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{}_", prefix)
        };
        self
    }

    /// Shows the counters of a `listen` server (either stack's): the
    /// `connections_*` metrics.
    pub fn listen(mut self, stats: &ListenStats) -> Metrics {
        self.listen = Some(stats.clone());
        self
    }

    /// Shows the counters of a `sleep_on_error` stream: the `accept*`
    /// metrics.
    pub fn accept(mut self, stats: &AcceptStats) -> Metrics {
        self.accept = Some(stats.clone());
        self
    }

    /// Shows the counters of a `limit_per_peer` stream: the `peer*` and
    /// `max_per_peer` metrics.
    pub fn peers(mut self, stats: &PeerStats) -> Metrics {
        self.peers = Some(stats.clone());
        self
    }

    /// Shows the counters of a `limit_open` stream: the `open_*` metrics.
    pub fn open(mut self, stats: &OpenStats) -> Metrics {
        self.open = Some(stats.clone());
        self
    }

    /// Shows the accept queue of the listener (`queued_connections*`) and
    /// the kernel's counts of connection attempts that full queues turned
    /// away (`kernel_listen_*`); each rendering asks the kernel.
    pub fn queue(mut self, queue: &AcceptQueue) -> Metrics {
        self.queue = Some(queue.clone());
        self
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut page = Page {
            out: f,
            prefix: &self.prefix,
        };
        if let Some(stats) = &self.listen {
            listen_metrics(&mut page, stats)?;
        }
        if let Some(stats) = &self.accept {
            accept_metrics(&mut page, stats)?;
        }
        if let Some(stats) = &self.peers {
            peer_metrics(&mut page, stats)?;
        }
        if let Some(stats) = &self.open {
            open_metrics(&mut page, stats, self.listen.is_none())?;
        }
        if let Some(queue) = &self.queue {
            queue_metrics(&mut page, queue)?;
        }
        Ok(())
    }
}

fn listen_metrics(page: &mut Page<'_, '_>, stats: &ListenStats) -> fmt::Result {
    page.gauge(
        "connections_running",
        "Connections running now.",
        stats.running(),
    )?;
    page.gauge(
        "connections_max",
        "The most connections that run at once.",
        stats.max_connections(),
    )?;
    page.counter(
        "connections_started_total",
        "Connections started.",
        stats.started(),
    )?;
    page.counter(
        "connections_finished_total",
        "Connections whose future resolved with Ok.",
        stats.finished(),
    )?;
    page.counter(
        "connections_failed_total",
        "Connections whose future resolved with Err.",
        stats.failed(),
    )?;
    page.counter(
        "connections_panicked_total",
        "Connections whose future panicked.",
        stats.panicked(),
    )?;
    page.counter(
        "connections_aborted_total",
        "Connections dropped unfinished: the server was dropped, or the drain deadline passed.",
        stats.aborted(),
    )?;
    let durations = stats.durations();
    page.histogram(
        "connection_duration_seconds",
        "How long connections ran, from start to end, whatever their outcome.",
        durations.buckets(),
        durations.sum(),
        durations.count(),
    )
}

fn accept_metrics(page: &mut Page<'_, '_>, stats: &AcceptStats) -> fmt::Result {
    page.counter("accepted_total", "Connections accepted.", stats.accepted())?;
    page.counter(
        "accept_errors_skipped_total",
        "Per-connection accept() errors skipped without a pause.",
        stats.skipped(),
    )?;
    page.counter(
        "accept_pauses_total",
        "Pauses of accepting after an accept() error such as EMFILE.",
        stats.pauses(),
    )?;
    page.counter(
        "accept_paused_seconds_total",
        "Seconds accepting was paused.",
        Seconds(stats.paused_time()),
    )?;
    page.gauge(
        "accept_paused",
        "1 while accepting is paused, else 0.",
        u8::from(stats.is_paused()),
    )
}

fn peer_metrics(page: &mut Page<'_, '_>, stats: &PeerStats) -> fmt::Result {
    page.gauge(
        "max_per_peer",
        "The most connections one peer may hold at once.",
        stats.max_per_peer(),
    )?;
    page.gauge(
        "peers",
        "Peers holding at least one connection now.",
        stats.peers(),
    )?;
    page.counter(
        "peer_rejected_total",
        "Connections closed at once because their peer held the most it may.",
        stats.rejected(),
    )
}

fn open_metrics(page: &mut Page<'_, '_>, stats: &OpenStats, as_server: bool) -> fmt::Result {
    if as_server {
        // `limit_open` caps the server: its connections are the server's.
        page.gauge(
            "connections_running",
            "Connections open now (limit_open).",
            stats.open(),
        )?;
        page.gauge(
            "connections_max",
            "The most connections open at once (limit_open).",
            stats.max_open(),
        )?;
        page.counter(
            "connections_started_total",
            "Connections let through by limit_open.",
            stats.accepted(),
        )?;
        let durations = stats.durations();
        page.histogram(
            "connection_duration_seconds",
            "How long connections stayed open (limit_open), from the stream to their drop.",
            durations.buckets(),
            durations.sum(),
            durations.count(),
        )?;
    } else {
        page.gauge(
            "open_connections",
            "Connections open now (limit_open).",
            stats.open(),
        )?;
        page.gauge(
            "open_connections_max",
            "The most connections open at once.",
            stats.max_open(),
        )?;
        page.counter(
            "open_accepted_total",
            "Connections let through by limit_open.",
            stats.accepted(),
        )?;
    }
    page.counter(
        "open_full_total",
        "Times every slot was taken and limit_open waited for one.",
        stats.full_periods(),
    )?;
    page.counter(
        "open_full_seconds_total",
        "Seconds limit_open waited with every slot taken.",
        Seconds(stats.full_time()),
    )?;
    page.gauge(
        "open_full",
        "1 while limit_open waits with every slot taken, else 0.",
        u8::from(stats.is_full()),
    )
}

fn queue_metrics(page: &mut Page<'_, '_>, queue: &AcceptQueue) -> fmt::Result {
    if let Ok(length) = queue.read() {
        page.gauge(
            "queued_connections",
            "Clients in the listener's accept queue, not accepted yet.",
            length.waiting,
        )?;
        page.gauge(
            "queued_connections_limit",
            "The most clients the listener's accept queue holds.",
            length.limit,
        )?;
    }
    if let Ok(drops) = ListenDrops::read() {
        page.counter(
            "kernel_listen_overflows_total",
            "Handshakes discarded because an accept queue was full (TcpExt ListenOverflows, whole network namespace).",
            drops.overflows,
        )?;
        page.counter(
            "kernel_listen_drops_total",
            "Connection attempts dropped by listening sockets (TcpExt ListenDrops, whole network namespace).",
            drops.drops,
        )?;
    }
    Ok(())
}

/// The page being written: one metric family at a time, each with its
/// `# HELP` and `# TYPE` lines.
struct Page<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    /// Empty, or ends in `_`.
    prefix: &'a str,
}

impl Page<'_, '_> {
    fn head(&mut self, name: &str, help: &str, kind: &str) -> fmt::Result {
        let prefix = self.prefix;
        writeln!(self.out, "# HELP {}{} {}", prefix, name, help)?;
        writeln!(self.out, "# TYPE {}{} {}", prefix, name, kind)
    }

    /// A counter; `name` ends in `_total`.
    fn counter(&mut self, name: &str, help: &str, value: impl fmt::Display) -> fmt::Result {
        debug_assert!(name.ends_with("_total"));
        self.head(name, help, "counter")?;
        writeln!(self.out, "{}{} {}", self.prefix, name, value)
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl fmt::Display) -> fmt::Result {
        self.head(name, help, "gauge")?;
        writeln!(self.out, "{}{} {}", self.prefix, name, value)
    }

    /// A histogram of durations: `buckets` are (upper bound, cumulative
    /// count) in increasing order, the last one's bound `Duration::MAX`
    /// (`+Inf`); `sum` and `count` over every observation.
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: impl IntoIterator<Item = (Duration, u64)>,
        sum: Duration,
        count: u64,
    ) -> fmt::Result {
        self.head(name, help, "histogram")?;
        let prefix = self.prefix;
        for (upper, cumulative) in buckets {
            if upper == Duration::MAX {
                writeln!(
                    self.out,
                    "{}{}_bucket{{le=\"+Inf\"}} {}",
                    prefix, name, cumulative
                )?;
            } else {
                writeln!(
                    self.out,
                    "{}{}_bucket{{le=\"{}\"}} {}",
                    prefix,
                    name,
                    Seconds(upper),
                    cumulative
                )?;
            }
        }
        writeln!(self.out, "{}{}_sum {}", prefix, name, Seconds(sum))?;
        writeln!(self.out, "{}{}_count {}", prefix, name, count)
    }
}

/// A duration written in seconds, as Prometheus wants.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}
