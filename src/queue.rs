//! The clients behind the connection cap: a listening TCP socket's accept
//! queue, and the network namespace's counts of connections its full queues
//! turned away, read from the kernel on demand.

use std::fmt;
use std::io;

/// A handle to the accept queue of one listening TCP socket: the clients
/// whose connection the kernel has completed but the server has not
/// `accept()`ed yet.
///
/// Made by [`AcceptQueue::of`] from the listener, before the listener moves
/// into its accept loop; [`AcceptQueue::read`] then asks the kernel, from
/// any thread, how many clients wait and how many may. Nothing is counted
/// in between: a handle nobody reads costs nothing. While a server is at its
/// [`listen`](crate::ListenExt::listen) cap (or paused by
/// [`sleep_on_error`](crate::ListenExt::sleep_on_error)) it doesn't accept,
/// so this is where its new clients are; once the queue is full, the kernel
/// drops their connection attempts and they retry after 1 s, 3 s, ...
/// ([`ListenDrops`] counts those).
///
/// The handle holds no descriptor of the socket, only its identity (the
/// socket's inode number), so it never keeps a listener open: once the
/// server drops its listener, the socket closes as usual (new clients are
/// refused) and [`read`](AcceptQueue::read) fails with `NotFound`. (A handle
/// that kept a duplicate of the descriptor would keep the socket listening:
/// clients would queue where nobody accepts, to be reset later.)
///
/// Linux only, with the cargo feature `accept-queue` (off by default; it
/// brings in `netlink-sys`): it asks the kernel's socket diagnostics
/// (`sock_diag` netlink, what `ss -lt` shows as `Recv-Q` and `Send-Q`) in
/// the calling process's network namespace, through a netlink socket of its
/// own that the handle and its clones keep open (one descriptor, so that
/// reading works while the process is out of descriptors and the server
/// paused). Without the feature, [`of`](AcceptQueue::of) and
/// [`ListenDrops::read`] return an error of kind `Unsupported`. Other
/// systems have no such query for a listening socket (FreeBSD's `kern.ipc.soacceptqueue` is the system-wide
/// limit, macOS's `netstat -L` reads kernel memory); there
/// [`of`](AcceptQueue::of) returns an error of kind `Unsupported`. Unix
/// domain sockets are not supported either (`InvalidInput`).
///
/// # Examples
///
/// ```no_run
/// use tk_listen::AcceptQueue;
/// use tokio_core::net::TcpListener;
/// use tokio_core::reactor::Core;
///
/// let core = Core::new().unwrap();
/// let addr = "127.0.0.1:8080".parse().unwrap();
/// let listener = TcpListener::bind(&addr, &core.handle()).unwrap();
/// let queue = AcceptQueue::of(&listener).unwrap();
/// // ... listener.incoming().sleep_on_error(..).map(..).listen(1000) ...
/// let length = queue.read().unwrap();
/// println!("{} clients wait, {} may", length.waiting, length.limit);
/// ```
#[derive(Clone)]
pub struct AcceptQueue {
    inode: u64,
    family: u8,
    /// The netlink socket the queries go through, opened by `of` and kept
    /// (shared by the clones), so that a reading needs no new descriptor
    /// when the process has none left: that is when clients queue most.
    #[cfg_attr(
        not(all(target_os = "linux", feature = "accept-queue")),
        allow(dead_code)
    )]
    diag: std::sync::Arc<imp::Diag>,
}

/// What [`AcceptQueue::read`] found: the clients waiting in the accept queue
/// now, and the most that may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLength {
    /// Connections completed by the kernel and not accepted yet.
    pub waiting: u64,
    /// The queue's limit: the backlog the listener was made with, cut to
    /// the system's `net.core.somaxconn`. (Linux lets one more than the
    /// limit wait before it drops new ones.)
    pub limit: u64,
}

/// Connection attempts turned away because a listening socket's accept
/// queue was full, counted by the kernel for the whole network namespace
/// (every listener of every process in it, from boot on), from
/// `/proc/net/netstat`.
///
/// Read with [`ListenDrops::read`]; Linux only (`Unsupported` elsewhere).
/// A rising count means clients wait seconds to connect (each dropped SYN is
/// retried after 1 s, then 3 s, ...).
///
/// # Examples
///
/// ```no_run
/// use tk_listen::ListenDrops;
///
/// let drops = ListenDrops::read().unwrap();
/// println!("{} overflows, {} drops", drops.overflows, drops.drops);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenDrops {
    /// `TcpExt: ListenOverflows`: handshakes that completed while the accept
    /// queue was full (the kernel discards them).
    pub overflows: u64,
    /// `TcpExt: ListenDrops`: connection attempts dropped by listening
    /// sockets for any reason, the overflows included.
    pub drops: u64,
}

