//! `BindMany::handover` on both stacks: started by the real
//! `systemd-socket-activate`, a `BindMany` serves on the inherited socket
//! for an address of its list, and a reload that removes the address closes
//! it; a handover gives the successor every socket of a `BindMany`, with
//! the clients queued in their backlogs. And the backlog (1024) and
//! `SO_REUSEADDR` of the handover's own bind. The server runs in a child
//! process: this test binary again, as its ignored `bind_many_child` test.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use futures::{Future, Stream};
use support::backlog::{
    accept_queue, allow_descriptors, completed_handshakes, expected_handshakes,
};
use support::GENEROUS;
use tk_listen::{Handover, ListenExt};

/// The server of these tests, when this binary runs with
/// `BIND_MANY_TEST_STACK` (`futures` or `tokio1`) set: a `BindMany` with
/// `handover` on the addresses of `BIND_MANY_TEST_ADDRS` (comma-separated),
/// then on each list read from its standard input (one a line), in
/// `listen(BIND_MANY_TEST_MAX)`. Each connection sends one byte; the
/// server answers with its pid and closes. `SIGHUP` hands over.
#[test]
#[ignore = "the server process that the other tests start"]
fn bind_many_child() {
    let Ok(stack) = std::env::var("BIND_MANY_TEST_STACK") else {
        return;
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addrs = parse_list(&std::env::var("BIND_MANY_TEST_ADDRS").unwrap());
    let max: usize = std::env::var("BIND_MANY_TEST_MAX")
        .unwrap()
        .parse()
        .unwrap();
    let handover = Handover::new().ready_timeout(GENEROUS);
    match stack.as_str() {
        "futures" => serve_futures(&handover, addrs, max),
        "tokio1" => serve_tokio1(&handover, addrs, max),
        other => panic!("unknown stack {}", other),
    }
}

fn serve_futures(handover: &Handover, addrs: Vec<SocketAddr>, max: usize) {
    let mut core = tokio_core::reactor::Core::new().unwrap();
    let handle = core.handle();
    let (reload, lists) = futures::sync::mpsc::unbounded();
    reload.unbounded_send(addrs).unwrap();
    read_lists(move |list| reload.unbounded_send(list).is_ok());
    let mut listeners = tk_listen::BindMany::new(lists, &handle);
    listeners.handover(handover);
    let pid = std::process::id();
    let server = listeners
        .sleep_on_error(Duration::from_millis(10), &handle)
        .map(move |(socket, _peer)| {
            tokio_io::io::read_exact(socket, [0; 1])
                .and_then(move |(socket, _)| {
                    tokio_io::io::write_all(socket, format!("{}\n", pid).into_bytes())
                })
                .then(|_| Ok(()))
        })
        .listen(max)
        .with_graceful_shutdown(handover.shutdown_signal());
    handover.ready();
    core.run(server).unwrap();
}

fn serve_tokio1(handover: &Handover, addrs: Vec<SocketAddr>, max: usize) {
    use tk_listen::tokio1::ListenExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (reload, lists) = tokio::sync::watch::channel(addrs);
    read_lists(move |list| reload.send(list).is_ok());
    let pid = std::process::id();
    runtime.block_on(async {
        let lists = tokio_stream::wrappers::WatchStream::new(lists);
        let mut listeners = tk_listen::tokio1::BindMany::new(lists);
        listeners.handover(handover);
        let server = listeners
            .sleep_on_error(Duration::from_millis(10))
            .map(move |(mut socket, _peer)| async move {
                let mut byte = [0; 1];
                socket.read_exact(&mut byte).await?;
                socket.write_all(format!("{}\n", pid).as_bytes()).await
            })
            .listen(max)
            .with_graceful_shutdown(handover.shutdown_signal());
        handover.ready();
        server.await;
    });
}

/// Reads address lists from the standard input on a thread, one a line,
/// and gives each to `send`; at the end of the input the thread keeps the
/// sender (the address stream doesn't end).
fn read_lists(mut send: impl FnMut(Vec<SocketAddr>) -> bool + Send + 'static) {
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if !send(parse_list(&line)) {
                return;
            }
        }
        loop {
            thread::park();
        }
    });
}

fn parse_list(list: &str) -> Vec<SocketAddr> {
    list.split(',')
        .filter(|a| !a.is_empty())
        .map(|a| a.trim().parse().unwrap())
        .collect()
}

#[test]
fn a_futures_bind_many_serves_on_the_socket_systemd_gave_and_a_reload_closes_it() {
    serves_on_the_socket_systemd_gave_and_a_reload_closes_it("futures");
}

#[test]
fn a_tokio1_bind_many_serves_on_the_socket_systemd_gave_and_a_reload_closes_it() {
    serves_on_the_socket_systemd_gave_and_a_reload_closes_it("tokio1");
}

/// `systemd-socket-activate` listens on `one` and starts the server at the
/// first client, which waits in the socket's backlog meanwhile: only the
/// inherited socket has it (a new socket could not even be bound while the
/// inherited one is open). The server's list is `one`; then a reload to
/// `two` closes `one` for good.
fn serves_on_the_socket_systemd_gave_and_a_reload_closes_it(stack: &str) {
    let [one, two] = support::free_addrs::<2>();
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &one.to_string()])
        .arg("-E")
        .arg(format!("BIND_MANY_TEST_STACK={}", stack))
        .arg("-E")
        .arg(format!("BIND_MANY_TEST_ADDRS={}", one))
        .args(["-E", "BIND_MANY_TEST_MAX=10", "-E", "RUST_LOG=info"])
        .arg(std::env::current_exe().unwrap())
        .args(child_args());
    let mut server = ChildServer::spawn(command);
    let mut first = connect_when_listening(one);
    first.write_all(b"x").unwrap();
    assert_eq!(
        reply_pid(first),
        Ok(server.pid()),
        "the client queued before the server started"
    );
    assert_eq!(get(one), Ok(server.pid()), "a client after it");

    server.reload(&[two]);
    let deadline = Instant::now() + GENEROUS;
    let served = loop {
        match get(two) {
            Ok(pid) => break pid,
            Err(e) => assert!(Instant::now() < deadline, "{} not served: {}", two, e),
        }
        thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(served, server.pid());
    // The reload closed `one` before it bound `two`: no copy of the
    // socket is left anywhere (systemd-socket-activate gave its own away).
    support::assert_refused(one);
}

