//! A logger that keeps what this crate logs, so that a test can check what
//! was logged at which level, or wait until a line appears. One per test
//! binary: a binary that uses it can't also use `init_logging`.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::sync::{Condvar, Mutex, MutexGuard, Once};

use log::{Level, Log, Metadata, Record};

use super::GENEROUS;

struct Capture {
    lines: Mutex<Vec<(Level, String)>>,
    added: Condvar,
}

static CAPTURE: Capture = Capture {
    lines: Mutex::new(Vec::new()),
    added: Condvar::new(),
};

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("tk_listen")
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            lock().push((record.level(), line));
            self.added.notify_all();
        }
    }

    fn flush(&self) {}
}

/// Starts keeping this crate's log lines, all levels.
pub fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The lines kept so far, with their levels.
pub fn lines() -> Vec<(Level, String)> {
    lock().clone()
}

/// Waits (at most [`GENEROUS`]) until a line that starts with `start` was
/// logged.
pub fn wait_logged(start: &str) {
    let (_lines, waited) = CAPTURE
        .added
        .wait_timeout_while(lock(), GENEROUS, |lines| {
            !lines.iter().any(|(_, line)| line.starts_with(start))
        })
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(!waited.timed_out(), "never logged: {}", start);
}

/// How many lines were kept so far: a mark for [`wait_logged_since`].
pub fn mark() -> usize {
    lock().len()
}

/// Waits (at most [`GENEROUS`]) until a line that starts with `start` was
/// logged after `mark`: unlike [`wait_logged`], not fooled by an earlier line
/// about a port that another test used before.
pub fn wait_logged_since(mark: usize, start: &str) {
    let (_lines, waited) = CAPTURE
        .added
        .wait_timeout_while(lock(), GENEROUS, |lines| {
            !lines[mark..]
                .iter()
                .any(|(_, line)| line.starts_with(start))
        })
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(!waited.timed_out(), "never logged: {}", start);
}

/// Waits until `addr` was bound by a `BindMany`: its `listening on` line
/// was logged after `mark` (the space after the address keeps port 4000
/// from matching 40001).
pub fn wait_listening(mark: usize, addr: std::net::SocketAddr) {
    wait_logged_since(mark, &format!("listening on {} ", addr));
}

/// A test that failed while holding the lock leaves the lines whole.
fn lock() -> MutexGuard<'static, Vec<(Level, String)>> {
    CAPTURE
        .lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
