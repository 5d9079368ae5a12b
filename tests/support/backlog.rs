//! A listening socket's backlog seen from outside, on Linux: its accept
//! queue in `/proc/net/tcp`, and how many handshakes the kernel completes
//! while nothing accepts.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Far below the 1 s after which a dropped SYN is sent again, far above a
/// handshake on loopback.
const DROPPED: Duration = Duration::from_millis(300);

/// The length of the accept queue of the socket listening on `addr`
/// (127.0.0.1), from `/proc/net/tcp` (a listening socket's `rx_queue`).
pub fn accept_queue(addr: SocketAddr) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{:04X}", addr.port());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, rem_address, st (0A: LISTEN), tx_queue:rx_queue
        if fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A") {
            let rx = fields.get(4)?.split(':').nth(1)?;
            usize::from_str_radix(rx, 16).ok()
        } else {
            None
        }
    })
}

/// Connects clients one at a time (each handshake done before the next
/// starts) until one times out or `limit` are connected; returns how many
/// completed. The clients stay open until it returns.
pub fn completed_handshakes(addr: SocketAddr, limit: usize) -> usize {
    let mut clients = Vec::new();
    while clients.len() < limit {
        match TcpStream::connect_timeout(&addr, DROPPED) {
            Ok(client) => clients.push(client),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => panic!("connect to {}: {}", addr, e),
        }
    }
    clients.len()
}

/// What the kernel makes of a backlog of `asked` (`listen` caps it at
/// `net.core.somaxconn`): the number of handshakes it completes (Linux
/// holds `backlog + 1`).
pub fn expected_handshakes(asked: u32) -> usize {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .expect("a number");
    asked.min(somaxconn) as usize + 1
}

/// Raises `RLIMIT_NOFILE` to `count` descriptors (enough for a backlog of
/// 1024 clients and some).
pub fn allow_descriptors(count: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("RLIMIT_NOFILE");
    if soft < count {
        assert!(
            hard >= count,
            "RLIMIT_NOFILE hard limit {} < {}",
            hard,
            count
        );
        rlimit::Resource::NOFILE
            .set(count, hard)
            .expect("raise RLIMIT_NOFILE");
    }
}
