"""What a function's receive path does to a frame the switch hands it (``docs/datapath.md``,
"RX offloads"), in this order:

1. VLAN strip (``RXVLAN``): an 802.1Q tag is removed; its TCI goes to the write-back (VP).
2. Checksums (``RXCSUM``): an IPv4 header checksum is checked (IPCS, IPE if wrong); a TCP or
   UDP checksum is checked when the transport header is present (L4CS, L4E if wrong),
   except a UDP/IPv4 checksum of 0 (none sent). Fragments and other protocols: not checked.
3. RSS (``HASH_*``): the hash type that applies (:func:`~.rss.hash_type`), the Toeplitz hash
   and the queue its indirection table names; no type (non-IP frames, types off): no hash,
   the default queue.

A frame with a bad checksum is delivered like any other, flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasheet import descriptors as d
from datasheet.descriptors import RssType
from model.core.offload import csum, packet, rss
from model.core.offload.config import FnOffloads
from model.core.offload.packet import IPPROTO_UDP, L4_CSUM_OFFSET


@dataclass(frozen=True, slots=True)
class RxResult:
    frame: bytes  # as it goes into the RX buffers
    queue: int | None  # the indirection table's queue; None: the function's default queue
    rss_hash: int
    rss_type: RssType
    vlan: int  # TCI of the stripped tag (with VP)
    status: int  # RX offload bits of the write-back status

    @property
    def info_word(self) -> int:
        return d.rx_info_word(self.rss_hash, self.rss_type, self.vlan)


def receive(frame: bytes, cfg: FnOffloads) -> RxResult:
    status = vlan = 0
    if cfg.rxvlan and len(frame) >= packet.ETH_HLEN + packet.VLAN_HLEN and frame[12:14] == packet.TPID_8021Q:
        vlan = int.from_bytes(frame[14:16], "big")
        frame = frame[:12] + frame[16:]
        status |= d.STATUS_VP.mask
    ip = packet.parse(frame) if cfg.rxcsum or cfg.hash_types else None
    if cfg.rxcsum and ip is not None:
        status |= checksum_status(frame, ip)
    kind = rss.hash_type(ip, cfg.hash_types)
    if kind is RssType.NONE:
        return RxResult(frame, None, 0, kind, vlan, status)
    value = rss.toeplitz(cfg.key, rss.hash_input(frame, ip, kind))
    return RxResult(frame, rss.select_queue(value, cfg.table), value, kind, vlan, status)


def checksum_status(frame: bytes, ip: packet.IpHeaders) -> int:
    status = 0
    if not ip.ipv6:
        status |= d.STATUS_IPCS.mask
        if not csum.ipv4_header_ok(frame[ip.l3 : ip.l3 + ip.l3_len]):
            status |= d.STATUS_IPE.mask
    if ip.l4 is None:
        return status
    segment = frame[ip.l4_offset : ip.l4_offset + ip.l4_len]
    field = segment[L4_CSUM_OFFSET[ip.l4] : L4_CSUM_OFFSET[ip.l4] + 2]
    if ip.l4 == IPPROTO_UDP and not ip.ipv6 and field == b"\0\0":
        return status  # no checksum sent (RFC 768)
    status |= d.STATUS_L4CS.mask
    if not csum.l4_ok(ip.src, ip.dst, ip.l4, segment):
        status |= d.STATUS_L4E.mask
    return status
