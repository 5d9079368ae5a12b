//! CPU time and descriptor limits of processes and threads, for the tests
//! and the benches alike (`benches/support` includes this file). Linux only:
//! CPU times come from `/proc`, limits from the `rlimit` crate (no `unsafe`).
#![allow(dead_code, unreachable_pub)] // each binary uses its own subset

use std::io;
use std::time::Duration;

/// CPU time (user + system) used so far by the calling thread, in
/// nanoseconds of resolution: the first field of
/// `/proc/thread-self/schedstat`.
pub fn thread_cpu() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("read /proc/thread-self/schedstat");
    let nanos = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .expect("bad /proc/thread-self/schedstat");
    Duration::from_nanos(nanos)
}

/// CPU time (user + system, all threads) used so far by process `pid`, from
/// `/proc/<pid>/stat`, in clock ticks (usually 10 ms) of resolution.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let after_name = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc/<pid>/stat"))
    };
    let total = ticks(14)? + ticks(15)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_second(),
    ))
}

/// `getconf CLK_TCK`: the unit of the CPU times in `/proc/<pid>/stat`.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|hz| hz.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
pub fn nofile_limit() -> (u64, u64) {
    rlimit::Resource::NOFILE
        .get()
        .expect("getrlimit(RLIMIT_NOFILE)")
}

/// Sets the soft `RLIMIT_NOFILE` of this process to `soft`, capped at the
/// hard limit; returns the soft limit now in force.
pub fn set_nofile_soft(soft: u64) -> io::Result<u64> {
    let (_, hard) = nofile_limit();
    let soft = soft.min(hard);
    rlimit::Resource::NOFILE.set(soft, hard)?;
    Ok(soft)
}

/// The path of example `name`'s binary, built now with all features (or
/// found up to date: the README's test command builds it already), next to
/// the calling test's binary. Examples need features of their own
/// (`required-features`), which `--all-features` covers.
pub fn built_example(name: &str) -> std::path::PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--all-features", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build --example {} failed", name);
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/*/deps")
        .join("examples")
        .join(name)
}

/// Runs `command` until it exits, with standard input closed and its
/// output read; kills it (and fails the test) if it still runs after
/// `bound`. Returns its status, standard output and standard error (small
/// outputs: they are read once it has exited).
pub fn run_to_exit(
    command: &mut std::process::Command,
    bound: Duration,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{:?} still ran after {:?}", command, bound);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stdout, stderr)
}