/// A server whose `BindMany` has two addresses, full (`listen(1)`, its slot
/// held), with a client queued in each backlog, hands over: the successor
/// serves both queued clients and both addresses, none is reset; the held
/// client is finished by the old process, which exits 0.
#[test]
fn a_handover_gives_the_successor_both_sockets_of_a_bind_many_with_their_backlogs() {
    let [one, two] = support::free_addrs::<2>();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(child_args())
        .env("BIND_MANY_TEST_STACK", "futures")
        .env("BIND_MANY_TEST_ADDRS", format!("{},{}", one, two))
        .env("BIND_MANY_TEST_MAX", "1")
        .env("RUST_LOG", "info");
    let mut old = ChildServer::spawn(command);
    let held = connect_when_listening(one);
    wait_for(|| accept_queue(one) == Some(0), "the held client accepted");
    wait_for(
        || accept_queue(two) == Some(0),
        "the second address listens",
    );
    let queued: Vec<(SocketAddr, TcpStream)> = [one, two]
        .into_iter()
        .map(|addr| {
            let mut client = support::connect(addr);
            client.write_all(b"x").unwrap();
            (addr, client)
        })
        .collect();
    wait_for(
        || accept_queue(one) == Some(1) && accept_queue(two) == Some(1),
        "a client queued on each address",
    );

    signal("HUP", old.pid());
    let mut successor = None;
    for (addr, client) in queued {
        let pid = reply_pid(client).unwrap_or_else(|e| panic!("queued on {}: {}", addr, e));
        assert_ne!(
            pid,
            old.pid(),
            "queued on {}: served by the old process",
            addr
        );
        assert!(successor.is_none() || successor == Some(pid));
        successor = Some(pid);
    }
    let successor = successor.unwrap();
    let _successor = KillOnDrop(successor);
    for addr in [one, two] {
        assert_eq!(get(addr), Ok(successor), "{} after the handover", addr);
    }
    let mut held = held;
    held.write_all(b"x").unwrap();
    assert_eq!(reply_pid(held), Ok(old.pid()), "the held client");
    assert!(
        old.exits_successfully(),
        "the old process drains and exits 0"
    );
}

#[test]
fn the_handovers_own_bind_listens_with_a_backlog_of_1024_and_so_reuseaddr() {
    allow_descriptors(4096);
    let handover = Handover::new();
    let listener = handover.listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(socket2::SockRef::from(&listener).reuse_address().unwrap());
    assert_eq!(completed_handshakes(addr, 1100), expected_handshakes(1024));
}

/// Addresses a tokio 1 `BindMany` binds through a handover (not
/// inherited) get the backlog it is given.
#[test]
fn a_tokio1_bind_many_with_a_handover_binds_with_its_backlog() {
    use tokio_stream::StreamExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let addresses = tokio_stream::iter(vec![vec!["127.0.0.1:0".parse().unwrap()]])
            .chain(tokio_stream::pending());
        let mut listeners = tk_listen::tokio1::BindMany::new(addresses);
        listeners.backlog(3).handover(&Handover::new());
        // Poll until the address task bound the address; nothing connects
        // before, so nothing is accepted.
        let addr = tokio::time::timeout(GENEROUS, async {
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

// ---- helpers ----

fn child_args() -> [&'static str; 4] {
    ["bind_many_child", "--exact", "--ignored", "--nocapture"]
}

/// The server process (in a process group of its own, with its
/// successors), its standard input for address lists; killed with its group
/// and reaped on drop.
struct ChildServer {
    child: Child,
}

impl ChildServer {
    fn spawn(mut command: Command) -> ChildServer {
        let child = command
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the server (systemd-socket-activate: install systemd, as .ci/run does)");
        ChildServer { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn reload(&mut self, list: &[SocketAddr]) {
        let line: Vec<String> = list.iter().map(ToString::to_string).collect();
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", line.join(",")).unwrap();
        stdin.flush().unwrap();
    }

    fn exits_successfully(&mut self) -> bool {
        let deadline = Instant::now() + GENEROUS;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A successor (not our child), killed on drop; its new parent reaps it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal("KILL", self.0);
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{}", name))
        .arg(pid.to_string())
        .status();
}

fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + GENEROUS;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {}", what);
        thread::sleep(Duration::from_millis(5));
    }
}

/// A client of `addr`, once something listens there (bounded).
fn connect_when_listening(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + GENEROUS;
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream.set_read_timeout(Some(GENEROUS)).unwrap();
                return stream;
            }
            Err(e) => assert!(Instant::now() < deadline, "connect {}: {}", addr, e),
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The pid the server answered with, or what went wrong (a reset, no answer).
fn reply_pid(mut stream: TcpStream) -> Result<u32, String> {
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("read: {}", e))?;
    reply
        .trim()
        .parse()
        .map_err(|_| format!("answer {:?}", reply))
}

/// One connection; the pid of the process that answered.
fn get(addr: SocketAddr) -> Result<u32, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {}", e))?;
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    stream
        .write_all(b"x")
        .map_err(|e| format!("write: {}", e))?;
    reply_pid(stream)
}
