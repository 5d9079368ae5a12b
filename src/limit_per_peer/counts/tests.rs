//! Unit tests of the peer table.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Weak;

use proptest::prelude::*;

use super::*;

fn ipv4(n: u32) -> PeerKey {
    PeerKey::of_peer(IpAddr::V4(n.into()))
}

fn ipv6(bits: u128) -> PeerKey {
    PeerKey::of_peer(IpAddr::V6(bits.into()))
}

/// A table whose hash gives every IPv4 key home 0: its low half, whose
/// top 16 bits are 0.
fn colliding() -> Counts {
    Counts::new(PeerHash::with_seeds([0, 0]))
}

/// `n` IPv6 keys whose home in `counts` is `home`, picked from keys
/// spread over the whole space.
fn keys_at(counts: &Counts, home: usize, n: usize) -> Vec<PeerKey> {
    (1u128..)
        .map(|i| ipv6(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
        .filter(|&key| counts.home(key) == home)
        .take(n)
        .collect()
}

/// The bucket of `key`'s entry, found by looking at every bucket.
fn bucket_of(counts: &Counts, key: PeerKey) -> Option<usize> {
    counts
        .buckets
        .iter()
        .position(|entry| entry.as_ref().is_some_and(|entry| entry.get() == key))
}

/// How many buckets past its home `key`'s entry is.
fn probe_length(counts: &Counts, key: PeerKey) -> usize {
    let index = bucket_of(counts, key).expect("the key has no entry");
    index.wrapping_sub(counts.home(key)) & (counts.buckets.len() - 1)
}

/// The table's invariants: a power of two of buckets, no fewer than at
/// first, with the matching shift; `used` entries, at most half the
/// buckets, one per key, each reachable from its home without crossing
/// an empty bucket; at most half the buckets of spares, each shared with
/// nothing (so with no connection, and not in the table).
fn assert_sound(counts: &Counts) {
    let len = counts.buckets.len();
    assert!(
        len.is_power_of_two() && len >= FIRST_CAPACITY,
        "{len} buckets"
    );
    assert_eq!(counts.shift, shift_for(len));
    assert_eq!(counts.used, counts.buckets.iter().flatten().count());
    assert!(
        counts.used * 2 <= len,
        "{} entries in {len} buckets",
        counts.used
    );
    let spares = counts.spare.len();
    assert!(spares <= len / 2, "{spares} spares for {len} buckets");
    assert!(counts
        .spare
        .iter()
        .all(|entry| Arc::strong_count(entry) == 1));
    // Every run of entries starts after an empty bucket: walk the table
    // from one, remembering the last.
    let mask = len - 1;
    let empty = counts.buckets.iter().position(Option::is_none).unwrap();
    let mut before_run = empty;
    let mut keys = HashSet::new();
    for step in 1..=len {
        let index = (empty + step) & mask;
        match &counts.buckets[index] {
            None => before_run = index,
            Some(entry) => {
                let key = entry.get();
                assert!(keys.insert(key.addr()), "two entries for {key:?}");
                let from_home = index.wrapping_sub(counts.home(key)) & mask;
                let from_empty = index.wrapping_sub(before_run) & mask;
                assert!(from_home < from_empty, "{key:?} at {index}: out of reach");
            }
        }
    }
}

#[test]
fn colliding_peers_are_all_found_and_counted_apart() {
    let mut counts = colliding();
    let keys: Vec<_> = (1..=40).map(ipv4).collect();
    assert!(keys.iter().all(|&key| counts.home(key) == 0));
    // Peer `n` takes `n % 3 + 1` connections, a round at a time, so that
    // each acquire probes past the others.
    let mut held = Vec::new();
    for round in 0..3 {
        for (n, &key) in keys.iter().enumerate() {
            if round <= n % 3 {
                held.push(counts.acquire(key, 3).unwrap());
            }
        }
    }
    for (n, &key) in keys.iter().enumerate() {
        assert_eq!(bucket_of(&counts, key), Some(n));
        assert_eq!(counts.count_of(key), n % 3 + 1, "peer {n}");
    }
    assert_eq!(counts.count_of(ipv4(41)), 0);
    assert_eq!(counts.peers(), 40);
    assert_eq!(counts.connections(), held.len() as u64);
    // The peers at the cap are found too.
    for (n, &key) in keys.iter().enumerate() {
        assert_eq!(counts.acquire(key, 3).is_none(), n % 3 == 2, "peer {n}");
    }
    assert_eq!(counts.used, 40);
    assert_sound(&counts);
}

#[test]
fn a_run_of_colliding_peers_wraps_around_the_end_of_the_table() {
    let mut counts = colliding();
    let last = counts.buckets.len() - 1;
    let keys = keys_at(&counts, last, 4);
    let held: Vec<_> = keys
        .iter()
        .map(|&key| counts.acquire(key, 1).unwrap())
        .collect();
    // A peer whose home is the first bucket goes after the run.
    let first = counts.acquire(ipv4(1), 1).unwrap();
    let buckets: Vec<_> = keys.iter().map(|&key| bucket_of(&counts, key)).collect();
    assert_eq!(buckets, [Some(last), Some(0), Some(1), Some(2)]);
    assert_eq!(bucket_of(&counts, ipv4(1)), Some(3));
    for &key in keys.iter().chain(&[ipv4(1)]) {
        assert_eq!(counts.count_of(key), 1);
        assert!(counts.acquire(key, 1).is_none(), "{key:?} not found");
    }
    assert_eq!((counts.used, counts.rejected), (5, 5));
    assert_sound(&counts);
    drop((held, first));
}

#[test]
fn a_peer_whose_connections_all_ended_holds_nothing_but_keeps_its_entry() {
    let mut counts = colliding();
    let other = counts.acquire(ipv4(2), 2).unwrap();
    let first = [
        counts.acquire(ipv4(1), 2).unwrap(),
        counts.acquire(ipv4(1), 2).unwrap(),
    ];
    let entry = Arc::downgrade(&first[0]);
    drop(first);
    assert_eq!(counts.count_of(ipv4(1)), 0);
    assert_eq!((counts.peers(), counts.connections()), (1, 1));
    assert_eq!(counts.used, 2);
    let again = counts.acquire(ipv4(1), 2).unwrap();
    assert!(Arc::ptr_eq(&again, &entry.upgrade().unwrap()));
    assert_eq!(counts.used, 2);
    assert_eq!(counts.count_of(ipv4(1)), 1);
    assert_eq!((counts.peers(), counts.connections()), (2, 2));
    drop((other, again));
}

#[test]
fn a_peer_at_the_cap_is_turned_away_until_one_of_its_connections_ends() {
    let mut counts = Counts::new(PeerHash::random());
    let peer = ipv4(0x7f00_0001);
    let first = counts.acquire(peer, 2).unwrap();
    let second = counts.acquire(peer, 2).unwrap();
    assert!(counts.acquire(peer, 2).is_none());
    assert_eq!((counts.accepted, counts.rejected), (2, 1));
    assert_eq!(counts.count_of(peer), 2);
    let other = counts.acquire(ipv4(0x7f00_0002), 2).unwrap();
    drop(first);
    assert_eq!(counts.count_of(peer), 1);
    let third = counts.acquire(peer, 2).unwrap();
    assert!(counts.acquire(peer, 2).is_none());
    assert_eq!((counts.accepted, counts.rejected), (4, 2));
    assert_eq!((counts.peers(), counts.connections()), (2, 3));
    drop((second, third, other));
}

#[test]
fn peers_that_come_and_go_reuse_idle_entries_in_a_table_that_stays_small() {
    let mut counts = Counts::new(PeerHash::random());
    // Each entry ever handed out, kept allocated so that its address
    // names it alone.
    let mut entries: Vec<Weak<SharedKey>> = Vec::new();
    let mut addresses = HashSet::new();
    let peers = 10_000;
    for n in 0..peers {
        let key = ipv4(0x0a00_0000 + n);
        let share = counts.acquire(key, 1).unwrap();
        assert_eq!(share.get(), key);
        addresses.insert(Arc::as_ptr(&share));
        entries.push(Arc::downgrade(&share));
        drop(share);
        assert_eq!(counts.count_of(key), 0);
        assert!(counts.used * 2 <= counts.buckets.len());
        assert!(counts.spare.len() <= counts.buckets.len() / 2);
        assert_eq!(counts.buckets.len(), FIRST_CAPACITY);
    }
    assert_sound(&counts);
    assert_eq!((counts.peers(), counts.connections()), (0, 0));
    // The entries of the first peers came back as the entries of the
    // next ones once a rebuild made them spare.
    let first = Arc::as_ptr(&entries[0].upgrade().unwrap());
    let again = entries[FIRST_CAPACITY..]
        .iter()
        .filter(|entry| std::ptr::eq(entry.as_ptr(), first))
        .count();
    assert!(again > 0, "the first peer's entry never came back");
    assert!(
        addresses.len() <= FIRST_CAPACITY / 2 + 1,
        "{} entries allocated for {peers} peers",
        addresses.len()
    );
}

#[test]
fn the_table_grows_for_the_peers_it_holds_and_shrinks_back_once_they_leave() {
    let mut counts = Counts::new(PeerHash::random());
    let peers = FIRST_CAPACITY as u32;
    let mut held = Vec::new();
    for n in 0..peers {
        let len = counts.buckets.len();
        held.push((n, counts.acquire(ipv4(n), 2).unwrap()));
        if counts.buckets.len() != len {
            // Grown for a quarter of its buckets to take new peers.
            assert!(counts.used * 4 <= counts.buckets.len(), "{n} peers");
        }
    }
    let grown = counts.buckets.len();
    assert!(grown >= 2 * held.len(), "{grown} buckets");
    assert_sound(&counts);
    assert_eq!(counts.peers(), held.len());
    assert_eq!(counts.connections(), held.len() as u64);
    for n in 0..peers {
        assert_eq!(counts.count_of(ipv4(n)), 1);
        // Found, not a new entry.
        held.push((n, counts.acquire(ipv4(n), 2).unwrap()));
        assert_eq!(counts.used, peers as usize);
    }
    // All but a few leave, then new peers come and go until a rebuild
    // shrinks the table, which keeps the few.
    let few = 100;
    held.retain(|&(n, _)| n < few);
    assert_eq!(counts.peers(), few as usize);
    let mut churned = 0;
    while counts.buckets.len() > FIRST_CAPACITY {
        assert!(
            churned < grown,
            "{churned} new peers, still {grown} buckets"
        );
        drop(counts.acquire(ipv6(churned as u128 + 1), 1));
        churned += 1;
    }
    assert_sound(&counts);
    for n in 0..peers {
        assert_eq!(counts.count_of(ipv4(n)), if n < few { 2 } else { 0 });
    }
    // The few leave too; the table keeps its size and its bounds while
    // more new peers come and go.
    held.clear();
    for n in 0..10 * FIRST_CAPACITY {
        drop(counts.acquire(ipv6((grown + n) as u128), 1));
        assert_eq!(counts.buckets.len(), FIRST_CAPACITY);
        assert!(counts.used * 2 <= FIRST_CAPACITY);
        assert!(counts.spare.len() <= FIRST_CAPACITY / 2);
    }
    assert_sound(&counts);
    assert_eq!((counts.peers(), counts.connections()), (0, 0));
}

#[test]
fn neighbouring_addresses_spread_over_the_table_whatever_the_seeds() {
    // 300 neighbours, in a table of 1024 buckets: 127.0.0.2 on, and the
    // /64s of 2001:db8:: on.
    let neighbours: Vec<_> = (0..300)
        .map(|n| ipv4(0x7f00_0002 + n))
        .chain((0..300u32).map(|n| ipv6((0x2001_0db8_0000_0000 + u128::from(n)) << 64)))
        .collect();
    let longest_probe = |hash| {
        let mut counts = Counts::new(hash);
        let mut longest = 0;
        for group in neighbours.chunks(300) {
            let held: Vec<_> = group
                .iter()
                .map(|&key| counts.acquire(key, 1).unwrap())
                .collect();
            assert_eq!(counts.buckets.len(), FIRST_CAPACITY);
            for &key in group {
                longest = longest.max(probe_length(&counts, key));
            }
            drop(held);
        }
        longest
    };
    // Constants of well-known mixers, the same with 16 to 48 trailing
    // zero bits, and seeds that gather neighbours into one run when
    // used as plain multipliers (`1 << 40 | 1`, `1 << 63 | 1`, a small
    // one). The fold's own bad seeds are a first seed of 0 or all ones,
    // which make every IPv4 key's fold the same: one draw in 2^63.
    let mixers = [
        [0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9],
        [0x94d0_49bb_1331_11eb, 0xc2b2_ae3d_27d4_eb4f],
        [0x1656_67b1_9e37_79f9, 0x85eb_ca77_c2b2_ae63],
        [0x2545_f491_4f6c_dd1d, 0xd6e8_feb8_6659_fd93],
    ];
    let mut seeds: Vec<[u64; 2]> = mixers
        .iter()
        .flat_map(|&[high, low]| [0, 16, 32, 48].map(|shift| [high << shift, low << shift]))
        .collect();
    seeds.extend([[1 << 40 | 1; 2], [1 << 63 | 1; 2], [3, 5]]);
    for seeds in seeds {
        let longest = longest_probe(PeerHash::with_seeds(seeds));
        assert!(longest < 16, "seeds {seeds:x?}: a probe of {longest}");
    }
    // Random seeds: in 2000 draws the longest probe was 2 to 15, so these
    // bounds leave room for chance.
    let mut longest: Vec<_> = (0..64).map(|_| longest_probe(PeerHash::random())).collect();
    longest.sort_unstable();
    assert!(
        longest[32] < 8 && longest[63] < 30,
        "longest probes with random seeds: {longest:?}"
    );
}

/// A peer of the model: even ones IPv4, whose home is the first bucket
/// with seeds `[0, 0]`; odd ones IPv6, whose home is the last with
/// those seeds, whatever the table's size, so that their run wraps
/// around into the first.
fn peer(n: usize) -> PeerKey {
    if n.is_multiple_of(2) {
        ipv4(0x0a00_0000 + n as u32)
    } else {
        ipv6(u128::from(u64::MAX - n as u64) << 64)
    }
}

/// Peers of the model: enough for a crowd to grow the table, and for
/// later ones to shrink it back.
const PEERS: usize = 2000;

#[derive(Clone, Debug)]
enum Op {
    /// A connection of peer `n`.
    Acquire(usize),
    /// A connection of each of `len` peers from `first` on: a crowd.
    Crowd { first: usize, len: usize },
    /// A connection of each of `len` peers from `first` on that ends at
    /// once: passers-by.
    Churn { first: usize, len: usize },
    /// The connection at this index (modulo the number held) ends.
    Drop(usize),
    /// The last `len` connections held end.
    DropLast(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..8usize).prop_map(Op::Acquire),
        3 => (0..PEERS).prop_map(Op::Acquire),
        1 => (0..PEERS, 0..400usize).prop_map(|(first, len)| Op::Crowd { first, len }),
        1 => (0..PEERS, 0..1000usize).prop_map(|(first, len)| Op::Churn { first, len }),
        4 => any::<usize>().prop_map(Op::Drop),
        1 => (0..400usize).prop_map(Op::DropLast),
    ]
}

proptest! {
    // Fewer cases than the default 256: each runs thousands of
    // acquisitions, in runs of a thousand entries with colliding seeds.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_counts_match_a_map_under_any_churn(
        seeds in prop_oneof![1 => Just([0, 0]), 3 => any::<[u64; 2]>()],
        max in 1usize..4,
        ops in proptest::collection::vec(op(), 0..100),
    ) {
        let mut counts = Counts::new(PeerHash::with_seeds(seeds));
        // Connections per peer holding any, by the peer's address.
        let mut model: HashMap<IpAddr, usize> = HashMap::new();
        let mut held: Vec<(usize, Share)> = Vec::new();
        let (mut accepted, mut rejected) = (0, 0);
        let mut most_peers = 0;
        for op in ops {
            let crowd = |first, len| (first..first + len).map(|n| n % PEERS).collect();
            let (acquired, passing, dropped) = match op {
                Op::Acquire(n) => (vec![n], false, Vec::new()),
                Op::Crowd { first, len } => (crowd(first, len), false, Vec::new()),
                Op::Churn { first, len } => (crowd(first, len), true, Vec::new()),
                Op::Drop(i) if !held.is_empty() => {
                    (Vec::new(), false, vec![held.swap_remove(i % held.len())])
                }
                Op::Drop(_) => (Vec::new(), false, Vec::new()),
                Op::DropLast(len) => {
                    let first = held.len().saturating_sub(len);
                    (Vec::new(), false, held.split_off(first))
                }
            };
            let mut touched = Vec::new();
            for n in acquired {
                let key = peer(n);
                let count = model.entry(key.addr()).or_insert(0);
                let len = counts.buckets.len();
                let taken = counts.acquire(key, max);
                // A resized table has three quarters of its buckets free.
                let resized = counts.buckets.len() != len;
                prop_assert!(!resized || counts.used * 4 <= counts.buckets.len());
                match taken {
                    Some(share) => {
                        prop_assert!(*count < max, "peer {} let through over the cap", n);
                        prop_assert_eq!(share.get(), key);
                        accepted += 1;
                        if !passing {
                            *count += 1;
                            held.push((n, share));
                        }
                    }
                    None => {
                        prop_assert_eq!(*count, max, "peer {} turned away under the cap", n);
                        rejected += 1;
                    }
                }
                touched.push(n);
            }
            for (n, share) in dropped {
                drop(share);
                *model.get_mut(&peer(n).addr()).unwrap() -= 1;
                touched.push(n);
            }
            model.retain(|_, count| *count > 0);
            most_peers = most_peers.max(model.len());
            for n in touched {
                let expected = model.get(&peer(n).addr()).copied().unwrap_or(0);
                prop_assert_eq!(counts.count_of(peer(n)), expected, "peer {}", n);
            }
            prop_assert_eq!(counts.peers(), model.len());
            prop_assert_eq!(counts.connections(), held.len() as u64);
            prop_assert_eq!((counts.accepted, counts.rejected), (accepted, rejected));
            prop_assert!(counts.held().all(|count| count <= max));
            assert_sound(&counts);
            // A table grows to the power of two at least four times the
            // peers holding connections, so to fewer than eight times.
            let len = counts.buckets.len();
            prop_assert!(
                len <= FIRST_CAPACITY.max(8 * most_peers),
                "{} buckets, at most {} peers at once", len, most_peers
            );
        }
        for n in 0..PEERS {
            let expected = model.get(&peer(n).addr()).copied().unwrap_or(0);
            prop_assert_eq!(counts.count_of(peer(n)), expected, "peer {}", n);
        }
        held.clear();
        prop_assert_eq!((counts.peers(), counts.connections()), (0, 0));
        prop_assert!((0..PEERS).all(|n| counts.count_of(peer(n)) == 0));
    }
}

