//! The handover's decisions, free of either runtime: which sockets the
//! successor gets, one handover at a time, what success and failure mean
//! (systemd's `MAINPID`, the logs). `successor.rs` deals with the other
//! process.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use sd_notify::NotifyState;

use super::inherit::Inherited;
use super::successor::{self, READY};
use crate::limits::DEFAULT_BACKLOG;

/// The default of [`Handover::ready_timeout`].
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than the ready timeout a shutdown waits for the
/// handover it cancelled to end (killing and reaping take milliseconds;
/// the ready timeout bounds the wait if the readiness socket can't be shut
/// down).
const CANCEL_MARGIN: Duration = Duration::from_secs(1);

/// Restarts a server without losing a client: its listening sockets, and
/// the handover of them to a successor process. Made by
/// [`Handover::new`]; cheap to clone (the clones share one state).
///
/// At start, a `Handover` takes the sockets this process inherited (see
/// [`Inherited`]) and notes the path of the running executable and the
/// arguments. The server gets each of its listening sockets from
/// [`listener`](Handover::listener) (the inherited one for that address,
/// or a new one), which keeps a copy for the successor; then it serves and
/// calls [`ready`](Handover::ready).
///
/// A handover ([`hand_over`](Handover::hand_over), blocking, or the futures
/// [`start`](Handover::start) and [`shutdown_signal`](Handover::shutdown_signal)):
///
/// 1. starts the successor: the same executable path (so that a deploy
///    replaces the file, then signals), arguments and environment, with the
///    listening sockets at descriptors 3 and up and a readiness socket;
/// 2. waits for it to call [`ready`](Handover::ready), at most
///    [`ready_timeout`](Handover::ready_timeout) (10 s by default);
/// 3. on success, tells systemd the successor's pid (`MAINPID=`, when
///    `NOTIFY_SOCKET` is set); this process then stops accepting and drains:
///    dropping its listener closes nothing, as the successor holds the same
///    sockets, and the clients in their backlogs are accepted there;
/// 4. on failure (the successor can't start, exits, or isn't ready in
///    time), logs the reason at `error`, kills the successor if it runs and
///    reaps it, and this process keeps serving; a later request may try
///    again.
///
/// A shutdown ([`shutdown_signal`](Handover::shutdown_signal)'s `SIGTERM`
/// or `SIGINT`) while a handover runs cancels it: the successor, if it was
/// started, is killed and reaped, even if it reports ready meanwhile, and
/// systemd is not told its pid; the handover resolves to
/// [`HandoverError::Done`], and this process drains and exits as on any
/// shutdown.
///
/// The sockets it binds itself (an address not inherited) are made as
/// tokio-core's `TcpListener::bind` and [`tokio1::bind`](crate::tokio1::bind)
/// make theirs: close-on-exec, `SO_REUSEADDR`, and a backlog of 1024 where
/// std's `TcpListener::bind` would give 128 ([the
/// backlog](crate::tokio1::incoming#the-backlog) says what it is for).
///
/// A [`BindMany`](crate::BindMany) (either stack) takes its sockets from a
/// handover with `BindMany::handover`: the inherited socket for each
/// address of its list, and at a handover the successor gets the sockets
/// it listens on then.
///
/// One handover at a time: a request while one runs is logged at `warn` and
/// refused ([`HandoverError::Busy`]), as is one after a handover succeeded
/// ([`HandoverError::Done`]). Nothing of this runs per connection.
///
/// # systemd
///
/// With `Type=notify`, systemd learns `READY=1` from [`ready`](Handover::ready)
/// and follows the successor (`NotifyAccess=all` lets it send `READY=1`
/// too); a socket unit keeps the socket open even between a crash and the
/// restart:
///
/// ```ini
/// # /etc/systemd/system/hello.socket
/// [Socket]
/// ListenStream=127.0.0.1:8080
/// FileDescriptorName=http
///
/// [Install]
/// WantedBy=sockets.target
/// ```
///
/// ```ini
/// # /etc/systemd/system/hello.service
/// [Service]
/// Type=notify
/// NotifyAccess=all
/// ExecStart=/usr/local/bin/hello 127.0.0.1:8080
/// ExecReload=kill -HUP $MAINPID
/// KillMode=mixed
/// ```
///
/// # Examples
///
/// A tokio-core server that hands over on `SIGHUP` and stops gracefully on
/// `SIGTERM` and `SIGINT` (`examples/http` is a complete one):
///
/// ```no_run
/// use std::time::Duration;
///
/// use futures::{Future, Stream};
/// use tk_listen::{Handover, ListenExt};
/// use tokio_core::net::TcpListener;
/// use tokio_core::reactor::Core;
///
/// let handover = Handover::new().ready_timeout(Duration::from_secs(10));
/// let mut core = Core::new().unwrap();
/// let handle = core.handle();
/// let addr = "127.0.0.1:8080".parse().unwrap();
/// let listener = handover.listener(addr).unwrap();
/// let listener = TcpListener::from_listener(listener, &addr, &handle).unwrap();
/// let server = listener
///     .incoming()
///     .sleep_on_error(Duration::from_millis(100), &handle)
///     .map(|(socket, _peer)| {
///         tokio_io::io::write_all(socket, b"hello\n").then(|_| Ok(()))
///     })
///     .listen(1000)
///     .with_graceful_shutdown(handover.shutdown_signal());
/// handover.ready();
/// core.run(server).unwrap();
/// ```
#[derive(Clone)]
pub struct Handover {
    inner: Arc<Inner>,
}

