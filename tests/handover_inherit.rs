//! `Inherited::from_env`: the sockets systemd passes (the real
//! `systemd-socket-activate`), by name and by address; `LISTEN_PID` and a
//! predecessor's variables meant for another process ignored; the variables
//! removed; the sockets non-blocking and close-on-exec. Each case runs this
//! test binary again as a child (`inherit_child`), which reports what it
//! inherited on its standard output.
#![cfg(target_os = "linux")]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use command_fds::{CommandFdExt, FdMapping};
use tk_listen::Inherited;

/// The variables that `Inherited::from_env` must remove.
const VARIABLES: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "TK_LISTEN_HANDOVER_PID",
    "TK_LISTEN_HANDOVER_FDS",
    "TK_LISTEN_HANDOVER_FDNAMES",
];

/// The child: takes the inherited sockets and prints one `report:` line per
/// fact. With `INHERIT_TEST_ADDR`, takes the socket for that address
/// (the second), then the one named `one`.
#[test]
#[ignore = "the child process that the other tests start"]
fn inherit_child() {
    if std::env::var_os("INHERIT_TEST").is_none() {
        return;
    }
    if let Ok(addr) = std::env::var("INHERIT_TEST_READY") {
        // A server that uses the first socket only: `ready` closes the other.
        let handover = tk_listen::Handover::new();
        let _listener = handover.listener(addr.parse().unwrap()).unwrap();
        let open = |fd: i32| std::path::Path::new(&format!("/proc/self/fd/{}", fd)).exists();
        println!("report: before ready {} {}", open(3), open(4));
        handover.ready();
        println!("report: after ready {} {}", open(3), open(4));
        return;
    }
    let mut inherited = Inherited::from_env();
    println!("report: origin {:?}", inherited.origin());
    println!("report: count {}", inherited.len());
    for name in VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            println!("report: variable {}={:?}", name, value);
        }
    }
    println!("report: fd 3 flags {}", fd_flags(3));
    let Ok(addr) = std::env::var("INHERIT_TEST_ADDR") else {
        return;
    };
    println!(
        "report: named absent {:?}",
        inherited.take_named("absent").is_some()
    );
    // The second socket by address, then the first by name.
    let two = inherited
        .take_addr(&addr.parse().unwrap())
        .expect("a socket for the address");
    let one = inherited.take_named("one").expect("a socket named one");
    for (what, listener) in [("named one", &one), ("for the address", &two)] {
        let flags = fd_flags(listener.as_raw_fd());
        println!(
            "report: {} {} nonblocking {} cloexec {}",
            what,
            listener.local_addr().unwrap(),
            flags & 0o4000 != 0,
            flags & 0o2000000 != 0
        );
    }
    // Non-blocking, seen from the outside: nobody connected to the second.
    let accepted = two.accept().map(|_| ()).map_err(|e| e.kind());
    println!("report: accept {:?}", accepted);
    println!("report: left {}", inherited.len());
}

#[test]
fn systemd_sockets_are_taken_by_name_and_by_address() {
    let [one, two] = support::free_addrs::<2>();
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &one.to_string(), "-l", &two.to_string()])
        .arg("--fdname=one:two")
        .args(["-E", "INHERIT_TEST=1", "-E"])
        .arg(format!("INHERIT_TEST_ADDR={}", two))
        .arg(std::env::current_exe().unwrap())
        .args(child_args());
    let child = spawn(command);
    // systemd-socket-activate runs the child on the first connection.
    let _client = connect_when_listening(one);
    let report = report(child);
    assert!(
        report.contains(&"origin Systemd".to_string()),
        "{:?}",
        report
    );
    assert!(report.contains(&"count 2".to_string()), "{:?}", report);
    assert!(
        report.contains(&format!("named one {} nonblocking true cloexec true", one)),
        "{:?}",
        report
    );
    assert!(
        report.contains(&format!(
            "for the address {} nonblocking true cloexec true",
            two
        )),
        "{:?}",
        report
    );
    assert!(
        report.contains(&"accept Err(WouldBlock)".to_string()),
        "{:?}",
        report
    );
    assert!(report.contains(&"left 0".to_string()), "{:?}", report);
    assert!(
        report.contains(&"named absent false".to_string()),
        "{:?}",
        report
    );
    assert_no_variables(&report);
}

