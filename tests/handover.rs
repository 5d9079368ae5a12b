//! Handing the listening socket over to a successor process: the backlog of
//! a full server, closed-loop clients through handovers in a row, successors
//! that fail, and systemd (`systemd-socket-activate`) following the
//! successor. The server is `examples/http`'s (`server.rs`, which puts its
//! pid in every answer as `X-Pid`), run in a child process: this test binary
//! again, as its ignored `handover_server_child` test, or the example itself.
#![cfg(target_os = "linux")]

mod support;

#[path = "../examples/http/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::backlog::accept_queue;
use support::GENEROUS;

/// The server of these tests, when this binary runs as a child process with
/// `HANDOVER_TEST_MAX` set: `server::serve_until` with `listen(MAX)`, on
/// the inherited socket for 127.0.0.1 or a new one on port 0, handing over
/// on `SIGHUP` with a ready timeout of `HANDOVER_TEST_READY_MS`.
#[test]
#[ignore = "the server process that the other tests start"]
fn handover_server_child() {
    let Ok(max) = std::env::var("HANDOVER_TEST_MAX") else {
        return;
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let ready_ms: u64 = std::env::var("HANDOVER_TEST_READY_MS")
        .unwrap()
        .parse()
        .unwrap();
    let handover = tk_listen::Handover::new().ready_timeout(Duration::from_millis(ready_ms));
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut core = tokio_core::reactor::Core::new().unwrap();
    let handle = core.handle();
    let listener = handover.listener(addr).unwrap();
    let local = listener.local_addr().unwrap();
    let listener = tokio_core::net::TcpListener::from_listener(listener, &local, &handle).unwrap();
    let config = server::Config {
        max_connections: max.parse().unwrap(),
        deadline: Duration::from_secs(30),
        per_peer: server::MAX_PER_PEER,
    };
    // Signal handlers first: the tests signal as soon as this line is out.
    let server = server::serve_until(listener, None, &handle, config, handover.shutdown_signal());
    println!("listening on {}", local);
    handover.ready();
    core.run(server).unwrap();
}

/// A full server (`listen(2)`, both slots held) with 10 clients in its
/// backlog hands over: the successor serves all 10, none is reset; the held
/// ones finish in the old process, which then exits 0.
#[test]
fn a_full_servers_backlog_is_served_by_the_successor_without_a_reset() {
    let mut old = ChildServer::start(&current_exe(), 2, 10_000);
    // Two clients take both slots: their request never ends.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(old.addr);
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    wait_for(
        || accept_queue(old.addr) == Some(0),
        "the two held clients accepted",
    );
    let waiting: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = connect(old.addr);
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            s
        })
        .collect();
    wait_for(
        || accept_queue(old.addr) == Some(10),
        "10 clients in the backlog",
    );

    old.hup();
    let mut successor = None;
    for client in waiting {
        let pid = reply_pid(client).expect("a client of the backlog");
        assert_ne!(pid, old.pid(), "served by the old process");
        assert!(successor.is_none() || successor == Some(pid));
        successor = Some(pid);
    }
    let _successor = KillOnDrop(successor.unwrap());
    for client in &mut held {
        client.write_all(b"\r\n").unwrap();
    }
    for client in held {
        assert_eq!(reply_pid(client).unwrap(), old.pid(), "a held client");
    }
    assert!(
        old.exits_successfully(),
        "the old process drains and exits 0"
    );
}

