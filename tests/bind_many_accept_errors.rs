//! `BindMany` returning a real `accept()` error (EMFILE) without losing its
//! listeners. Lowers `RLIMIT_NOFILE`, so it has this test binary to itself.

#![cfg(target_os = "linux")]

mod support;

use std::fs::File;
use std::io;
use std::net::SocketAddr;

use futures::{future, stream, Async, Future, Stream};
use tk_listen::BindMany;
use tokio_core::net::TcpStream;
use tokio_core::reactor::{Core, Timeout};

use support::process::set_nofile_soft;
use support::{connect, free_addrs, wait_until_bound, GENEROUS};

/// Polls `listeners` on `core` until it has a result (bounded by GENEROUS).
fn next_result<S>(
    core: &mut Core,
    listeners: &mut S,
) -> Result<Option<(TcpStream, SocketAddr)>, io::Error>
where
    S: Stream<Item = (TcpStream, SocketAddr), Error = io::Error>,
{
    let timeout = Timeout::new(GENEROUS, &core.handle()).unwrap();
    let result = future::poll_fn(|| match listeners.poll() {
        Ok(Async::NotReady) => Ok::<_, io::Error>(Async::NotReady),
        Ok(Async::Ready(item)) => Ok(Async::Ready(Ok(item))),
        Err(e) => Ok(Async::Ready(Err(e))),
    });
    match core.run(result.select2(timeout)) {
        Ok(future::Either::A((result, _))) => result,
        Ok(future::Either::B(_)) => panic!("no result from BindMany in time"),
        Err(_) => unreachable!("neither future fails"),
    }
}

#[test]
fn an_accept_error_is_returned_and_every_listener_keeps_serving() {
    set_nofile_soft(256).expect("lower RLIMIT_NOFILE");
    let mut core = Core::new().unwrap();
    let handle = core.handle();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let [other] = free_addrs();
    // One list, then an address stream that stays open.
    let addresses =
        stream::iter_ok(vec![vec![any_port, other]]).chain(future::empty::<_, ()>().into_stream());
    let mut listeners = BindMany::new(addresses, &handle);
    let bound = wait_until_bound(&mut core, &mut listeners, 2);
    assert_eq!(bound.len(), 2, "both bound: {:?}", bound);

    let _clients: Vec<_> = bound.iter().map(|&addr| connect(addr)).collect();

    // Use up every descriptor (at most the limit set above).
    let mut hogs = Vec::new();
    let exhausted = loop {
        match File::open("/dev/null") {
            Ok(file) if hogs.len() < 256 => hogs.push(file),
            Ok(_) => panic!("the open files limit did not apply"),
            Err(e) => break e,
        }
    };
    assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE));

    // Each listener in turn reports the error; neither is dropped.
    for _ in 0..2 {
        let error =
            next_result(&mut core, &mut listeners).expect_err("accept fails without descriptors");
        assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{}", error);
    }
    assert_eq!(listeners.local_addrs(), bound);

    drop(hogs);
    let mut served: Vec<SocketAddr> = (0..2)
        .map(|_| {
            let (socket, _peer) = next_result(&mut core, &mut listeners)
                .expect("accept works again")
                .expect("stream still open");
            socket.local_addr().unwrap()
        })
        .collect();
    served.sort();
    let mut expected = bound.clone();
    expected.sort();
    assert_eq!(served, expected, "each listener served its waiting client");
}
