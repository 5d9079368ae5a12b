//! The pipeline on Unix domain sockets (`tokio-uds`): any stream of
//! `io::Error` results works, not only TCP.
#![cfg(unix)]

mod support;

use std::io::Read;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use futures::future::Shared;
use futures::sync::oneshot;
use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::reactor::Core;
use tokio_uds::{UnixListener, UnixStream};

use support::{init_logging, Gauge, GENEROUS};

const LIMIT: usize = 2;
const CLIENTS: usize = 6;

/// A connection that reports its acceptance, waits until `release` fires,
/// then writes `hello\n` and closes.
fn hello_when_released(
    socket: UnixStream,
    gauge: &Arc<Gauge>,
    accepted: &mpsc::Sender<()>,
    release: &Shared<oneshot::Receiver<()>>,
) -> impl Future<Item = (), Error = ()> {
    gauge.enter();
    let _ = accepted.send(());
    let gauge = gauge.clone();
    release
        .clone()
        .then(move |_| tokio_io::io::write_all(socket, b"hello\n"))
        .then(move |result| {
            gauge.leave();
            result
                .map(|_| ())
                .map_err(|e| panic!("test connection failed: {}", e))
        })
}

fn fetch_unix(path: &Path) -> Vec<u8> {
    let mut stream = StdUnixStream::connect(path).expect("connect to the unix socket");
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read the reply");
    reply
}

#[test]
fn clients_are_served_over_a_unix_socket_within_the_limit() {
    init_logging();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path: PathBuf = dir.path().join("server.sock");
    let gauge = Arc::new(Gauge::default());
    let (accepted_tx, accepted) = mpsc::channel();
    let (release, released) = oneshot::channel::<()>();
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound_tx, bound) = mpsc::channel();

    let server_path = path.clone();
    let server_gauge = gauge.clone();
    let server = thread::spawn(move || {
        let mut core = Core::new().expect("event loop");
        let handle = core.handle();
        let listener = UnixListener::bind(&server_path, &handle).expect("bind the unix socket");
        bound_tx.send(()).unwrap();
        let released = released.shared();
        let served = listener
            .incoming()
            .sleep_on_error(Duration::from_millis(100), &handle)
            .take_until(stopped)
            .map(move |(socket, _peer)| {
                hello_when_released(socket, &server_gauge, &accepted_tx, &released)
            })
            .listen(LIMIT);
        core.run(served)
    });
    bound
        .recv_timeout(GENEROUS)
        .expect("the server did not start");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || fetch_unix(&path))
        })
        .collect();

    // The limit is reached...
    for i in 0..LIMIT {
        accepted
            .recv_timeout(GENEROUS)
            .unwrap_or_else(|_| panic!("only {} clients were accepted", i));
    }
    // ...and held: the other clients wait in the backlog. (This wait can
    // only make the test pass wrongly if the machine stalls for the whole
    // 300 ms, never fail it wrongly.)
    assert!(
        accepted.recv_timeout(Duration::from_millis(300)).is_err(),
        "a client was accepted beyond the limit of {}",
        LIMIT
    );
    assert_eq!(gauge.now(), LIMIT);

    release.send(()).unwrap();
    for client in clients {
        assert_eq!(client.join().unwrap(), b"hello\n");
    }
    stop.send(()).unwrap();
    assert_eq!(server.join().unwrap(), Ok(()));
    assert_eq!(gauge.max(), LIMIT);
    assert_eq!(gauge.finished(), CLIENTS);

    // Clean up the socket file and its directory.
    drop(dir);
    assert!(!path.exists());
}