/// Closed-loop clients, more than the server's cap, through 5 handovers in a
/// row: no failed connection, and each handover changed the serving process.
#[test]
fn closed_loop_clients_lose_nothing_through_five_handovers() {
    let old = ChildServer::start(&current_exe(), 4, 10_000);
    let clients = Clients::start(old.addr, 8);
    let mut pids = vec![old.pid()];
    let mut guards = Vec::new();
    let mut servers = vec![old];
    for round in 0..5 {
        let current = *pids.last().unwrap();
        signal("HUP", current);
        let next = clients.wait_for_pid_other_than(&pids);
        assert!(next.is_some(), "round {}: no new process serves", round + 1);
        pids.push(next.unwrap());
        guards.push(KillOnDrop(next.unwrap()));
        if round == 0 {
            assert!(servers[0].exits_successfully(), "the first process exits 0");
        }
    }
    let report = clients.stop();
    assert_eq!(report.failures, Vec::<String>::new(), "failed connections");
    assert!(report.served > 0);
    assert_eq!(
        pids.iter().collect::<BTreeSet<_>>().len(),
        6,
        "pids {:?}",
        pids
    );
    servers.clear();
}

/// A successor that exits at once, then one that never reports ready: the
/// old process keeps serving with no failed connection and the hung one is
/// gone after the timeout; then a good successor takes over. The successor
/// is whatever is at the server's path, which the test replaces as a deploy
/// does.
#[test]
fn failed_successors_leave_the_old_process_serving_until_a_good_one_comes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("server");
    std::fs::copy(current_exe(), &exe).unwrap();
    let old = ChildServer::start(&exe, 4, 1000);
    let clients = Clients::start(old.addr, 2);

    deploy(&exe, "#!/bin/sh\nexit 3\n");
    old.hup();
    let line = old.wait_log("handover failed");
    assert!(line.contains("exited before it was ready"), "{}", line);

    let pid_file = dir.path().join("hung.pid");
    deploy(
        &exe,
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    );
    old.hup();
    let line = old.wait_log("handover failed");
    assert!(line.contains("not ready within"), "{}", line);
    let hung: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", hung)).exists(),
        "the hung successor {} still exists",
        hung
    );
    assert!(clients.served_by(old.pid()), "the old process still serves");

    std::fs::remove_file(&exe).unwrap();
    std::fs::copy(current_exe(), &exe).unwrap();
    old.hup();
    let next = clients.wait_for_pid_other_than(&[old.pid()]);
    let _next = KillOnDrop(next.expect("the good successor serves"));
    let report = clients.stop();
    assert_eq!(report.failures, Vec::<String>::new(), "failed connections");
}

/// The real `systemd-socket-activate` starts `examples/http` on a socket
/// named `http`: it serves there, tells `READY=1`, and after `SIGHUP` the
/// successor's `MAINPID` arrives on the notify socket.
#[test]
fn systemd_socket_activation_and_notify_follow_the_successor() {
    let example = support::process::built_example("http");
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(GENEROUS)).unwrap();
    let addr = support::free_addrs::<1>()[0];
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string(), "--fdname=http"])
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .args(["-E", "RUST_LOG=info"])
        .arg(&example)
        .arg(addr.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run systemd-socket-activate; install systemd (.ci/run does)");
    let mut activated = KillChild(child);
    // systemd-socket-activate listens, then runs the server on the first
    // connection, in its own process (`LISTEN_PID` is its pid).
    wait_for(
        || TcpStream::connect(addr).is_ok(),
        "systemd-socket-activate listens",
    );
    let first = get(addr).expect("the first answer");
    assert_eq!(first, activated.0.id(), "served by the activated process");
    assert_eq!(next_notification(&notify), "READY=1");

    signal("HUP", first);
    let mut main_pid = None;
    for _ in 0..4 {
        let message = next_notification(&notify);
        if let Some(pid) = message.strip_prefix("MAINPID=") {
            main_pid = Some(pid.parse::<u32>().unwrap());
            break;
        }
        assert_eq!(message, "READY=1", "the successor says it is ready");
    }
    let main_pid = main_pid.expect("MAINPID= after the handover");
    let _successor = KillOnDrop(main_pid);
    assert_ne!(main_pid, first);
    let status = wait_child(&mut activated.0).expect("the old process exits");
    assert!(status.success(), "{}", status);
    assert_eq!(get(addr).unwrap(), main_pid, "served by the new MAINPID");
}