/// The result of a successful handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Successor {
    /// The successor's process id.
    pub pid: u32,
    /// From the start of the handover to the successor's readiness.
    pub took: Duration,
}

/// Why a handover did not happen; this process keeps serving.
#[derive(Debug)]
pub enum HandoverError {
    /// Another handover is running.
    Busy,
    /// A handover succeeded already, or a shutdown began (before this
    /// handover, or while it ran: then its successor was killed): this
    /// process is on its way out.
    Done,
    /// The executable could not be found at start, or the successor could
    /// not be started.
    Start(io::Error),
    /// The successor exited before it was ready.
    Exited(ExitStatus),
    /// The successor was not ready within the timeout (it was killed).
    NotReady(Duration),
    /// The readiness socket failed.
    Io(io::Error),
}

impl Handover {
    /// Takes the inherited sockets ([`Inherited::from_env`]) and notes the
    /// executable's path (`std::env::current_exe`) and the arguments, for
    /// the successor. Call it early in `main`: it changes the environment.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new();
    /// let listener = handover.listener("127.0.0.1:8080".parse().unwrap()).unwrap();
    /// # drop(listener);
    /// ```
    pub fn new() -> Handover {
        Handover::with_inherited(Inherited::from_env())
    }

    /// A `Handover` that serves the sockets of `inherited` (the
    /// executable's path and the arguments as in [`new`](Handover::new)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::with_inherited(tk_listen::Inherited::from_env());
    /// # drop(handover);
    /// ```
    pub fn with_inherited(mut inherited: Inherited) -> Handover {
        let predecessor = inherited.predecessor.take();
        Handover {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared {
                    program: std::env::current_exe(),
                    args: std::env::args_os().skip(1).collect(),
                    ready_timeout: DEFAULT_READY_TIMEOUT,
                    inherited,
                    listeners: Vec::new(),
                    sets: Vec::new(),
                    unapplied: 0,
                    ready_deferred: false,
                    predecessor,
                    readiness: None,
                    state: State::Idle,
                }),
                cancelled: Condvar::new(),
            }),
        }
    }

    /// Runs `program` as the successor instead of this executable.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new().program("/usr/local/bin/hello");
    /// # drop(handover);
    /// ```
    pub fn program(self, program: impl Into<PathBuf>) -> Handover {
        self.lock().program = Ok(program.into());
        self
    }

    /// Gives the successor these arguments instead of this process's.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new().args(["127.0.0.1:8080"]);
    /// # drop(handover);
    /// ```
    pub fn args<I, S>(self, args: I) -> Handover
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.lock().args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long the successor has to report ready (10 s by default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let handover = tk_listen::Handover::new().ready_timeout(Duration::from_secs(30));
    /// # drop(handover);
    /// ```
    pub fn ready_timeout(self, timeout: Duration) -> Handover {
        self.lock().ready_timeout = timeout;
        self
    }

    /// The inherited listening socket for `addr` (see
    /// [`Inherited::take_or_bind`], port 0 included), or a new one bound to
    /// it with a backlog of 1024; a copy is kept for the successor. The
    /// socket is non-blocking.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new();
    /// let listener = handover.listener("127.0.0.1:8080".parse().unwrap()).unwrap();
    /// let listener = tokio_core::net::TcpListener::from_listener(
    ///     listener,
    ///     &"127.0.0.1:8080".parse().unwrap(),
    ///     &tokio_core::reactor::Core::new().unwrap().handle(),
    /// );
    /// # drop(listener);
    /// ```
    pub fn listener(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let mut shared = self.lock();
        let (name, listener) = shared.inherited.take_or_bind_named(addr, DEFAULT_BACKLOG)?;
        shared.listeners.push((name, listener.try_clone()?));
        Ok(listener)
    }

    /// The socket of an address of a `BindMany` given this handover
    /// ([`Handover::listener`]'s decision, with the `BindMany`'s
    /// `backlog`), and the copy for the successor, which the `BindMany`
    /// holds while the address is in its set: the handover only looks at
    /// it, so that a reload that removes the address closes the socket.
    pub(super) fn set_listener(
        &self,
        addr: SocketAddr,
        backlog: u32,
    ) -> io::Result<(TcpListener, Arc<Kept>)> {
        let mut shared = self.lock();
        let (name, listener) = shared.inherited.take_or_bind_named(addr, backlog)?;
        let kept = Arc::new(Kept {
            name,
            listener: listener.try_clone()?,
        });
        shared.sets.retain(|kept| kept.strong_count() > 0);
        shared.sets.push(Arc::downgrade(&kept));
        Ok((listener, kept))
    }

    /// One more `BindMany` takes its sockets from this handover:
    /// [`ready`](Handover::ready) waits for its first address list.
    pub(super) fn set_added(&self) {
        self.lock().unapplied += 1;
    }

    /// A `BindMany` given this handover applied its first address list
    /// (or ended, or was dropped); the last one does a `ready` that was
    /// deferred until then.
    pub(super) fn set_applied(&self) {
        let mut shared = self.lock();
        shared.unapplied = shared.unapplied.saturating_sub(1);
        if shared.unapplied == 0 && shared.ready_deferred {
            shared.ready_deferred = false;
            drop(shared);
            self.ready_now();
        }
    }

    /// Keeps a copy of `listener`, a listening socket obtained another way,
    /// for the successor, under `name` (which can't contain `:`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new();
    /// let listener = std::net::TcpListener::bind("127.0.0.1:9090").unwrap();
    /// handover.keep("admin", &listener).unwrap();
    /// ```
    pub fn keep(&self, name: &str, listener: &TcpListener) -> io::Result<()> {
        if name.contains(':') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a socket's name can't contain ':'",
            ));
        }
        let copy = listener.try_clone()?;
        self.lock().listeners.push((name.to_string(), copy));
        Ok(())
    }

    /// The inherited sockets not taken yet, for a look-up by name
    /// ([`Inherited::take_named`]); give the ones taken to
    /// [`keep`](Handover::keep) to pass them on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new();
    /// let http = handover.inherited(|sockets| sockets.take_named("http"));
    /// # drop(http);
    /// ```
    pub fn inherited<R>(&self, f: impl FnOnce(&mut Inherited) -> R) -> R {
        f(&mut self.lock().inherited)
    }

    /// Says that this process serves: `READY=1` to systemd (when
    /// `NOTIFY_SOCKET` is set) and to the predecessor, if there is one,
    /// which then stops accepting. Call it once the listeners are in the
    /// server. Failures are logged at `error` (a predecessor that doesn't
    /// hear it times out and keeps serving). Inherited sockets that the
    /// server did not take are closed now, logged at `warn`: nobody would
    /// accept their clients.
    ///
    /// While a `BindMany` given this handover (`BindMany::handover`) has
    /// not applied its first address list yet, all this waits for it (it
    /// happens on the `BindMany`'s event loop or runtime, once the last one
    /// applied its list): so `ready` can be called before the server runs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new();
    /// // ... the listeners, the server ...
    /// handover.ready();
    /// ```
    pub fn ready(&self) {
        {
            let mut shared = self.lock();
            if shared.unapplied > 0 {
                info!(
                    "ready once {} BindMany applied their first address list",
                    shared.unapplied
                );
                shared.ready_deferred = true;
                return;
            }
        }
        self.ready_now();
    }

    fn ready_now(&self) {
        for (name, listener) in self.lock().inherited.take_all() {
            warn!(
                "inherited socket {} ({:?}) not used: closed",
                name,
                listener.local_addr()
            );
        }
        if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
            error!("cannot tell systemd READY=1: {}", e);
        }
        if let Some(mut predecessor) = self.lock().predecessor.take() {
            if let Err(e) = predecessor.write_all(READY) {
                error!(
                    "cannot tell the predecessor that this process is ready: {}",
                    e
                );
            }
        }
    }

    /// Hands the listening sockets over to a successor (see [`Handover`]),
    /// blocking the calling thread until the successor is ready or the
    /// handover failed. On success, stop accepting and drain.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let handover = tk_listen::Handover::new();
    /// match handover.hand_over() {
    ///     Ok(successor) => println!("process {} serves now", successor.pid),
    ///     Err(e) => println!("still serving: {}", e),
    /// }
    /// ```
    pub fn hand_over(&self) -> Result<Successor, HandoverError> {
        let request = self.begin()?;
        self.run(request)
    }

    /// Checks that no handover runs or succeeded, and marks one as running.
    pub(super) fn begin(&self) -> Result<Request, HandoverError> {
        let mut shared = self.lock();
        match shared.state {
            State::Idle => {
                shared.state = State::Running;
                Ok(Request(Instant::now()))
            }
            State::Running => {
                warn!("handover requested while one runs: ignored");
                Err(HandoverError::Busy)
            }
            State::Done => {
                warn!("handover requested after one succeeded: ignored");
                Err(HandoverError::Done)
            }
            State::Stopping | State::Cancelling => {
                warn!("handover requested while shutting down: ignored");
                Err(HandoverError::Done)
            }
        }
    }

    /// A shutdown began (`SIGTERM`, `SIGINT`): drops this handover's copies
    /// of the listening sockets, so that the server's own drop closes them
    /// and new clients are refused during the drain, and refuses later
    /// handovers. A handover running is cancelled: its wait for the
    /// successor's readiness ends at once, the successor is killed and
    /// reaped, and this returns once that is done (the process must not
    /// exit before: the successor would run on, holding the sockets).
    pub(super) fn stop(&self) {
        let mut shared = self.lock();
        shared.listeners.clear();
        match shared.state {
            State::Idle => shared.state = State::Stopping,
            State::Running => {
                info!("shutting down: cancelling the handover that runs");
                shared.state = State::Cancelling;
                if let Some(readiness) = &shared.readiness {
                    if let Err(e) = readiness.shutdown(Shutdown::Both) {
                        error!(
                            "cannot interrupt the wait for the successor: {}; \
                             it ends at the ready timeout",
                            e
                        );
                    }
                }
                let limit = shared.ready_timeout + CANCEL_MARGIN;
                let (_shared, waited) = self
                    .inner
                    .cancelled
                    .wait_timeout_while(shared, limit, |shared| shared.state == State::Cancelling)
                    .unwrap_or_else(|p| p.into_inner());
                if waited.timed_out() {
                    error!(
                        "the cancelled handover did not end within {:?}; stopping anyway",
                        limit
                    );
                }
            }
            State::Cancelling | State::Done | State::Stopping => {}
        }
    }

    /// The successor reported ready: does it become the main process? Yes,
    /// and the handover is done, unless a shutdown cancelled it before
    /// (the successor must then be killed). Decided under the lock, so that
    /// a shutdown after it finds the handover done.
    pub(super) fn accept(&self) -> bool {
        let mut shared = self.lock();
        if shared.state != State::Running {
            return false;
        }
        shared.state = State::Done;
        true
    }

    /// Did a shutdown cancel the handover that runs?
    pub(super) fn cancelled(&self) -> bool {
        self.lock().state == State::Cancelling
    }

    /// The handover itself, after [`begin`](Handover::begin).
    pub(super) fn run(&self, request: Request) -> Result<Successor, HandoverError> {
        let result = self.start_and_wait(request.0);
        self.finish(result)
    }

    /// Ends the handover marked as running with `result`: what success,
    /// failure and a cancel mean (also for a handover whose thread could
    /// not start).
    pub(super) fn finish(
        &self,
        result: Result<Successor, HandoverError>,
    ) -> Result<Successor, HandoverError> {
        let mut shared = self.lock();
        shared.readiness = None;
        match &result {
            Ok(successor) => {
                // `accept` made the state `Done`.
                info!(
                    "handed over to process {} in {:?}; stopping",
                    successor.pid, successor.took
                );
                if let Err(e) = sd_notify::notify(&[NotifyState::MainPid(successor.pid)]) {
                    error!("cannot tell systemd MAINPID={}: {}", successor.pid, e);
                }
            }
            Err(e) if shared.state == State::Cancelling => {
                shared.state = State::Stopping;
                info!(
                    "handover cancelled by the shutdown, no successor left running ({})",
                    e
                );
                self.inner.cancelled.notify_all();
                return Err(HandoverError::Done);
            }
            Err(e) => {
                shared.state = State::Idle;
                error!("handover failed, still serving: {}", e);
            }
        }
        result
    }

    fn start_and_wait(&self, started: Instant) -> Result<Successor, HandoverError> {
        let (command, ours, timeout) = {
            let mut shared = self.lock();
            if shared.state != State::Running {
                return Err(HandoverError::Done); // cancelled before the start
            }
            let program = match &shared.program {
                Ok(program) => program,
                Err(e) => {
                    let e = io::Error::new(e.kind(), e.to_string());
                    return Err(HandoverError::Start(e));
                }
            };
            // The `BindMany`s' sockets as they are now; those of removed
            // addresses are gone.
            let sets: Vec<Arc<Kept>> = shared.sets.iter().filter_map(Weak::upgrade).collect();
            let listeners = shared
                .listeners
                .iter()
                .map(|(name, listener)| (name.as_str(), listener))
                .chain(sets.iter().map(|kept| (kept.name.as_str(), &kept.listener)));
            let (command, ours) = successor::command(program, &shared.args, listeners)?;
            // What `stop` shuts down to end the wait for the successor.
            shared.readiness = Some(ours.try_clone().map_err(HandoverError::Io)?);
            (command, ours, shared.ready_timeout)
        };
        successor::start(command, ours, started, timeout, self)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // No code that panics runs under the lock; recover anyway.
        self.inner.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Handover {
    fn default() -> Handover {
        Handover::new()
    }
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.lock();
        f.debug_struct("Handover")
            .field("program", &shared.program.as_ref().ok())
            .field("args", &shared.args)
            .field("ready_timeout", &shared.ready_timeout)
            .field("listeners", &shared.listeners.len())
            .field(
                "bind_many_listeners",
                &shared.sets.iter().filter(|k| k.strong_count() > 0).count(),
            )
            .field("inherited", &shared.inherited)
            .field("state", &shared.state)
            .finish()
    }
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoverError::Busy => write!(f, "a handover is running already"),
            HandoverError::Done => {
                write!(f, "a handover succeeded already, or a shutdown began")
            }
            HandoverError::Start(e) => write!(f, "cannot start the successor: {}", e),
            HandoverError::Exited(status) => {
                write!(f, "the successor exited before it was ready ({})", status)
            }
            HandoverError::NotReady(timeout) => {
                write!(
                    f,
                    "the successor was not ready within {:?}; killed it",
                    timeout
                )
            }
            HandoverError::Io(e) => write!(f, "the successor's readiness socket failed: {}", e),
        }
    }
}

