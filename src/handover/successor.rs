//! Starting the successor with the listening sockets, and waiting for its
//! readiness or cleaning up: the part of the handover that talks to the
//! other process.

use std::ffi::OsString;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{self, Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use log::{error, info};

use super::protocol::{Handover, HandoverError, Successor};

/// The environment variables of a predecessor's handover.
pub(super) mod vars {
    /// The predecessor's pid: the successor takes the sockets only if it is
    /// its parent.
    pub(crate) const PARENT: &str = "TK_LISTEN_HANDOVER_PID";
    /// How many listening sockets, from descriptor 3 on; the readiness
    /// socket follows them.
    pub(crate) const FDS: &str = "TK_LISTEN_HANDOVER_FDS";
    /// Their names, separated by `:`.
    pub(crate) const NAMES: &str = "TK_LISTEN_HANDOVER_FDNAMES";
}

/// What the successor writes on its readiness socket once it serves.
pub(super) const READY: &[u8] = b"READY=1\n";

/// The successor's command: `program` with `args`, the `listeners` at
/// descriptors 3 and up, its end of the readiness socket after them, and
/// the variables that describe them; and our end of the readiness socket.
pub(super) fn command<'a>(
    program: &Path,
    args: &[OsString],
    listeners: impl Iterator<Item = (&'a str, &'a TcpListener)>,
) -> Result<(Command, UnixStream), HandoverError> {
    let (ours, theirs) = UnixStream::pair().map_err(HandoverError::Io)?;
    let mut command = Command::new(program);
    command.args(args);
    let mut mappings = Vec::new();
    let mut names = Vec::new();
    for (i, (name, listener)) in listeners.enumerate() {
        let copy = listener.try_clone().map_err(HandoverError::Start)?;
        mappings.push(FdMapping {
            parent_fd: OwnedFd::from(copy),
            child_fd: 3 + i as i32,
        });
        names.push(name);
    }
    let count = names.len();
    mappings.push(FdMapping {
        parent_fd: OwnedFd::from(theirs),
        child_fd: 3 + count as i32,
    });
    command
        .fd_mappings(mappings)
        .expect("descriptor numbers are distinct");
    command
        .env(vars::PARENT, process::id().to_string())
        .env(vars::FDS, count.to_string())
        .env(vars::NAMES, names.join(":"));
    Ok((command, ours))
}

/// Starts `command` and waits for its readiness on `ours` until `started +
/// timeout`; once it is ready, `handover` decides whether it stays
/// ([`Handover::accept`]). On failure, or if a shutdown cancelled the
/// handover (its `stop` shuts `ours` down, which ends the wait), the
/// successor is gone (reaped, or killed and reaped).
pub(super) fn start(
    mut command: Command,
    ours: UnixStream,
    started: Instant,
    timeout: Duration,
    handover: &Handover,
) -> Result<Successor, HandoverError> {
    info!("handing over: starting {:?}", command.get_program());
    let mut child = command.spawn().map_err(HandoverError::Start)?;
    // The command holds the successor's copies of the sockets: close them,
    // so that its exit closes its end of the readiness socket.
    drop(command);
    match wait_ready(ours, started + timeout) {
        Ok(()) if handover.accept() => Ok(Successor {
            pid: child.id(),
            took: started.elapsed(),
        }),
        // Ready, but a shutdown cancelled the handover first.
        Ok(()) => {
            kill_and_reap(&mut child);
            Err(HandoverError::Done)
        }
        // It closed its end: it exited, or it runs on without ever
        // reporting ready (it dropped the socket); or a shutdown closed
        // ours. Wait for the exit until the deadline, or the cancel, only,
        // then kill it: it holds the sockets.
        Err(Waited::Closed) => match wait_exit(&mut child, started + timeout, handover) {
            Ok(Some(status)) => Err(HandoverError::Exited(status)),
            Ok(None) => {
                kill_and_reap(&mut child);
                Err(HandoverError::NotReady(timeout))
            }
            Err(e) => {
                kill_and_reap(&mut child);
                Err(HandoverError::Io(e))
            }
        },
        Err(Waited::TimedOut) => {
            kill_and_reap(&mut child);
            Err(HandoverError::NotReady(timeout))
        }
        Err(Waited::Failed(e)) => {
            kill_and_reap(&mut child);
            Err(HandoverError::Io(e))
        }
    }
}

/// The successor's exit status if it exits before `deadline` and before
/// a shutdown cancels the handover, checked every 10 ms (a rare path: the
/// successor closed its readiness socket, or the shutdown closed ours).
fn wait_exit(
    child: &mut Child,
    deadline: Instant,
    handover: &Handover,
) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline || handover.cancelled() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

enum Waited {
    /// The successor closed its end (it exited) without saying it's ready.
    Closed,
    TimedOut,
    Failed(io::Error),
}

/// Reads the successor's readiness until `deadline`: blocking reads with a
/// timeout, no polling.
fn wait_ready(mut ours: UnixStream, deadline: Instant) -> Result<(), Waited> {
    let mut got = Vec::with_capacity(READY.len());
    let mut buf = [0; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Waited::TimedOut);
        }
        ours.set_read_timeout(Some(left)).map_err(Waited::Failed)?;
        match ours.read(&mut buf) {
            Ok(0) => return Err(Waited::Closed),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(READY.len()).any(|w| w == READY) {
                    return Ok(());
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(Waited::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Waited::Failed(e)),
        }
    }
}

fn kill_and_reap(child: &mut Child) {
    if let Err(e) = child.kill() {
        error!("cannot kill the successor {}: {}", child.id(), e);
    }
    if let Err(e) = child.wait() {
        error!("cannot reap the successor {}: {}", child.id(), e);
    }
}
