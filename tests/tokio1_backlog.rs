//! The backlog of the listeners made by `tk_listen::tokio1::bind`,
//! `bind_with_backlog` and `BindMany`, observed on Linux: with nothing
//! accepting, clients connect one after the other until the kernel's queue
//! of completed handshakes is full (Linux holds `backlog + 1` of them), and
//! the next client's SYN is dropped, so its `connect` times out.
//! (And the other option `bind` sets, `SO_REUSEADDR`.)
#![cfg(target_os = "linux")]

mod support;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tk_listen::tokio1::{bind, bind_with_backlog, BindMany};
use tokio_stream::StreamExt;

/// Far below the 1 s after which a dropped SYN is sent again, far above a
/// handshake on loopback.
const DROPPED: Duration = Duration::from_millis(300);

/// Connects clients one at a time (each handshake done before the next
/// starts) until one times out or `limit` are connected; returns how many
/// completed. The clients stay open until it returns.
fn completed_handshakes(addr: SocketAddr, limit: usize) -> usize {
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
/// `net.core.somaxconn`): the number of handshakes it completes.
fn expected_handshakes(asked: u32) -> usize {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .expect("a number");
    asked.min(somaxconn) as usize + 1
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Enough descriptors for a backlog of 1024 clients and some.
fn allow_descriptors(count: u64) {
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

#[test]
fn bind_with_backlog_listens_with_the_backlog_asked_for() {
    let runtime = runtime();
    let _entered = runtime.enter();
    for asked in [1, 5] {
        let listener = bind_with_backlog("127.0.0.1:0".parse().unwrap(), asked).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(
            completed_handshakes(addr, 100),
            expected_handshakes(asked),
            "backlog {}",
            asked
        );
    }
}

#[test]
fn bind_with_backlog_works_on_ipv6_too() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let listener = bind_with_backlog("[::1]:0".parse().unwrap(), 2).expect("bind [::1]:0");
    let addr = listener.local_addr().unwrap();
    assert!(addr.is_ipv6());
    assert_eq!(completed_handshakes(addr, 100), expected_handshakes(2));
}

#[test]
fn bind_listens_with_a_backlog_of_1024_not_tokios_128() {
    allow_descriptors(4096);
    let runtime = runtime();
    let _entered = runtime.enter();
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(completed_handshakes(addr, 1100), expected_handshakes(1024));
}

#[test]
fn bind_many_binds_with_the_backlog_it_is_given() {
    let runtime = runtime();
    runtime.block_on(async {
        let addresses = tokio_stream::iter(vec![vec!["127.0.0.1:0".parse().unwrap()]])
            .chain(tokio_stream::pending());
        let mut listeners = BindMany::new(addresses);
        listeners.backlog(3);
        // Poll until the address task bound the address; nothing connects
        // before, so nothing is accepted.
        let addr = tokio::time::timeout(support::GENEROUS, async {
            loop {
                let polled = tokio::time::timeout(Duration::from_millis(1), listeners.next());
                assert!(polled.await.is_err(), "accepted a connection");
                if let [addr] = listeners.local_addrs()[..] {
                    return addr;
                }
            }
        })
        .await
        .expect("bound");
        // Blocking connects on the runtime's only thread: nothing accepts.
        assert_eq!(completed_handshakes(addr, 100), expected_handshakes(3));
    });
}

#[test]
fn bind_sets_so_reuseaddr_as_tokio_core_did() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let socket = socket2::SockRef::from(&listener);
    assert!(socket.reuse_address().unwrap());
}
