//! `AcceptQueue` is read while the process has no descriptor left (when an
//! `EMFILE` pause leaves clients in the queue). Its own test binary: it
//! fills the descriptor table of the process.

#![cfg(target_os = "linux")]

mod support;

use std::fs::File;
use std::io;

use rlimit::Resource;
use tk_listen::AcceptQueue;

use support::connect;
use support::queue::listener_with_backlog;

#[test]
fn the_queue_is_read_while_the_process_is_out_of_descriptors() {
    let listener = listener_with_backlog(16);
    let queue = AcceptQueue::of(&listener).unwrap();
    let _client = connect(listener.local_addr().unwrap());

    // At most 64 more descriptors, then open them all.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (soft, hard) = Resource::NOFILE.get().unwrap();
    Resource::NOFILE.set(open + 64, hard).unwrap();
    let mut hog = Vec::new();
    let exhausted = loop {
        match File::open("/dev/null") {
            Ok(file) => hog.push(file),
            Err(e) => break e,
        }
        assert!(hog.len() < 1000, "the descriptor limit did not apply");
    };
    assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE));

    let reading = queue.read();
    drop(hog);
    Resource::NOFILE.set(soft, hard).unwrap();
    let length = reading.unwrap_or_else(|e: io::Error| panic!("no reading at EMFILE: {}", e));
    assert_eq!((length.waiting, length.limit), (1, 16));
}
