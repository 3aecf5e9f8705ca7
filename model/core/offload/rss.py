"""Receive-side scaling (Microsoft "RSS hashing functions" and "RSS hashing types").

The Toeplitz hash of an input byte string under a 40-byte secret key: for every input bit
set, from the first byte's most significant bit on, XOR in the key's 32 bits that start at
that bit position. The input is the source and destination address (IPv4: 8 bytes, IPv6:
32), followed for the TCP and UDP types by the source and destination port. The hash's low
bits index the function's indirection table, whose entry is the RX queue.
"""

from __future__ import annotations

from datasheet import device
from datasheet.descriptors import RssType
from model.core.offload.packet import IPPROTO_TCP, IPPROTO_UDP, IpHeaders

RETA_MASK = device.RSS_RETA_SIZE - 1


def toeplitz(key: bytes, data: bytes) -> int:
    """The 32-bit Toeplitz hash of ``data`` (at most len(key) - 4 bytes) under ``key``."""
    key_int, key_bits = int.from_bytes(key, "big"), 8 * len(key)
    result = 0
    for byte_index, byte in enumerate(data):
        for bit in range(8):
            if byte & (0x80 >> bit):
                shift = key_bits - 32 - (8 * byte_index + bit)
                result ^= (key_int >> shift) & 0xFFFFFFFF
    return result


#: the hash type for (IPv6?, transport protocol), and the address-only type to fall back to
_L4_TYPES = {
    (False, IPPROTO_TCP): RssType.IPV4_TCP,
    (False, IPPROTO_UDP): RssType.IPV4_UDP,
    (True, IPPROTO_TCP): RssType.IPV6_TCP,
    (True, IPPROTO_UDP): RssType.IPV6_UDP,
}


def hash_type(ip: IpHeaders | None, enabled: frozenset[RssType]) -> RssType:
    """The enabled type that applies to a frame: the TCP/UDP one if its transport header is
    present, else (or if that type is off) the address-only one, else NONE."""
    if ip is None:
        return RssType.NONE
    if ip.l4 is not None:
        with_ports = _L4_TYPES[ip.ipv6, ip.l4]
        if with_ports in enabled:
            return with_ports
    address_only = RssType.IPV6 if ip.ipv6 else RssType.IPV4
    return address_only if address_only in enabled else RssType.NONE


def hash_input(frame: bytes, ip: IpHeaders, kind: RssType) -> bytes:
    """Source address, destination address, then for TCP/UDP types source and destination port."""
    data = ip.src + ip.dst
    if kind not in (RssType.IPV4, RssType.IPV6):
        data += frame[ip.l4_offset : ip.l4_offset + 4]
    return data


def select_queue(rss_hash: int, table: tuple[int, ...]) -> int:
    return table[rss_hash & RETA_MASK]