/// `examples/tokio1` hands over on `SIGHUP`: a connection running then is
/// finished by the old process, which exits 0; the next one is served by the
/// successor.
#[test]
fn the_tokio1_example_hands_over_on_sighup() {
    let example = support::process::built_example("tokio1");
    let mut child = Command::new(&example)
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "info")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = log_lines(child.stderr.take().unwrap());
    let mut old = KillChild(child);
    let line = wait_line(&log, "listening on ");
    let addr: SocketAddr = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let running = connect(addr);
    signal("HUP", old.0.id());
    let line = wait_line(&log, "handed over to process ");
    let successor: u32 = line
        .split("handed over to process ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _successor = KillOnDrop(successor);
    assert_eq!(support::read_reply(running).unwrap(), b"hello\n");
    let status = wait_child(&mut old.0).expect("the old process exits");
    assert!(status.success(), "{}", status);
    assert_eq!(
        support::fetch(addr).unwrap(),
        b"hello\n",
        "the successor serves"
    );
}

/// `examples/http` on `SIGTERM`: stops accepting, finishes the running
/// connection, exits 0.
#[test]
fn the_http_example_drains_and_exits_zero_on_sigterm() {
    let example = support::process::built_example("http");
    let addr = support::free_addrs::<1>()[0];
    let child = Command::new(&example)
        .arg(addr.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = KillChild(child);
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "{:?}", line);
    let mut running = connect(addr);
    running.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    wait_for(|| accept_queue(addr) == Some(0), "the client accepted");
    signal("TERM", server.0.id());
    // While the held connection drains, the listening socket is closed
    // (no copy of it kept for a successor): new clients are refused.
    wait_for(
        || TcpStream::connect(addr).is_err(),
        "new clients refused during the drain",
    );
    running.write_all(b"\r\n").unwrap();
    assert_eq!(reply_pid(running).unwrap(), server.0.id());
    let status = wait_child(&mut server.0).expect("the server exits");
    assert!(status.success(), "{}", status);
    support::assert_refused(addr);
}

/// A `SIGTERM` while a handover runs (its successor started, not ready
/// yet) cancels it: the successor is killed and reaped, and the old process
/// drains and exits 0 long before the ready timeout (a minute) would have
/// ended the handover.
#[test]
fn a_sigterm_during_a_handover_kills_the_successor_before_the_server_exits() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("server");
    std::fs::copy(current_exe(), &exe).unwrap();
    let mut old = ChildServer::start(&exe, 4, 60_000);
    let pid_file = dir.path().join("successor.pid");
    // The pid is written whole (renamed into place), then the successor
    // hangs without reporting ready.
    deploy(
        &exe,
        &format!(
            "#!/bin/sh\necho $$ > {0}.new\nmv {0}.new {0}\nexec sleep 60\n",
            pid_file.display()
        ),
    );
    old.hup();
    wait_for(|| pid_file.exists(), "the successor started");
    let successor: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    signal("TERM", old.pid());
    assert!(old.exits_successfully(), "the old process exits 0");
    assert!(
        !Path::new(&format!("/proc/{}", successor)).exists(),
        "the successor {} of the cancelled handover still exists",
        successor
    );
    old.wait_log("handover cancelled by the shutdown");
}

