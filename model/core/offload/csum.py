"""Internet checksums (RFC 1071): the IPv4 header checksum and the TCP/UDP checksum over the
pseudo-header (RFC 793 / 768 for IPv4, RFC 8200 §8.1 for IPv6) and the segment."""

from __future__ import annotations

import struct


def ones_sum(data: bytes, start: int = 0) -> int:
    """16-bit ones' complement sum of ``data`` (padded with a zero byte if odd), plus ``start``."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = start + sum(struct.unpack_from(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes, start: int = 0) -> int:
    """The checksum field value that makes ``data`` (with ``start`` added) sum to 0xFFFF."""
    return ~ones_sum(data, start) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the pseudo-header: IPv4 (4-byte addresses) or IPv6 (16-byte addresses)."""
    if len(src) == 4:
        return ones_sum(src + dst + struct.pack("!BBH", 0, proto, length))
    return ones_sum(src + dst + struct.pack("!IxxxB", length, proto))


def ipv4_header_ok(header: bytes) -> bool:
    return ones_sum(header) == 0xFFFF


def l4_ok(src: bytes, dst: bytes, proto: int, segment: bytes) -> bool:
    return ones_sum(segment, pseudo_header_sum(src, dst, proto, len(segment))) == 0xFFFF