#[test]
fn a_rebuild_comes_with_the_first_new_peer_past_half_the_buckets() {
    let mut counts = Counts::new(PeerHash::random());
    let half = FIRST_CAPACITY / 2;
    // Peers that come and go keep their entries until then.
    for n in 0..half as u32 {
        drop(counts.acquire(ipv4(n), 1).unwrap());
    }
    assert_eq!((counts.used, counts.spare.len()), (half, 0));
    assert!((0..half as u32).all(|n| bucket_of(&counts, ipv4(n)).is_some()));
    // The next one makes more than half the buckets used: only its own
    // entry, held, stays in the table, the idle ones are set aside.
    let last = counts.acquire(ipv4(half as u32), 1).unwrap();
    assert_eq!((counts.used, counts.spare.len()), (1, half));
    assert_eq!(
        bucket_of(&counts, last.get()),
        Some(counts.home(last.get()))
    );
    assert_sound(&counts);
}

#[test]
fn a_rebuild_keeps_the_size_of_a_table_a_sixteenth_full_or_more() {
    let mut counts = Counts::new(PeerHash::random());
    let mut held: Vec<_> = (0..FIRST_CAPACITY as u32)
        .map(|n| counts.acquire(ipv4(n), 1).unwrap())
        .collect();
    let grown = counts.buckets.len();
    assert!(grown > FIRST_CAPACITY, "{grown} buckets");
    // Between a sixteenth and an eighth of the buckets' worth of peers keep
    // their connections; new peers come and go until the next rebuild.
    let kept = grown / 16 + grown / 32;
    held.truncate(kept);
    let mut rebuilt = false;
    for n in 0..grown {
        let used = counts.used;
        drop(counts.acquire(ipv6(n as u128 + 1), 1));
        if counts.used < used {
            rebuilt = true;
            break;
        }
    }
    assert!(rebuilt, "no rebuild after {grown} new peers");
    assert_eq!(
        counts.buckets.len(),
        grown,
        "{kept} peers holding connections"
    );
    assert_eq!(counts.peers(), kept);
    assert_sound(&counts);
}