/// While a handover runs, another request resolves at once to `Busy`
/// (futures 0.1); the first one ends with `NotReady` after its timeout, its
/// successor killed and reaped.
#[test]
fn a_handover_requested_during_another_is_refused() {
    let handover = tk_listen::Handover::new()
        .program("/bin/sh")
        .args(["-c", "exec sleep 60"])
        .ready_timeout(Duration::from_millis(500));
    let first = handover.start();
    match wait01(handover.start()) {
        Err(tk_listen::HandoverError::Busy) => {}
        other => panic!("the second request: {:?}", other),
    }
    match wait01(first) {
        Err(tk_listen::HandoverError::NotReady(t)) => assert_eq!(t, Duration::from_millis(500)),
        other => panic!("the first request: {:?}", other),
    }
    // Not busy any more: a successor that exits at once is seen to exit.
    let exits = handover.clone().program("/bin/false").start();
    match wait01(exits) {
        Err(tk_listen::HandoverError::Exited(status)) => assert_eq!(status.code(), Some(1)),
        other => panic!("the third request: {:?}", other),
    }
}

/// A successor that closes its readiness socket (descriptor 3: this
/// handover passes no listening socket) and runs on is not ready: it is
/// killed after the timeout, and the handover is not busy afterwards.
#[test]
fn a_successor_that_drops_its_readiness_socket_and_runs_on_is_killed_after_the_timeout() {
    let handover = tk_listen::Handover::new()
        .program("/bin/sh")
        .args(["-c", "exec 3>&-; exec sleep 60"])
        .ready_timeout(Duration::from_millis(500));
    let started = Instant::now();
    match wait01(handover.start()) {
        Err(tk_listen::HandoverError::NotReady(t)) => assert_eq!(t, Duration::from_millis(500)),
        other => panic!("the request: {:?}", other),
    }
    assert!(
        started.elapsed() < GENEROUS,
        "the timeout held it for {:?}",
        started.elapsed()
    );
    match wait01(handover.clone().program("/bin/false").start()) {
        Err(tk_listen::HandoverError::Exited(status)) => assert_eq!(status.code(), Some(1)),
        other => panic!("the next request: {:?}", other),
    }
}

/// The same future on tokio 1, woken when the successor exits (it exits
/// after a moment, so that the task waits for it).
#[test]
fn the_handover_future_resolves_on_tokio_1() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let handover = tk_listen::Handover::new()
        .program("/bin/sh")
        .args(["-c", "sleep 0.3; exit 4"]);
    // The timer is polled first, so a future that is ready only because
    // the timer woke the task still fails.
    let result = runtime.block_on(async {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(GENEROUS) => panic!("the future did not wake its task"),
            result = handover.start() => result,
        }
    });
    match result {
        Err(tk_listen::HandoverError::Exited(status)) => assert_eq!(status.code(), Some(4)),
        other => panic!("{:?}", other),
    }
}

// ---- helpers ----

/// Waits for a futures 0.1 future on a thread of its own, at most
/// `GENEROUS`.
fn wait01<F>(future: F) -> Result<F::Item, F::Error>
where
    F: futures::Future + Send + 'static,
    F::Item: Send,
    F::Error: Send,
{
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(future.wait());
    });
    rx.recv_timeout(GENEROUS).expect("the future resolves")
}

/// This test binary, the server of most tests here.
fn current_exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// The server process of a test, killed and reaped on drop.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    log: Mutex<mpsc::Receiver<String>>,
}