impl AcceptQueue {
    /// The accept queue of `listener`, a listening TCP socket (tokio-core's,
    /// tokio 1's or std's `TcpListener`, or any descriptor of one).
    ///
    /// Asks the kernel once, to check that the descriptor is a listening TCP
    /// socket; the handle keeps no descriptor of it (see the type's docs),
    /// only its own netlink socket.
    ///
    /// # Errors
    ///
    /// `Unsupported` on systems other than Linux; `InvalidInput` if the
    /// descriptor is not a listening TCP socket; the error of opening the
    /// netlink socket (e.g. `EMFILE`) or of the query.
    #[cfg(unix)]
    pub fn of<L: std::os::unix::io::AsRawFd>(listener: &L) -> io::Result<AcceptQueue> {
        imp::of(listener.as_raw_fd())
    }

    /// Asks the kernel how many clients wait in the queue now, and how many
    /// may.
    ///
    /// A few microseconds: one netlink request listing the listening TCP
    /// sockets of the socket's address family (a few dozen on most hosts).
    /// It blocks for that long, so calling it from a scrape handler on the
    /// event loop is fine; readings from several threads take turns.
    ///
    /// # Errors
    ///
    /// `NotFound` once the listening socket is closed; the error of the
    /// query if it fails.
    pub fn read(&self) -> io::Result<QueueLength> {
        imp::read(self)
    }
}

impl fmt::Debug for AcceptQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptQueue")
            .field("inode", &self.inode)
            .field("ipv6", &(self.family == imp::AF_INET6))
            .finish()
    }
}

impl ListenDrops {
    /// Reads the counts from `/proc/net/netstat`.
    ///
    /// # Errors
    ///
    /// `Unsupported` on systems other than Linux; the error of reading the
    /// file; `InvalidData` if it has no `TcpExt` counts of these names.
    pub fn read() -> io::Result<ListenDrops> {
        imp::listen_drops()
    }
}

/// Parses the two `TcpExt:` lines of `/proc/net/netstat` (names, then
/// values).
#[cfg_attr(
    not(all(target_os = "linux", feature = "accept-queue")),
    allow(dead_code)
)]
fn parse_netstat(text: &str) -> io::Result<ListenDrops> {
    let mut lines = text.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = match (lines.next(), lines.next()) {
        (Some(names), Some(values)) => (names, values),
        _ => return Err(invalid_data("no TcpExt lines in /proc/net/netstat")),
    };
    let find = |wanted: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value.parse::<u64>().ok())
            .ok_or_else(|| invalid_data(&format!("no TcpExt {} in /proc/net/netstat", wanted)))
    };
    Ok(ListenDrops {
        overflows: find("ListenOverflows")?,
        drops: find("ListenDrops")?,
    })
}

fn invalid_data(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(all(target_os = "linux", feature = "accept-queue"))]
mod imp {
    //! The `sock_diag` query: one `SOCK_DIAG_BY_FAMILY` dump of the TCP
    //! sockets in state `LISTEN`, answered with one `inet_diag_msg` per
    //! socket, whose `idiag_rqueue` is a listener's accept queue length and
    //! `idiag_wqueue` its limit (`linux/inet_diag.h`). The messages are
    //! plain bytes, built and read here; the socket is `netlink-sys`'s.

    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::RawFd;
    use std::sync::{Arc, Mutex};

    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

    use super::{AcceptQueue, ListenDrops, QueueLength};

    pub(super) const AF_INET: u8 = 2;
    pub(super) const AF_INET6: u8 = 10;
    const IPPROTO_TCP: u8 = 6;
    const TCP_LISTEN: u32 = 10;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    /// `struct nlmsghdr`.
    const HEADER_LEN: usize = 16;
    /// `struct inet_diag_req_v2`.
    const REQUEST_LEN: usize = 56;
    /// `struct inet_diag_msg`: family, state, timer, retrans (1 byte each),
    /// the 48-byte socket id, then expires, rqueue, wqueue, uid, inode.
    const MESSAGE_LEN: usize = 72;
    const RQUEUE_AT: usize = 56;
    const WQUEUE_AT: usize = 60;
    const INODE_AT: usize = 68;
    /// Enough for one datagram of a dump (the kernel fills up to 32 KiB).
    const RECEIVE_BUFFER: usize = 64 * 1024;
    /// A dump ends with `NLMSG_DONE`; this bounds the loop all the same.
    const MOST_DATAGRAMS: usize = 100_000;

    /// The netlink socket of an [`AcceptQueue`] and its clones; one query
    /// at a time goes through it.
    pub(super) struct Diag {
        channel: Mutex<Channel>,
    }

    struct Channel {
        socket: Socket,
        /// The sequence number of the latest query: the answers of an
        /// earlier one that was cut short are skipped by theirs.
        sequence: u32,
    }