impl std::error::Error for HandoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandoverError::Start(e) | HandoverError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A handover marked as running by [`Handover::begin`], and when it was
/// requested.
#[derive(Debug)]
pub(super) struct Request(Instant);

/// The state, and what a shutdown that cancelled a handover waits on.
struct Inner {
    shared: Mutex<Shared>,
    /// Signalled when a handover cancelled by `stop` has ended.
    cancelled: Condvar,
}

struct Shared {
    program: io::Result<PathBuf>,
    args: Vec<OsString>,
    ready_timeout: Duration,
    inherited: Inherited,
    /// The listening sockets for the successor, with their names.
    listeners: Vec<(String, TcpListener)>,
    /// The sockets of the `BindMany`s given this handover, held by them.
    sets: Vec<Weak<Kept>>,
    /// How many of them have not applied their first address list yet.
    unapplied: usize,
    /// `ready` was called while `unapplied > 0`.
    ready_deferred: bool,
    /// Where to say `READY=1` to the predecessor.
    predecessor: Option<UnixStream>,
    /// While a handover runs: a copy of its end of the readiness socket,
    /// which `stop` shuts down to end the wait for the successor.
    readiness: Option<UnixStream>,
    state: State,
}

/// A copy of a `BindMany`'s listening socket for the successor, with the
/// socket's name.
pub(super) struct Kept {
    name: String,
    listener: TcpListener,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    /// A shutdown began while a handover ran: the handover ends, its
    /// successor killed, and the shutdown waits for it.
    Cancelling,
    Done,
    /// A shutdown began: no handover any more.
    Stopping,
}
