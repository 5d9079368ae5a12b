//! The backlog of the listeners made by `tk_listen::tokio1::bind`,
//! `bind_with_backlog` and `BindMany`, observed on Linux: with nothing
//! accepting, clients connect one after the other until the kernel's queue
//! of completed handshakes is full (Linux holds `backlog + 1` of them), and
//! the next client's SYN is dropped, so its `connect` times out.
//! (And the other option `bind` sets, `SO_REUSEADDR`.)
#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use support::backlog::{allow_descriptors, completed_handshakes, expected_handshakes};
use tk_listen::tokio1::{bind, bind_with_backlog, BindMany};
use tokio_stream::StreamExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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
