"""CIDR allow-lists compiled for the request path.

A whitelist is parsed once into merged, sorted integer ranges per address
family; a membership test is then one ``bisect`` over plain ints, instead of a
loop that builds ``ip_address`` objects and asks each ``ip_network`` in turn.
IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, what a dual-stack socket
reports for an IPv4 peer) are matched against the IPv4 ranges.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Iterable


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ranges.sort()
    starts: list[int] = []
    ends: list[int] = []
    for start, end in ranges:
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return tuple(starts), tuple(ends)


def parse_ip(text: str) -> tuple[int, int] | None:
    """Return ``(version, integer)`` for an address, or ``None`` if it is not one.

    ``inet_pton`` is a C call, several times faster than ``ipaddress``. A
    zone id (``fe80::1%eth0``, what ``REMOTE_ADDR`` holds for a link-local
    peer) is dropped, as zones never appear in a whitelist; an empty zone
    or a second ``%`` is not an address, as for ``ipaddress``.
    """
    if ":" in text:
        address, percent, zone = text.partition("%")
        if percent and (not zone or "%" in zone):
            return None
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
        except (OSError, ValueError):
            return None
        if value >> 32 == 0xFFFF:
            return 4, value & 0xFFFFFFFF
        return 6, value
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


class CidrSet:
    """An immutable set of IPv4 and IPv6 networks with fast membership tests.

    ``CidrSet(["10.0.0.0/8", "::1/128"])``; an address string is ``in`` it if
    any network contains it. Raises :class:`ValueError` naming a malformed
    entry. Host bits set (``10.0.0.1/8``) are refused: such an entry is almost
    always a typo for a narrower range.
    """

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, cidrs: Iterable[str]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        networks: list[str] = []
        for entry in cidrs:
            if not isinstance(entry, str):
                raise ValueError(f"CIDR entries must be strings, not {entry!r}")
            try:
                net = ipaddress.ip_network(entry.strip(), strict=True)
            except ValueError:
                raise ValueError(f"malformed CIDR {entry!r}") from None
            start, end = int(net.network_address), int(net.broadcast_address)
            if net.version == 6 and start >> 32 == 0xFFFF and end >> 32 == 0xFFFF:
                # An IPv4-mapped range: addresses are matched as IPv4.
                v4.append((start & 0xFFFFFFFF, end & 0xFFFFFFFF))
            else:
                (v4 if net.version == 4 else v6).append((start, end))
            networks.append(str(net))
        self._v4 = _merge(v4)
        self._v6 = _merge(v6)
        self.networks: tuple[str, ...] = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __repr__(self) -> str:
        return f"CidrSet({list(self.networks)!r})"

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        parsed = parse_ip(address)
        if parsed is None:
            return False
        version, value = parsed
        starts, ends = self._v4 if version == 4 else self._v6
        index = bisect_right(starts, value) - 1
        return index >= 0 and value <= ends[index]

    def allows(self, address: str | None) -> bool:
        """Whitelist semantics: an empty set allows every address."""
        if not self.networks:
            return True
        return address is not None and address in self
