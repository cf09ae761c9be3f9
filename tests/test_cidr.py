"""Compiled CIDR sets."""

from __future__ import annotations

import ipaddress
import random

import pytest

from flask_logout import CidrSet
from flask_logout.cidr import parse_ip


def test_ipv4_and_ipv6_membership() -> None:
    cidrs = CidrSet(["127.0.0.0/8", "10.1.0.0/16", "::1/128", "2001:db8::/32"])
    for inside in ("127.0.0.1", "127.255.255.255", "10.1.200.3", "::1", "2001:db8:1::5", "::ffff:127.0.0.1"):
        assert inside in cidrs, inside
    for outside in ("128.0.0.0", "10.2.0.0", "::2", "2001:db9::", "fe80::1", "", "garbage", "1.2.3", "::ffff:8.8.8.8"):
        assert outside not in cidrs, outside


def test_empty_set_allows_all_but_contains_nothing() -> None:
    empty = CidrSet([])
    assert not empty
    assert empty.allows("203.0.113.1")
    assert empty.allows(None)
    assert "203.0.113.1" not in empty


def test_non_empty_set_refuses_unknown_address() -> None:
    assert not CidrSet(["10.0.0.0/8"]).allows(None)
    assert not CidrSet(["10.0.0.0/8"]).allows("not-an-ip")


def test_overlapping_and_adjacent_ranges_merge() -> None:
    cidrs = CidrSet(["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "192.168.0.0/16"])
    assert "10.0.1.255" in cidrs
    assert "10.0.2.0" not in cidrs
    assert len(cidrs) == 4  # the networks as given are kept for display


def test_ipv4_mapped_ipv6_ranges_match_ipv4_addresses() -> None:
    cidrs = CidrSet(["::ffff:192.0.2.0/120"])
    assert "192.0.2.7" in cidrs
    assert "::ffff:192.0.2.7" in cidrs
    assert "192.0.3.7" not in cidrs


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.1/8", "fe80::/129", "abc", "", "10.0.0.0/-1"])
def test_malformed_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="malformed CIDR"):
        CidrSet(["10.0.0.0/8", bad])


def test_agrees_with_ipaddress_on_random_data() -> None:
    rng = random.Random(7)
    networks = [ipaddress.ip_network((rng.getrandbits(32), rng.randint(8, 30)), strict=False) for _ in range(100)]
    cidrs = CidrSet(str(n) for n in networks)
    for _ in range(5000):
        address = ipaddress.ip_address(rng.getrandbits(32))
        expected = any(address in n for n in networks)
        assert (str(address) in cidrs) is expected
    for network in networks:
        assert str(network.network_address) in cidrs
        assert str(network.broadcast_address) in cidrs


def test_a_gap_between_merged_ranges_stays_out() -> None:
    """/31 covers .0 and .1, /32 covers .3: .2 is between them and in neither."""
    cidrs = CidrSet(["10.0.0.0/31", "10.0.0.3/32"])
    for inside in ("10.0.0.0", "10.0.0.1", "10.0.0.3"):
        assert inside in cidrs, inside
    for outside in ("10.0.0.2", "10.0.0.4", "9.255.255.255"):
        assert outside not in cidrs, outside


def test_a_scoped_ipv6_address_matches_without_its_zone() -> None:
    """``fe80::1%eth0`` (a link-local peer in REMOTE_ADDR) is ``fe80::1`` on some interface."""
    cidrs = CidrSet(["fe80::/10"])
    for inside in ("fe80::1%eth0", "fe80::1%25eth0", "fe80::1%1", "febf::1%eth0"):
        assert inside in cidrs, inside
    assert "fec0::1%eth0" not in cidrs
    everything = CidrSet(["::/0", "0.0.0.0/0"])
    for malformed in ("fe80::1%", "fe80::1%a%b", "%eth0", "fe80::zz%eth0", "10.0.0.1%eth0"):
        assert malformed not in everything, malformed


@pytest.mark.parametrize("text", ["fe80::1%eth0", "fe80::1%25eth0", "fe80::1%", "fe80::1%a%b", "::1%lo", "1.2.3.4%x"])
def test_zone_ids_are_parsed_like_ipaddress(text: str) -> None:
    try:
        expected: object = int(ipaddress.ip_address(text))
    except ValueError:
        expected = None
    parsed = parse_ip(text)
    assert (parsed[1] if parsed else None) == expected
