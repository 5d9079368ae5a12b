//! The listening sockets this process was given: by systemd socket
//! activation, or by a predecessor's handover.

use std::env;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::os::unix::process::parent_id;
use std::process;

use listenfd::ListenFd;
use log::{error, info};
use socket2::{Domain, Protocol, Socket, Type};

use super::successor::vars;
use crate::limits::DEFAULT_BACKLOG;

/// The listening sockets this process was given when it started, from
/// [`Inherited::from_env`].
///
/// Two sources are understood, both with descriptors from 3 on:
///
/// - systemd socket activation: `LISTEN_FDS` descriptors, taken only when
///   `LISTEN_PID` is this process's id (the variables may have leaked from a
///   parent to which they were meant); their names from `LISTEN_FDNAMES`
///   (`unknown` when it is missing, as systemd says);
/// - a predecessor's [`Handover`](crate::Handover): variables of its own
///   (`TK_LISTEN_*`) that name the predecessor's pid, checked against this
///   process's parent, so that they too are taken only by the process they
///   were meant for.
///
/// Each socket taken is checked to be a TCP socket (others are logged at
/// `error` and left alone), made non-blocking (tokio 1 requires it) and
/// close-on-exec (so that it doesn't leak into programs this process runs).
/// All these variables are removed from the environment, whatever their
/// content, so that children don't see them.
///
/// A server takes the socket for each address it serves with
/// [`take_or_bind`](Inherited::take_or_bind) (or by name, with
/// [`take_named`](Inherited::take_named)); sockets that nobody takes close
/// when the `Inherited` is dropped. A [`Handover`](crate::Handover) does all
/// this for the sockets it will pass on; `Inherited` alone is for a server
/// that only needs socket activation.
pub struct Inherited {
    sockets: Vec<(String, TcpListener)>,
    origin: Origin,
    pub(super) predecessor: Option<UnixStream>,
}

/// Where a process's [`Inherited`] sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Nobody: the process was started by hand and binds its sockets.
    Nothing,
    /// systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`).
    Systemd,
    /// The handover of the predecessor process with this pid.
    Predecessor(u32),
}