    pub(super) fn of(fd: RawFd) -> io::Result<AcceptQueue> {
        // The socket's inode, through the descriptor's entry in /proc: a
        // `stat` of a path, no descriptor kept or duplicated.
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", fd))?.ino();
        let socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let diag = Arc::new(Diag {
            channel: Mutex::new(Channel {
                socket,
                sequence: 0,
            }),
        });
        for family in [AF_INET, AF_INET6] {
            if find(&diag, family, inode)?.is_some() {
                return Ok(AcceptQueue {
                    inode,
                    family,
                    diag,
                });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "AcceptQueue::of: not a listening TCP socket",
        ))
    }

    pub(super) fn read(queue: &AcceptQueue) -> io::Result<QueueLength> {
        find(&queue.diag, queue.family, queue.inode)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the listening socket of this AcceptQueue is closed",
            )
        })
    }

    /// The queue of the listening TCP socket `inode` of `family`, if there
    /// is one.
    fn find(diag: &Diag, family: u8, inode: u64) -> io::Result<Option<QueueLength>> {
        // A query cut short (by an error, or a reader that panicked) leaves
        // answers behind; the sequence numbers tell them apart.
        let mut channel = diag.channel.lock().unwrap_or_else(|p| p.into_inner());
        channel.sequence = channel.sequence.wrapping_add(1);
        let (socket, sequence) = (&channel.socket, channel.sequence);
        socket.send(&request(family, sequence), 0)?;
        let mut found = None;
        let mut datagram = Vec::with_capacity(RECEIVE_BUFFER);
        for _ in 0..MOST_DATAGRAMS {
            datagram.clear();
            let len = socket.recv(&mut datagram, 0)?;
            if len > datagram.len() {
                return Err(super::invalid_data("sock_diag: datagram truncated"));
            }
            let mut rest = &datagram[..];
            while rest.len() >= HEADER_LEN {
                let len = u32_at(rest, 0) as usize;
                if len < HEADER_LEN || len > rest.len() {
                    return Err(super::invalid_data("sock_diag: bad message length"));
                }
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if u32_at(rest, 8) != sequence {
                    rest = &rest[((len + 3) & !3).min(rest.len())..];
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(found),
                    NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(bytes4(rest, HEADER_LEN));
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    SOCK_DIAG_BY_FAMILY if len >= HEADER_LEN + MESSAGE_LEN => {
                        let message = &rest[HEADER_LEN..len];
                        if u64::from(u32_at(message, INODE_AT)) == inode {
                            found = Some(QueueLength {
                                waiting: u32_at(message, RQUEUE_AT).into(),
                                limit: u32_at(message, WQUEUE_AT).into(),
                            });
                        }
                    }
                    _ => {}
                }
                // Messages are padded to 4 bytes.
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
        Err(super::invalid_data("sock_diag: the dump did not end"))
    }

    /// A dump request for the TCP sockets of `family` in state `LISTEN`.
    fn request(family: u8, sequence: u32) -> Vec<u8> {
        let mut request = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
        request.extend_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
        request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request.extend_from_slice(&sequence.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        request.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]); // no extensions, padding
        request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        request.resize(HEADER_LEN + REQUEST_LEN, 0); // any socket id
        request
    }

    fn bytes4(bytes: &[u8], at: usize) -> [u8; 4] {
        [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(bytes4(bytes, at))
    }

    pub(super) fn listen_drops() -> io::Result<ListenDrops> {
        super::parse_netstat(&std::fs::read_to_string("/proc/net/netstat")?)
    }
}

#[cfg(not(all(target_os = "linux", feature = "accept-queue")))]
mod imp {
    use std::io;

    use super::{AcceptQueue, ListenDrops, QueueLength};

    pub(super) const AF_INET6: u8 = 0;

    /// Never made: there is no query to keep a socket for.
    pub(super) struct Diag;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the accept queue and listen drop counts are read on Linux only, with the `accept-queue` feature",
        )
    }

    #[cfg(unix)]
    pub(super) fn of(_fd: std::os::unix::io::RawFd) -> io::Result<AcceptQueue> {
        Err(unsupported())
    }

    pub(super) fn read(_queue: &AcceptQueue) -> io::Result<QueueLength> {
        Err(unsupported())
    }

    pub(super) fn listen_drops() -> io::Result<ListenDrops> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_counts_are_found_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n\
                    TcpExt: 1 22 333 4\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        assert_eq!(
            parse_netstat(text).unwrap(),
            ListenDrops {
                overflows: 22,
                drops: 333
            }
        );
    }

    #[test]
    fn netstat_without_the_counts_is_invalid_data() {
        for text in [
            "",
            "TcpExt: ListenOverflows\n",
            "TcpExt: A B\nTcpExt: 1 2\n",
        ] {
            let error = parse_netstat(text).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{:?}", text);
        }
    }
}
