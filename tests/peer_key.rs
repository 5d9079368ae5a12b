//! Who counts as one peer for `limit_per_peer`: the address masked to a
//! prefix, IPv4-mapped IPv6 addresses as IPv4, the port ignored.

use std::net::{IpAddr, SocketAddr};

use futures::stream::{self, Empty};
use tk_listen::{LimitPerPeer, ListenExt};

type Limited = LimitPerPeer<Empty<((), SocketAddr), ()>>;

fn limited() -> Limited {
    stream::empty::<((), SocketAddr), ()>().limit_per_peer(1)
}

fn peer(limited: &Limited, addr: &str) -> IpAddr {
    limited.peer_of(addr.parse().expect("a socket address"))
}

fn ip(ip: &str) -> IpAddr {
    ip.parse().expect("an IP address")
}

#[test]
fn an_ipv4_address_is_its_own_peer_whatever_the_port() {
    let l = limited();
    assert_eq!(peer(&l, "192.0.2.1:1"), ip("192.0.2.1"));
    assert_eq!(peer(&l, "192.0.2.1:65535"), ip("192.0.2.1"));
    assert_eq!(peer(&l, "192.0.2.2:1"), ip("192.0.2.2"));
    assert_eq!(peer(&l, "255.255.255.255:1"), ip("255.255.255.255"));
}

#[test]
fn an_ipv6_address_counts_as_its_64_bit_prefix() {
    let l = limited();
    for addr in [
        "[2001:db8:1:2::]:1",
        "[2001:db8:1:2::1]:2",
        "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:3",
        "[2001:db8:1:2:ffff:ffff:ffff:ffff]:4",
    ] {
        assert_eq!(peer(&l, addr), ip("2001:db8:1:2::"), "{addr}");
    }
}

#[test]
fn neighbouring_ipv6_addresses_across_a_64_bit_boundary_are_different_peers() {
    let l = limited();
    // The last address of one /64 and the first of the next.
    assert_eq!(
        peer(&l, "[2001:db8:1:1:ffff:ffff:ffff:ffff]:1"),
        ip("2001:db8:1:1::")
    );
    assert_eq!(peer(&l, "[2001:db8:1:2::]:1"), ip("2001:db8:1:2::"));
    // A change in bit 63 (the last bit of the prefix) is another peer.
    assert_eq!(peer(&l, "[2001:db8:0:1::1]:1"), ip("2001:db8:0:1::"));
    assert_eq!(peer(&l, "[2001:db8::1]:1"), ip("2001:db8::"));
    assert_eq!(peer(&l, "[::1]:1"), ip("::"));
}

#[test]
fn an_ipv4_mapped_ipv6_address_counts_as_the_ipv4_address() {
    let l = limited();
    assert_eq!(peer(&l, "[::ffff:192.0.2.1]:1"), ip("192.0.2.1"));
    assert_eq!(peer(&l, "[::ffff:192.0.2.1]:1"), peer(&l, "192.0.2.1:2"));
    assert_ne!(peer(&l, "[::ffff:192.0.2.1]:1"), peer(&l, "192.0.2.2:1"));
    // Not mapped: IPv4-compatible (deprecated) and NAT64 addresses are IPv6.
    assert_eq!(peer(&l, "[::192.0.2.1]:1"), ip("::"));
    assert_eq!(peer(&l, "[64:ff9b::192.0.2.1]:1"), ip("64:ff9b::"));
}

#[test]
fn an_ipv4_prefix_groups_neighbouring_addresses() {
    let l = limited().ipv4_prefix(24);
    assert_eq!(peer(&l, "10.1.2.3:1"), ip("10.1.2.0"));
    assert_eq!(peer(&l, "10.1.2.255:1"), ip("10.1.2.0"));
    assert_eq!(peer(&l, "10.1.3.0:1"), ip("10.1.3.0"));
    // A prefix that doesn't end on a byte.
    let l = limited().ipv4_prefix(20);
    assert_eq!(peer(&l, "10.1.15.255:1"), ip("10.1.0.0"));
    assert_eq!(peer(&l, "10.1.16.0:1"), ip("10.1.16.0"));
}

#[test]
fn the_ipv4_prefix_applies_to_ipv4_mapped_addresses_and_not_to_ipv6() {
    let l = limited().ipv4_prefix(16);
    assert_eq!(peer(&l, "[::ffff:10.1.2.3]:1"), ip("10.1.0.0"));
    assert_eq!(
        peer(&l, "[2001:db8:1:2:3:4:5:6]:1"),
        ip("2001:db8:1:2::"),
        "the IPv6 prefix stays 64"
    );
}

#[test]
fn an_ipv6_prefix_changes_the_grouping_of_ipv6_only() {
    let l = limited().ipv6_prefix(48);
    assert_eq!(peer(&l, "[2001:db8:1:2::1]:1"), ip("2001:db8:1::"));
    assert_eq!(peer(&l, "[2001:db8:1:ffff::1]:1"), ip("2001:db8:1::"));
    assert_eq!(peer(&l, "[2001:db8:2::1]:1"), ip("2001:db8:2::"));
    assert_eq!(peer(&l, "[::ffff:10.1.2.3]:1"), ip("10.1.2.3"));
    assert_eq!(peer(&l, "10.1.2.3:1"), ip("10.1.2.3"));
    // A prefix that doesn't end on a 16-bit group.
    let l = limited().ipv6_prefix(56);
    assert_eq!(peer(&l, "[2001:db8:1:2ff::1]:1"), ip("2001:db8:1:200::"));
    assert_eq!(peer(&l, "[2001:db8:1:300::1]:1"), ip("2001:db8:1:300::"));
}

#[test]
fn full_length_prefixes_make_every_address_a_peer() {
    let l = limited().ipv4_prefix(32).ipv6_prefix(128);
    assert_eq!(peer(&l, "[2001:db8::1]:1"), ip("2001:db8::1"));
    assert_eq!(peer(&l, "[2001:db8::2]:1"), ip("2001:db8::2"));
    assert_eq!(peer(&l, "192.0.2.1:1"), ip("192.0.2.1"));
}

#[test]
fn zero_length_prefixes_make_each_family_one_peer() {
    let l = limited().ipv4_prefix(0).ipv6_prefix(0);
    assert_eq!(peer(&l, "192.0.2.1:1"), ip("0.0.0.0"));
    assert_eq!(peer(&l, "[::ffff:198.51.100.1]:1"), ip("0.0.0.0"));
    assert_eq!(peer(&l, "[2001:db8::1]:1"), ip("::"));
    assert_ne!(peer(&l, "192.0.2.1:1"), peer(&l, "[2001:db8::1]:1"));
}

#[test]
#[should_panic(expected = "an IPv4 address has only 32 bits")]
fn an_ipv4_prefix_over_32_bits_panics() {
    let _ = limited().ipv4_prefix(33);
}

#[test]
#[should_panic(expected = "an IPv6 address has only 128 bits")]
fn an_ipv6_prefix_over_128_bits_panics() {
    let _ = limited().ipv6_prefix(129);
}