impl Inherited {
    /// Takes the listening sockets this process was given (see
    /// [`Inherited`] for the sources and checks), and removes the variables
    /// that describe them from the environment.
    ///
    /// Call it once, early in `main` (it changes the environment, which
    /// other threads reading it through C would race with); a second call
    /// finds nothing. Sockets that can't be taken are logged at `error`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use tk_listen::Inherited;
    ///
    /// let mut inherited = Inherited::from_env();
    /// // The socket systemd named `http`, or the one for 127.0.0.1:8080, or bind it.
    /// let listener = match inherited.take_named("http") {
    ///     Some(listener) => listener,
    ///     None => inherited.take_or_bind("127.0.0.1:8080".parse().unwrap()).unwrap(),
    /// };
    /// # drop(listener);
    /// ```
    pub fn from_env() -> Inherited {
        let pid = process::id();
        let systemd = env::var("LISTEN_PID")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            == Some(pid)
            && env::var_os("LISTEN_FDS").is_some();
        let predecessor = env::var(vars::PARENT)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&ppid| ppid == parent_id());
        let (origin, count, names) = if systemd {
            let count = env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok());
            (Origin::Systemd, count, env::var("LISTEN_FDNAMES").ok())
        } else if let Some(ppid) = predecessor {
            let count = env::var(vars::FDS).ok().and_then(|v| v.parse().ok());
            (Origin::Predecessor(ppid), count, env::var(vars::NAMES).ok())
        } else {
            (Origin::Nothing, None, None)
        };
        let count: usize = count.unwrap_or(0);
        // A predecessor also passes the end of its readiness socket, after
        // the listening sockets.
        let total = match origin {
            Origin::Predecessor(_) => count + 1,
            _ => count,
        };
        // `listenfd` takes ownership of the descriptors (validating them)
        // when `LISTEN_FDS` is set and `LISTEN_PID` is ours: the checks
        // above decided already, so say it exactly that.
        for name in [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "LISTEN_FDS_FIRST_FD",
            vars::PARENT,
            vars::FDS,
            vars::NAMES,
        ] {
            env::remove_var(name);
        }
        let mut fds = if total > 0 {
            env::set_var("LISTEN_FDS", total.to_string());
            env::set_var("LISTEN_PID", pid.to_string());
            ListenFd::from_env()
        } else {
            ListenFd::empty()
        };
        let names: Vec<String> = match names {
            Some(names) => names.split(':').map(str::to_string).collect(),
            None => Vec::new(),
        };
        let mut sockets = Vec::with_capacity(count);
        for i in 0..count {
            let name = names.get(i).cloned().unwrap_or_else(|| "unknown".into());
            match take_listener(&mut fds, i) {
                Ok(listener) => sockets.push((name, listener)),
                Err(e) => error!("inherited descriptor {} ({}) not taken: {}", i + 3, name, e),
            }
        }
        let predecessor = match origin {
            Origin::Predecessor(_) => {
                match fds.take_custom::<UnixStream>(count, libc::AF_UNIX, libc::SOCK_STREAM, "") {
                    Ok(stream) => stream,
                    Err(e) => {
                        error!("the predecessor's readiness socket is unusable: {}", e);
                        None
                    }
                }
            }
            _ => None,
        };
        if origin != Origin::Nothing {
            info!(
                "inherited {} listening sockets from {:?}",
                sockets.len(),
                origin
            );
        }
        Inherited {
            sockets,
            origin,
            predecessor,
        }
    }

    /// Where the sockets came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The number of sockets not taken yet.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether every socket was taken (or none was given).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The name and local address of each socket not taken yet.
    pub fn sockets(&self) -> impl Iterator<Item = (&str, io::Result<SocketAddr>)> + '_ {
        self.sockets
            .iter()
            .map(|(name, l)| (name.as_str(), l.local_addr()))
    }

    /// Takes the first socket named `name` (`LISTEN_FDNAMES`, systemd's
    /// `FileDescriptorName=`, or the name a predecessor passed on).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut inherited = tk_listen::Inherited::from_env();
    /// if let Some(listener) = inherited.take_named("http") {
    ///     println!("serving on {:?}", listener.local_addr());
    /// }
    /// ```
    pub fn take_named(&mut self, name: &str) -> Option<TcpListener> {
        self.take_with(|n, _| n == name).map(|(_, l)| l)
    }

    /// Takes the socket bound to `addr`. Port 0 stands for any port: the
    /// first socket on `addr`'s IP is taken, so that the successor of a
    /// server started on port 0 keeps the port it got.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut inherited = tk_listen::Inherited::from_env();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = inherited.take_addr(&addr);
    /// # drop(listener);
    /// ```
    pub fn take_addr(&mut self, addr: &SocketAddr) -> Option<TcpListener> {
        self.take_with(|_, l| addr_matches(addr, l)).map(|(_, l)| l)
    }

    /// The inherited socket for `addr` ([`take_addr`](Inherited::take_addr)),
    /// or else a new one bound to it, with the options of a
    /// [`Handover`](crate::Handover)'s binds (a backlog of 1024 and
    /// `SO_REUSEADDR`), close-on-exec and non-blocking as the inherited
    /// ones. Convert it with tokio-core's
    /// `TcpListener::from_listener(listener, &addr, &handle)`, or tokio 1's
    /// `TcpListener::from_std(listener)`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use tokio_core::reactor::Core;
    ///
    /// let core = Core::new().unwrap();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = tk_listen::Inherited::from_env().take_or_bind(addr).unwrap();
    /// let listener =
    ///     tokio_core::net::TcpListener::from_listener(listener, &addr, &core.handle()).unwrap();
    /// # drop(listener);
    /// ```
    pub fn take_or_bind(&mut self, addr: SocketAddr) -> io::Result<TcpListener> {
        self.take_or_bind_named(addr, DEFAULT_BACKLOG)
            .map(|(_, l)| l)
    }

    /// The decision of [`take_or_bind`](Inherited::take_or_bind), for every
    /// caller (a `Handover`'s listeners and a `BindMany`'s addresses): the
    /// inherited socket with its name, or a new one listening with
    /// `backlog`, named `unknown` as systemd names a socket without a name.
    pub(super) fn take_or_bind_named(
        &mut self,
        addr: SocketAddr,
        backlog: u32,
    ) -> io::Result<(String, TcpListener)> {
        if let Some(found) = self.take_with(|_, l| addr_matches(&addr, l)) {
            return Ok(found);
        }
        Ok(("unknown".to_string(), bind(addr, backlog)?))
    }

    /// Takes every socket not taken yet.
    pub(super) fn take_all(&mut self) -> Vec<(String, TcpListener)> {
        std::mem::take(&mut self.sockets)
    }

    fn take_with(
        &mut self,
        mut f: impl FnMut(&str, &TcpListener) -> bool,
    ) -> Option<(String, TcpListener)> {
        let i = self.sockets.iter().position(|(n, l)| f(n, l))?;
        Some(self.sockets.remove(i))
    }
}

impl fmt::Debug for Inherited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inherited")
            .field("origin", &self.origin)
            .field("sockets", &self.sockets().collect::<Vec<_>>())
            .field("predecessor", &self.predecessor.is_some())
            .finish()
    }
}

fn take_listener(fds: &mut ListenFd, i: usize) -> io::Result<TcpListener> {
    let listener = fds
        .take_tcp_listener(i)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such descriptor"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listening socket on `addr` made the way tokio-core and
/// `tk_listen::tokio1::bind` make theirs: close-on-exec (socket2 creates
/// it so), `SO_REUSEADDR` (so that a server restarted by hand binds while
/// its predecessor's connections linger in `TIME_WAIT`), `backlog` (which
/// Linux caps at `net.core.somaxconn`; above `i32::MAX` cut to it), then
/// non-blocking.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn addr_matches(wanted: &SocketAddr, listener: &TcpListener) -> bool {
    match listener.local_addr() {
        Ok(local) if wanted.port() == 0 => local.ip() == wanted.ip(),
        Ok(local) => local == *wanted,
        Err(_) => false,
    }
}
