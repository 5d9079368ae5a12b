//! Who is a peer: an address cut to a prefix, as a key of the peer table,
//! and the hash of that key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

/// A peer: its IPv6 address, or the IPv4-mapped IPv6 form of its IPv4
/// address, with the bits beyond the prefix cleared.
///
/// Two `u64`s rather than a `u128`: the table's entries keep a key in two
/// `AtomicU64`s ([`SharedKey`]; there is no stable 128-bit atomic), and the
/// IPv4 keys, the common case, differ in the low half only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PeerKey {
    high: u64,
    low: u64,
}

impl PeerKey {
    fn from_bits(bits: u128) -> PeerKey {
        PeerKey {
            high: (bits >> 64) as u64,
            low: bits as u64,
        }
    }

    fn bits(self) -> u128 {
        u128::from(self.high) << 64 | u128::from(self.low)
    }

    /// The key of a peer given as an address, bits beyond its prefix and
    /// all (for [`PeerStats::connections_of`](crate::PeerStats::connections_of)).
    pub(super) fn of_peer(peer: IpAddr) -> PeerKey {
        PeerKey::from_bits(address_bits(peer))
    }

    /// The peer as an address: IPv4 for an IPv4-mapped key.
    pub(super) fn addr(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.bits());
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// A [`PeerKey`] that the peer table can give to another peer in place,
/// once no connection shares it: the table reuses its entries instead of
/// allocating one per new peer.
///
/// `Relaxed` atomics: the table writes a key only into an entry no
/// connection shares any more (after an `Acquire` fence that orders the
/// last connection's reads before it), and the connection that gets the
/// entry next gets it from the stream, which wrote the key, in the same
/// thread or through whatever hands the connection over to another.
#[derive(Debug)]
pub(super) struct SharedKey {
    high: AtomicU64,
    low: AtomicU64,
}

impl SharedKey {
    pub(super) fn new(key: PeerKey) -> SharedKey {
        SharedKey {
            high: AtomicU64::new(key.high),
            low: AtomicU64::new(key.low),
        }
    }

    #[inline]
    pub(super) fn get(&self) -> PeerKey {
        PeerKey {
            high: self.high.load(Ordering::Relaxed),
            low: self.low.load(Ordering::Relaxed),
        }
    }

    #[inline]
    pub(super) fn set(&self, key: PeerKey) {
        self.high.store(key.high, Ordering::Relaxed);
        self.low.store(key.low, Ordering::Relaxed);
    }
}

/// How many leading bits of an address make a peer, as masks over the
/// 128 bits of [`PeerKey`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Prefixes {
    ipv4: u8,
    ipv6: u8,
    ipv4_mask: u128,
    ipv6_mask: u128,
}

impl Prefixes {
    /// `ipv4` <= 32, `ipv6` <= 128: the callers check.
    pub(super) fn new(ipv4: u8, ipv6: u8) -> Prefixes {
        Prefixes {
            ipv4,
            ipv6,
            // An IPv4 key keeps its 96 bits of IPv4-mapped prefix.
            ipv4_mask: high_bits(96 + ipv4),
            ipv6_mask: high_bits(ipv6),
        }
    }

    pub(super) fn ipv4(&self) -> u8 {
        self.ipv4
    }

    pub(super) fn ipv6(&self) -> u8 {
        self.ipv6
    }

    /// The peer of a client at `addr`: an IPv4 address, and an IPv4-mapped
    /// IPv6 address (`::ffff:a.b.c.d`), cut to the IPv4 prefix; any other
    /// IPv6 address to the IPv6 prefix.
    #[inline]
    pub(super) fn key(&self, addr: &SocketAddr) -> PeerKey {
        let v6 = match addr {
            // The common case, without 128-bit arithmetic: the mapped
            // prefix and the address fit in the low half, and the mask's
            // high half is all ones.
            SocketAddr::V4(v4) => {
                return PeerKey {
                    high: 0,
                    low: (IPV4_MAPPED as u64 | u64::from(u32::from(*v4.ip())))
                        & self.ipv4_mask as u64,
                }
            }
            SocketAddr::V6(v6) => u128::from(*v6.ip()),
        };
        let mask = if v6 >> 32 == IPV4_MAPPED >> 32 {
            self.ipv4_mask
        } else {
            self.ipv6_mask
        };
        PeerKey::from_bits(v6 & mask)
    }
}

/// `::ffff:0.0.0.0`, the start of the IPv4-mapped addresses (`::ffff:0:0/96`).
const IPV4_MAPPED: u128 = 0xffff << 32;

/// The address as 128 bits: IPv4 as its IPv4-mapped IPv6 form.
fn address_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => IPV4_MAPPED | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A `u128` with its top `bits` bits set (`bits` <= 128).
fn high_bits(bits: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0)
}

/// The hash of the peer table: a folded multiply of the key's two halves,
/// each with a random seed drawn per table xored in (the 128-bit product's
/// halves xored), times [`FIBONACCI`]; the table takes the top bits.
///
/// Why not the standard `RandomState` (SipHash-1-3): its rounds, made to
/// resist hash flooding, take tens of instructions per key, more than the
/// rest of a table lookup; this one is a few. Why not a plain
/// multiply-shift (each half times a random odd multiplier, summed), a few
/// instructions cheaper: about one multiplier in a thousand (`1 << 40 | 1`,
/// or one near a fraction of 2^64 with a small denominator) puts
/// neighbouring addresses, 127.0.0.2, 127.0.0.3, ..., into one long run, and the fold has no such multipliers
/// (the unit test `neighbouring_addresses_spread_over_the_table_whatever_the_seeds`
/// tries them). Why seeds at all: the keys are client addresses, so a client
/// with many addresses (a whole IPv6 `/48` holds 65 536 `/64`s) could aim
/// collisions at a fixed hash. Random seeds give it no fixed target, though
/// not a cryptographic guarantee like SipHash's; and since the table holds
/// at most 16 entries per peer holding connections at its last rebuild
/// (peers bounded by the connections held, at most what
/// [`listen(n)`](crate::ListenExt::listen) runs plus those on their way to
/// it), even a table of collisions would cost a scan of that many keys, not
/// of every peer ever seen.
#[derive(Clone, Copy, Debug)]
pub(super) struct PeerHash {
    seeds: [u64; 2],
}

impl PeerHash {
    pub(super) fn random() -> PeerHash {
        // Each `RandomState` has fresh random keys; hashing two constants with
        // it yields two random numbers.
        let random = RandomState::new();
        PeerHash::with_seeds([random.hash_one(1u8), random.hash_one(2u8)])
    }

    /// A hash with chosen seeds; tests need collisions: with `[0, 0]` every
    /// IPv4 key (whose high half is 0) hashes to 0.
    pub(super) fn with_seeds(seeds: [u64; 2]) -> PeerHash {
        PeerHash { seeds }
    }

    /// The hash of `key`, whose top bits make its home in the table.
    #[inline]
    pub(super) fn hash(&self, key: PeerKey) -> u64 {
        let product = u128::from(key.high ^ self.seeds[0]) * u128::from(key.low ^ self.seeds[1]);
        ((product >> 64) as u64 ^ product as u64).wrapping_mul(FIBONACCI)
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying the fold by it and
/// keeping the top bits spreads every bit of the fold over the index.
/// Without it, a seed with trailing zero bits leaves the low bits of the
/// hash of neighbouring addresses (127.0.0.2, 127.0.0.3, ...) alike, and
/// linear probing turns that into long runs: under callgrind, one seed in a
/// few made a connection cost 3 to 10 times more in the table.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;