#[test]
fn inherited_sockets_nobody_takes_are_closed_when_the_server_is_ready() {
    let [one, two] = support::free_addrs::<2>();
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &one.to_string(), "-l", &two.to_string()])
        .arg("-E")
        .arg(format!("INHERIT_TEST_READY={}", one))
        .args(["-E", "INHERIT_TEST=1"])
        .arg(std::env::current_exe().unwrap())
        .args(child_args());
    let child = spawn(command);
    let _client = connect_when_listening(one);
    let report = report(child);
    assert!(
        report.contains(&"before ready true true".to_string()),
        "{:?}",
        report
    );
    assert!(
        report.contains(&"after ready true false".to_string()),
        "{:?}",
        report
    );
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = child_command(&listener);
    command
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "one");
    let report = report(spawn(command));
    assert!(
        report.contains(&"origin Nothing".to_string()),
        "{:?}",
        report
    );
    assert!(report.contains(&"count 0".to_string()), "{:?}", report);
    assert_untouched(&report);
    assert_no_variables(&report);
}

#[test]
fn a_predecessors_variables_meant_for_another_process_are_ignored() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = child_command(&listener);
    command
        .env("TK_LISTEN_HANDOVER_PID", "1")
        .env("TK_LISTEN_HANDOVER_FDS", "1")
        .env("TK_LISTEN_HANDOVER_FDNAMES", "one");
    let report = report(spawn(command));
    assert!(
        report.contains(&"origin Nothing".to_string()),
        "{:?}",
        report
    );
    assert!(report.contains(&"count 0".to_string()), "{:?}", report);
    assert_untouched(&report);
    assert_no_variables(&report);
}

// ---- helpers ----

fn child_args() -> [&'static str; 4] {
    ["inherit_child", "--exact", "--ignored", "--nocapture"]
}

/// The child with a copy of `listener` at descriptor 3 (blocking, as the
/// parent left it).
fn child_command(listener: &TcpListener) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(child_args()).env("INHERIT_TEST", "1");
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: OwnedFd::from(listener.try_clone().unwrap()),
            child_fd: 3,
        }])
        .unwrap();
    command
}

fn spawn(mut command: Command) -> KillOnDrop {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect(
            "cannot start the child (systemd-socket-activate: install systemd, as .ci/run does)",
        );
    KillOnDrop(Some(child))
}

/// The child's `report:` lines, once it exited successfully; a child that
/// takes longer than `GENEROUS` (e.g. blocked in `accept`) is killed and
/// fails the test.
fn report(mut child: KillOnDrop) -> Vec<String> {
    let process = child.0.as_mut().unwrap();
    let mut stdout = process.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let deadline = std::time::Instant::now() + support::GENEROUS;
    let status = loop {
        if let Some(status) = process.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the child hangs");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success(), "the child failed: {}", status);
    reader
        .join()
        .unwrap()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("report: "))
        .map(str::to_string)
        .collect()
}

fn assert_no_variables(report: &[String]) {
    let left: Vec<&String> = report
        .iter()
        .filter(|l| l.starts_with("variable "))
        .collect();
    assert!(left.is_empty(), "variables not removed: {:?}", left);
}

/// Descriptor 3 was left as it came: blocking, not close-on-exec.
fn assert_untouched(report: &[String]) {
    let flags: u32 = report
        .iter()
        .find_map(|l| l.strip_prefix("fd 3 flags "))
        .expect("fd 3's flags")
        .parse()
        .unwrap();
    assert_eq!(flags & 0o4000, 0, "made non-blocking");
    assert_eq!(flags & 0o2000000, 0, "made close-on-exec");
}

/// The `flags` of `/proc/self/fdinfo/FD` (octal), 0 if there is no such
/// descriptor.
fn fd_flags(fd: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        })
        .unwrap_or(0)
}

fn connect_when_listening(addr: SocketAddr) -> std::net::TcpStream {
    let deadline = std::time::Instant::now() + support::GENEROUS;
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "connect {}: {}",
                addr,
                e
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Kills the child if the test ends before it is reaped.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
