"""Headers of the test bench's frames, put together with ``struct``: the bytes scapy builds
for the same layers with its defaults (``tests/test_frames.py`` holds every builder that uses
them equal to scapy's), at a hundredth of the cost. The regressions build thousands of
frames; the scoreboard's references still parse and check them with scapy.

Defaults as scapy's: IPv4 without options, TOS 0, DF/MF clear, TTL 64 (RFC 791); IPv6 with
traffic class and flow label 0, hop limit 64 (RFC 8200); TCP with ACK number 0, no options,
window 8192, urgent pointer 0 (RFC 9293); a UDP checksum that computes to 0 is sent as
0xFFFF (RFC 768); ICMP echo request with identifier and sequence number 0 (RFC 792).
"""

from __future__ import annotations

import struct

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x86DD, 0x8100
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
ETH_HEADER, IPV4_HEADER, IPV6_HEADER, TCP_HEADER, UDP_HEADER = 14, 20, 40, 20, 8
#: where the checksum field sits in an IPv4 header, and in a TCP or UDP header (by protocol)
IPV4_CHECKSUM_AT = 10
L4_CHECKSUM_AT = {6: 16, 17: 6}
TTL = 64
TCP_PSH_ACK = 0x18
TCP_WINDOW = 8192
ICMP_ECHO_REQUEST = 8
_PATTERN = bytes(range(256))


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pattern(start: int, length: int) -> bytes:
    """``length`` bytes counting up from ``start`` (mod 256): ``bytes((start + k) & 0xFF ...)``."""
    start &= 0xFF
    return (_PATTERN * (length // 256 + 2))[start : start + length]


def vlan_tag(tci: int) -> bytes:
    """An 802.1Q tag (TPID and TCI: priority and VID, DEI clear)."""
    return struct.pack("!HH", ETH_P_8021Q, (tci >> 13) << 13 | tci & 0xFFF)


def ipv4_header(src: bytes, dst: bytes, ip_id: int, proto: int, payload_len: int, frag: int = 0) -> bytes:
    """An IPv4 header without options (``frag``: the fragment offset, in 8-byte units)."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, IPV4_HEADER + payload_len, ip_id, frag, TTL, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", inet_checksum(header)) + header[12:]


def ipv6_header(src: bytes, dst: bytes, next_header: int, payload_len: int) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len, next_header, TTL, src, dst)


def ip_packet(addresses: tuple[bytes, bytes], ip_id: int, proto: int, l4: bytes, frag: int = 0) -> bytes:
    """The EtherType, then an IPv4 or IPv6 header (by the length of the ``addresses``, source
    and destination) carrying ``l4``; ``ip_id`` and ``frag`` are IPv4's (IPv6 has neither)."""
    src, dst = addresses
    if len(src) == 16:
        return struct.pack("!H", ETH_P_IPV6) + ipv6_header(src, dst, proto, len(l4)) + l4
    return struct.pack("!H", ETH_P_IP) + ipv4_header(src, dst, ip_id, proto, len(l4), frag) + l4


def pseudo_header(addresses: tuple[bytes, bytes], proto: int, length: int) -> bytes:
    """What the transport checksum covers besides the segment (RFC 9293 §3.1, RFC 8200 §8.1)."""
    src, dst = addresses
    ipv6 = len(src) == 16
    return src + dst + (struct.pack("!IxxxB", length, proto) if ipv6 else struct.pack("!xBH", proto, length))


def tcp_segment(ports: tuple[int, int], seq: int, payload: bytes, addresses: tuple[bytes, bytes]) -> bytes:
    """A TCP segment with PSH and ACK set, its checksum over the pseudo-header of the IP
    ``addresses`` (source, destination)."""
    header = struct.pack("!HHIIBBHHH", *ports, seq, 0, (TCP_HEADER // 4) << 4, TCP_PSH_ACK, TCP_WINDOW, 0, 0)
    pseudo = pseudo_header(addresses, IPPROTO_TCP, TCP_HEADER + len(payload))
    return header[:16] + struct.pack("!H", inet_checksum(pseudo + header + payload)) + header[18:] + payload


def udp_datagram(
    ports: tuple[int, int], payload: bytes, addresses: tuple[bytes, bytes], checksum: bool = True
) -> bytes:
    """A UDP datagram, its checksum over the pseudo-header of the IP ``addresses``, or 0 (none
    sent)."""
    header = struct.pack("!HHHH", *ports, UDP_HEADER + len(payload), 0)
    pseudo = pseudo_header(addresses, IPPROTO_UDP, UDP_HEADER + len(payload))
    check = (inet_checksum(pseudo + header + payload) or 0xFFFF) if checksum else 0
    return header[:6] + struct.pack("!H", check) + payload


def icmp_echo(payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, 0, 0)
    return header[:2] + struct.pack("!H", inet_checksum(header + payload)) + header[4:] + payload