impl ChildServer {
    /// Runs `exe` as `handover_server_child` with `listen(max)` and the
    /// ready timeout `ready_ms`, and waits until it listens.
    fn start(exe: &Path, max: usize, ready_ms: u64) -> ChildServer {
        let mut child = Command::new(exe)
            .args([
                "handover_server_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("HANDOVER_TEST_MAX", max.to_string())
            .env("HANDOVER_TEST_READY_MS", ready_ms.to_string())
            .env("RUST_LOG", "info")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "child ended early");
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                break addr.parse().unwrap();
            }
        };
        // Successors write to the same pipes: keep reading them.
        thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let log = log_lines(child.stderr.take().unwrap());
        ChildServer {
            child,
            addr,
            log: Mutex::new(log),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn hup(&self) {
        signal("HUP", self.pid());
    }

    /// The next line of the log (of this process or its successors) that
    /// contains `text`.
    fn wait_log(&self, text: &str) -> String {
        wait_line(&self.log.lock().unwrap(), text)
    }

    fn exits_successfully(&mut self) -> bool {
        wait_child(&mut self.child).is_some_and(|s| s.success())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A child process (in a process group of its own), killed with its
/// group (the successors) and reaped on drop.
struct KillChild(Child);

impl Drop for KillChild {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// Kills `child`'s process group, which holds its successors too (even
/// those a failed test could not name), and reaps `child`.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}

/// A process that isn't our child (a successor), killed on drop; its new
/// parent reaps it.
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

/// Waits (bounded) for `child` to exit.
fn wait_child(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + GENEROUS;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + GENEROUS;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {}", what);
        thread::sleep(Duration::from_millis(5));
    }
}

fn log_lines(stderr: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(log: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + GENEROUS;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {:?}: {}", text, e),
        }
    }
}

/// Replaces the file at `exe` by a script, the way a deploy replaces a
/// binary (a new file renamed over the old path).
fn deploy(exe: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let new = exe.with_extension("new");
    std::fs::write(&new, script).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, exe).unwrap();
}

fn connect(addr: SocketAddr) -> TcpStream {
    support::connect(addr)
}

/// The pid in the `X-Pid` header of a `200 OK` answer, or what went wrong.
fn reply_pid(mut stream: TcpStream) -> Result<u32, String> {
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("read: {}", e))?;
    let reply = String::from_utf8_lossy(&reply);
    if !reply.starts_with("HTTP/1.1 200 OK\r\n") {
        return Err(format!("answer: {:?}", reply));
    }
    reply
        .lines()
        .find_map(|l| l.strip_prefix("X-Pid: "))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| format!("no X-Pid in {:?}", reply))
}

/// One request; the pid of the process that answered.
fn get(addr: SocketAddr) -> Result<u32, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {}", e))?;
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("write: {}", e))?;
    reply_pid(stream)
}

/// The next message on the notify socket, without its trailing newline.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
}

/// Closed-loop clients: each thread sends a request, reads the answer, and
/// again, until stopped (bounded in count and time).
struct Clients {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    pids: Arc<Mutex<Vec<u32>>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

struct Report {
    served: usize,
    failures: Vec<String>,
}

impl Clients {
    fn start(addr: SocketAddr, count: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let pids = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + 6 * GENEROUS;
        let threads = (0..count)
            .map(|_| {
                let (stop, served, pids, failures) =
                    (stop.clone(), served.clone(), pids.clone(), failures.clone());
                thread::spawn(move || {
                    for _ in 0..1_000_000 {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            break;
                        }
                        match get(addr) {
                            Ok(pid) => {
                                served.fetch_add(1, Ordering::SeqCst);
                                let mut pids = pids.lock().unwrap();
                                if pids.last() != Some(&pid) {
                                    pids.push(pid);
                                }
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Clients {
            stop,
            served,
            pids,
            failures,
            threads,
        }
    }

    /// Waits for an answer from a process not in `known`.
    fn wait_for_pid_other_than(&self, known: &[u32]) -> Option<u32> {
        let deadline = Instant::now() + GENEROUS;
        while Instant::now() < deadline {
            let pids = self.pids.lock().unwrap();
            if let Some(pid) = pids.iter().find(|p| !known.contains(p)) {
                return Some(*pid);
            }
            drop(pids);
            thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Whether `pid` answers (an answer after this call).
    fn served_by(&self, pid: u32) -> bool {
        let before = self.served.load(Ordering::SeqCst);
        let deadline = Instant::now() + GENEROUS;
        while Instant::now() < deadline {
            if self.served.load(Ordering::SeqCst) > before + 2 {
                return self.pids.lock().unwrap().last() == Some(&pid);
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
        Report {
            served: self.served.load(Ordering::SeqCst),
            failures: self.failures.lock().unwrap().clone(),
        }
    }
}
