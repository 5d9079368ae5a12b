//! The address set's decisions with stand-in listeners and no runtime.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{AddressSet, Yield};
use crate::limits::POLL_BUDGET;

/// What happened, in order: `bind A`, `close A`.
type Journal = Rc<RefCell<Vec<String>>>;

/// A stand-in listener that writes its closing into the journal.
struct Probe {
    addr: SocketAddr,
    journal: Journal,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.journal
            .borrow_mut()
            .push(format!("close {}", self.addr));
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A bind function that journals each call and fails for the ports in
/// `busy`; port 0 becomes port 40000.
fn binder<'a>(
    journal: &'a Journal,
    busy: &'static [u16],
) -> impl FnMut(SocketAddr) -> io::Result<(Probe, SocketAddr)> + 'a {
    move |requested| {
        journal.borrow_mut().push(format!("bind {}", requested));
        if busy.contains(&requested.port()) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        let mut local = requested;
        if local.port() == 0 {
            local.set_port(40000);
        }
        let probe = Probe {
            addr: requested,
            journal: journal.clone(),
        };
        Ok((probe, local))
    }
}

fn take(journal: &Journal) -> Vec<String> {
    journal.borrow_mut().drain(..).collect()
}

#[test]
fn duplicates_are_bound_once_in_the_order_of_their_first_occurrence() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    set.replace(
        vec![addr(2), addr(1), addr(2), addr(0)],
        Instant::now(),
        binder(&journal, &[]),
    );
    assert_eq!(
        take(&journal),
        ["bind 127.0.0.1:2", "bind 127.0.0.1:1", "bind 127.0.0.1:0"]
    );
    assert_eq!(set.local_addrs(), [addr(2), addr(1), addr(40000)]);
}

#[test]
fn a_reload_keeps_what_stays_and_closes_what_leaves_before_binding_what_comes() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    let now = Instant::now();
    set.replace(vec![addr(1), addr(2)], now, binder(&journal, &[]));
    take(&journal);
    set.replace(vec![addr(3), addr(2)], now, binder(&journal, &[]));
    // 2 is neither closed nor bound again; 1 is closed before 3 is bound.
    assert_eq!(take(&journal), ["close 127.0.0.1:1", "bind 127.0.0.1:3"]);
    assert_eq!(set.local_addrs(), [addr(3), addr(2)]);
    set.clear();
    let mut closed = take(&journal);
    closed.sort();
    assert_eq!(closed, ["close 127.0.0.1:2", "close 127.0.0.1:3"]);
    assert!(set.local_addrs().is_empty());
}

#[test]
fn a_failed_bind_is_retried_once_per_interval_and_not_before() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    set.set_retry_interval(Duration::from_secs(2));
    let start = Instant::now();
    set.replace(vec![addr(1), addr(7)], start, binder(&journal, &[7]));
    take(&journal);
    assert_eq!(set.local_addrs(), [addr(1)]);
    assert_eq!(set.next_retry(), Some(start + Duration::from_secs(2)));

    let early = start + Duration::from_millis(1999);
    assert!(!set.retry_due(early, binder(&journal, &[7])));
    assert!(take(&journal).is_empty());

    let due = start + Duration::from_secs(2);
    assert!(!set.retry_due(due, binder(&journal, &[7])));
    assert_eq!(take(&journal), ["bind 127.0.0.1:7"]); // only the failed one
    assert_eq!(set.next_retry(), Some(due + Duration::from_secs(2)));

    let later = due + Duration::from_secs(2);
    assert!(set.retry_due(later, binder(&journal, &[])));
    assert_eq!(set.local_addrs(), [addr(1), addr(7)]);
    assert_eq!(set.next_retry(), None);
}

#[test]
fn a_new_interval_applies_to_the_retries_scheduled_after_it() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    let start = Instant::now();
    set.replace(vec![addr(7)], start, binder(&journal, &[7]));
    set.set_retry_interval(Duration::from_millis(10));
    assert_eq!(set.next_retry(), Some(start + Duration::from_secs(1)));
    set.replace(vec![addr(7), addr(8)], start, binder(&journal, &[7, 8]));
    assert_eq!(set.next_retry(), Some(start + Duration::from_millis(10)));
}

