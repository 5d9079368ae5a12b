//! The handover's decisions where a process test can't time the events: a
//! successor that reports ready after a shutdown began, and a shutdown
//! that returns only once the handover it cancelled has ended.

use std::thread;
use std::time::{Duration, Instant};

use super::protocol::{Handover, HandoverError};

/// Waits (bounded) until `stop`, on another thread, cancelled the handover.
fn wait_cancelled(handover: &Handover) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handover.cancelled() {
        assert!(
            Instant::now() < deadline,
            "stop did not cancel the handover"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_successor_ready_after_the_shutdown_began_is_refused_and_the_shutdown_waits_for_the_handover() {
    let handover = Handover::with_inherited(super::Inherited::from_env());
    let _request = handover.begin().expect("no handover runs");
    let stopping = handover.clone();
    let stop = thread::spawn(move || stopping.stop());
    wait_cancelled(&handover);

    assert!(
        !handover.accept(),
        "a successor ready after the stop became the main process"
    );
    assert!(
        !stop.is_finished(),
        "stop returned while the handover still ran"
    );
    // What the handover thread returns once it killed the successor.
    let result = handover.finish(Err(HandoverError::NotReady(Duration::from_secs(10))));
    assert!(matches!(result, Err(HandoverError::Done)), "{:?}", result);
    stop.join().unwrap();
    assert!(matches!(handover.begin(), Err(HandoverError::Done)));
}

#[test]
fn a_successor_ready_before_the_shutdown_stays_and_the_shutdown_does_not_wait() {
    let handover = Handover::with_inherited(super::Inherited::from_env());
    let _request = handover.begin().expect("no handover runs");
    assert!(handover.accept(), "the ready successor is refused");
    handover.stop(); // returns at once: nothing to cancel
    assert!(!handover.cancelled());
    assert!(matches!(handover.begin(), Err(HandoverError::Done)));
}
