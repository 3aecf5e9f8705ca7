"""The receive parser: where a frame's IP and TCP/UDP headers are (``docs/datapath.md``, "RX offloads").

Ethernet II with at most one 802.1Q tag; IPv4 (version 4, IHL >= 5, header in the frame) or
IPv6 (version 6, fixed header in the frame, no extension headers parsed). The transport
header counts as present (``l4``) only for TCP or UDP, not in an IPv4 fragment, and when the
IP header's lengths fit the frame and leave room for the TCP (20) or UDP (8) header.
Anything else is not IP (``parse`` returns None).
"""

from __future__ import annotations

from dataclasses import dataclass

ETH_HLEN = 14
VLAN_HLEN = 4
TPID_8021Q = b"\x81\x00"
ETHERTYPE_IPV4 = b"\x08\x00"
ETHERTYPE_IPV6 = b"\x86\xdd"
IPV4_HLEN = 20
IPV6_HLEN = 40
IPPROTO_TCP = 6
IPPROTO_UDP = 17
#: the shortest transport header of each protocol
L4_MIN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8}
#: offset of the checksum in each transport header
L4_CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}


@dataclass(frozen=True, slots=True)
class IpHeaders:
    """Where a frame's IP packet is and what it carries."""

    ipv6: bool
    l3: int  # offset of the IP header
    l3_len: int  # IPv4: IHL x 4; IPv6: 40
    src: bytes
    dst: bytes
    fragment: bool  # IPv4 MF set or fragment offset non-zero
    l4: int | None  # IPPROTO_TCP / IPPROTO_UDP when the transport header is present, else None
    l4_len: int  # bytes of the transport segment, per the IP header (0 without l4)

    @property
    def l4_offset(self) -> int:
        return self.l3 + self.l3_len


def l3_offset(frame: bytes) -> tuple[int, bytes] | None:
    """(offset of the L3 header, EtherType) past at most one 802.1Q tag; None if too short."""
    if len(frame) < ETH_HLEN:
        return None
    if frame[12:14] == TPID_8021Q:
        if len(frame) < ETH_HLEN + VLAN_HLEN:
            return None
        return ETH_HLEN + VLAN_HLEN, frame[16:18]
    return ETH_HLEN, frame[12:14]


def parse(frame: bytes) -> IpHeaders | None:
    """The IP and transport headers of ``frame``; None if it is not an IP frame."""
    found = l3_offset(frame)
    if found is None:
        return None
    off, ethertype = found
    if ethertype == ETHERTYPE_IPV4:
        return _ipv4(frame, off)
    if ethertype == ETHERTYPE_IPV6:
        return _ipv6(frame, off)
    return None


def _ipv4(frame: bytes, off: int) -> IpHeaders | None:
    if len(frame) < off + IPV4_HLEN or frame[off] >> 4 != 4:
        return None
    ihl = (frame[off] & 0x0F) * 4
    if ihl < IPV4_HLEN or len(frame) < off + ihl:
        return None
    total = int.from_bytes(frame[off + 2 : off + 4], "big")
    fragment = bool(int.from_bytes(frame[off + 6 : off + 8], "big") & 0x3FFF)
    proto = frame[off + 9]
    l4_len = total - ihl
    present = proto in L4_MIN and not fragment and off + total <= len(frame) and l4_len >= L4_MIN[proto]
    return IpHeaders(
        False,
        off,
        ihl,
        frame[off + 12 : off + 16],
        frame[off + 16 : off + 20],
        fragment,
        proto if present else None,
        l4_len if present else 0,
    )


def _ipv6(frame: bytes, off: int) -> IpHeaders | None:
    if len(frame) < off + IPV6_HLEN or frame[off] >> 4 != 6:
        return None
    payload = int.from_bytes(frame[off + 4 : off + 6], "big")
    nh = frame[off + 6]
    present = nh in L4_MIN and off + IPV6_HLEN + payload <= len(frame) and payload >= L4_MIN[nh]
    return IpHeaders(
        True,
        off,
        IPV6_HLEN,
        frame[off + 8 : off + 24],
        frame[off + 24 : off + 40],
        False,
        nh if present else None,
        payload if present else 0,
    )