#[test]
fn a_zero_interval_retries_once_per_call() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    set.set_retry_interval(Duration::ZERO);
    let now = Instant::now();
    set.replace(vec![addr(7)], now, binder(&journal, &[7]));
    take(&journal);
    assert!(!set.retry_due(now, binder(&journal, &[7])));
    assert_eq!(take(&journal), ["bind 127.0.0.1:7"]);
    assert_eq!(set.next_retry(), Some(now));
}

#[test]
fn an_interval_longer_than_a_year_is_cut_to_a_year() {
    let mut set = AddressSet::<Probe>::new();
    set.set_retry_interval(Duration::MAX);
    assert_eq!(set.retry_interval(), crate::limits::LONGEST_DELAY);
}

#[test]
fn a_removed_address_that_waits_for_a_retry_is_not_retried() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    let now = Instant::now();
    set.replace(vec![addr(7)], now, binder(&journal, &[7]));
    set.replace(vec![addr(1)], now, binder(&journal, &[]));
    take(&journal);
    assert_eq!(set.next_retry(), None);
    assert!(!set.retry_due(now + Duration::from_secs(5), binder(&journal, &[])));
    assert!(take(&journal).is_empty());
}

/// Which listeners answer: each call returns the port of the first ready
/// listener it asks, and journals every listener it asked.
fn accept_from(set: &mut AddressSet<Probe>, ready: &[u16], asked: &mut Vec<u16>) -> Option<u16> {
    set.next_ready(|probe| {
        asked.push(probe.addr.port());
        ready
            .contains(&probe.addr.port())
            .then_some(probe.addr.port())
    })
    .expect("within the budget")
}

#[test]
fn each_search_starts_after_the_listener_that_answered_last() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    let now = Instant::now();
    set.replace(vec![addr(1), addr(2), addr(3)], now, binder(&journal, &[]));
    let mut asked = Vec::new();
    let all = [1, 2, 3];
    let got: Vec<_> = (0..4)
        .map(|_| accept_from(&mut set, &all, &mut asked).unwrap())
        .collect();
    assert_eq!(got, [1, 2, 3, 1]);
    asked.clear();
    // Only 3 is ready: asked 2, then 3; the next search starts at 1.
    assert_eq!(accept_from(&mut set, &[3], &mut asked), Some(3));
    assert_eq!(asked, [2, 3]);
    asked.clear();
    assert_eq!(accept_from(&mut set, &[], &mut asked), None);
    assert_eq!(asked, [1, 2, 3]);
}

#[test]
fn listeners_waiting_for_a_retry_are_skipped_and_a_shrunk_set_wraps_around() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    let now = Instant::now();
    set.replace(vec![addr(1), addr(7), addr(3)], now, binder(&journal, &[7]));
    let mut asked = Vec::new();
    assert_eq!(accept_from(&mut set, &[1, 3], &mut asked), Some(1));
    assert_eq!(accept_from(&mut set, &[1, 3], &mut asked), Some(3));
    assert_eq!(asked, [1, 3]);
    // The next search would start at index 0; after a shrink to one entry it
    // still finds it.
    set.replace(vec![addr(3)], now, binder(&journal, &[]));
    assert_eq!(accept_from(&mut set, &[3], &mut asked), Some(3));
    assert_eq!(accept_from(&mut set, &[3], &mut asked), Some(3));
}

#[test]
fn after_a_budget_of_answers_in_a_row_the_accept_side_yields_once() {
    let journal = Journal::default();
    let mut set = AddressSet::new();
    set.replace(vec![addr(1)], Instant::now(), binder(&journal, &[]));
    for _ in 0..POLL_BUDGET {
        assert!(matches!(set.next_ready(|_| Some(())), Ok(Some(()))));
    }
    assert!(matches!(set.next_ready(|_| Some(())), Err(Yield)));
    assert!(matches!(set.next_ready(|_| Some(())), Ok(Some(()))));
    // 63 in a row, then "nothing ready": a new streak starts.
    for _ in 0..POLL_BUDGET - 2 {
        set.next_ready(|_| Some(())).unwrap();
    }
    assert!(matches!(set.next_ready(|_| None::<()>), Ok(None)));
    for _ in 0..2 {
        assert!(matches!(set.next_ready(|_| Some(())), Ok(Some(()))));
    }
}
