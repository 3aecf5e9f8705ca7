"""The offloads as the documents state them (``docs/datapath.md``, "Offloads"), for the
scoreboard: written from the datasheet, not from ``model/``. Headers are read, checksums filled,
TSO segments put together and tags inserted with ``struct`` (the fields the documents name, at
their RFC offsets; the Internet checksum and pseudo-header of :mod:`tb.uvm.frames`): scapy is
not imported in the simulator. ``tests/test_offloads.py`` holds verdicts, filled checksums,
segments and tags to scapy's dissection and checksum verification.

* :func:`toeplitz` -- its own Toeplitz hash (a bit string walked left to right);
* :func:`rx_predict` -- what a function's receive path must do to a frame (VLAN strip,
  checksum verdicts, RSS hash, type and queue), given the function's configuration as its
  driver set it (:class:`RxView`);
* :func:`tx_predict` -- the frames a TX request (checksum, TSO, VLAN insertion, as a
  protocol stack asks them of a driver: :class:`TxRequest`) must put on the switch;
* :func:`tx_refusal` -- whether a hand-made descriptor chain must be refused, and why.

``tests/test_offloads.py`` checks it against the published Toeplitz vectors and against
scapy's own checksum verification, without a simulator.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from datasheet import descriptors as d
from datasheet import device
from datasheet.descriptors import L4Type, OffloadError, RssType
from tb.uvm.frames import IPPROTO_TCP, IPPROTO_UDP, IPV4_CHECKSUM_AT, L4_CHECKSUM_AT, inet_checksum, pseudo_header

ETH_P_8021Q = 0x8100
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
TCP_MIN, UDP_MIN = 20, 8
IPV6_HEADER = 40
#: the EtherType's offset in a frame, and the 802.1Q tag's (TPID and TCI) length
ETHERTYPE_AT, TAG_LEN = 12, 4
IP_MF, IP_OFFSET = 0x2000, 0x1FFF  # IPv4 flags and fragment offset (RFC 791 §3.1)
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80  # TCP flags (RFC 9293 §3.1, RFC 3168 §6.1)
TCP_CHECKSUM_AT = L4_CHECKSUM_AT[IPPROTO_TCP]

#: L3/L4 classes the coverage and the checks speak of
IPV4_TCP, IPV4_UDP, IPV6_TCP, IPV6_UDP = "ipv4_tcp", "ipv4_udp", "ipv6_tcp", "ipv6_udp"
IPV4_FRAG, IPV4_OTHER, IPV6_OTHER, NON_IP = "ipv4_frag", "ipv4_other", "ipv6_other", "non_ip"
L3L4_CLASSES = (IPV4_TCP, IPV4_UDP, IPV6_TCP, IPV6_UDP, IPV4_FRAG, IPV4_OTHER, IPV6_OTHER, NON_IP)


def toeplitz(key: bytes, data: bytes) -> int:
    """Microsoft's ComputeHash: for each input bit from the left, if set, XOR in the leftmost
    32 bits of K; shift K left by one."""
    key_bits = "".join(f"{b:08b}" for b in key)
    result = 0
    for i, bit in enumerate("".join(f"{b:08b}" for b in data)):
        if bit == "1":
            result ^= int(key_bits[i : i + 32], 2)
    return result


@dataclass(frozen=True)
class RxView:
    """A function's receive offloads as its driver configured them."""

    hash_types: frozenset = frozenset()  # RssType values enabled
    key: bytes = bytes(device.RSS_KEY_SIZE)
    table: tuple = (0,) * device.RSS_RETA_SIZE
    rxcsum: bool = False
    strip: bool = False
    default_queue: int = 0
    num_queues: int = device.VF_QUEUE_PAIRS


@dataclass(frozen=True)
class RxExpect:
    """What the function's net device must get: the bytes, the queue and the write-back report."""

    frame: bytes
    queue: int
    rss_hash: int
    rss_type: int
    vlan: int | None
    ip_checksum: str | None  # good / bad / None (not checked)
    l4_checksum: str | None
    l3l4: str  # the frame's class (L3L4_CLASSES)


@dataclass
class _Ip:
    ipv6: bool
    src: bytes  # the source and destination addresses, as sent
    dst: bytes
    fragment: bool
    proto: int
    segment: bytes | None  # the transport segment when its header counts as present, else None
    header_ok: bool | None  # IPv4 header checksum verdict

    @functools.cached_property
    def l4_verdict(self) -> str | None:
        return _l4_verdict(self)


def _vlan(frame: bytes) -> tuple[bytes, int | None]:
    """(frame without its 802.1Q tag, the TCI) when tagged, else (frame, None)."""
    tci = ETHERTYPE_AT + 2  # the tag: TPID where the EtherType was, then the TCI
    if len(frame) < tci + TAG_LEN or int.from_bytes(frame[ETHERTYPE_AT:tci], "big") != ETH_P_8021Q:
        return frame, None
    return frame[:ETHERTYPE_AT] + frame[ETHERTYPE_AT + TAG_LEN :], int.from_bytes(frame[tci : tci + 2], "big")


def _l3(frame: bytes) -> tuple[int, int]:
    """(EtherType, offset of the L3 header) of a frame, after at most one 802.1Q tag."""
    ethertype = int.from_bytes(frame[ETHERTYPE_AT : ETHERTYPE_AT + 2], "big")
    if ethertype == ETH_P_8021Q:
        inner = ETHERTYPE_AT + TAG_LEN
        return int.from_bytes(frame[inner : inner + 2], "big"), inner + 2
    return ethertype, ETHERTYPE_AT + 2


def _addresses(header: bytes, ipv6: bool) -> tuple[bytes, bytes]:
    """(source, destination) of an IPv6 or IPv4 header (RFC 8200 §3, RFC 791 §3.1)."""
    return (header[8:24], header[24:40]) if ipv6 else (header[12:16], header[16:20])


def _ip(frame: bytes) -> _Ip | None:
    """The IP packet of a frame (after at most one 802.1Q tag), per the documented parser rules."""
    return _parse_ip(bytes(frame))


#: frames parsed lately: a frame is predicted for each function it reaches and classified for
#: the coverage, and each of those asks for its IP packet (read only: nothing changes a parse;
#: the checksum verdict is worked out once per parse, when first asked)
PARSED_FRAMES = 256


@functools.lru_cache(maxsize=PARSED_FRAMES)
def _parse_ip(frame: bytes) -> _Ip | None:
    ethertype, l3 = _l3(frame)
    raw = frame[l3:]
    if ethertype == ETH_P_IP and len(raw) >= 20 and raw[0] >> 4 == 4:
        ihl = (raw[0] & 0xF) * 4
        if ihl < 20 or len(raw) < ihl:
            return None
        total, flags_offset, proto = struct.unpack_from("!2xH2xH1xB", raw)
        fragment = bool(flags_offset & (IP_MF | IP_OFFSET))
        minimum = TCP_MIN if proto == IPPROTO_TCP else UDP_MIN
        present = proto in L4_CHECKSUM_AT and not fragment and ihl + minimum <= total <= len(raw)
        segment = raw[ihl:total] if present else None
        return _Ip(False, *_addresses(raw, False), fragment, proto, segment, inet_checksum(raw[:ihl]) == 0)
    if ethertype == ETH_P_IPV6 and len(raw) >= IPV6_HEADER and raw[0] >> 4 == 6:
        plen, nh = struct.unpack_from("!4xHB", raw)
        minimum = TCP_MIN if nh == IPPROTO_TCP else UDP_MIN
        present = nh in L4_CHECKSUM_AT and minimum <= plen and IPV6_HEADER + plen <= len(raw)
        segment = raw[IPV6_HEADER : IPV6_HEADER + plen] if present else None
        return _Ip(True, *_addresses(raw, True), False, nh, segment, None)
    return None


def l3l4_class(frame: bytes) -> str:
    ip = _ip(frame)
    if ip is None:
        return NON_IP
    if ip.fragment:
        return IPV4_FRAG
    if ip.segment is None:
        return IPV6_OTHER if ip.ipv6 else IPV4_OTHER
    return {
        (False, IPPROTO_TCP): IPV4_TCP,
        (False, IPPROTO_UDP): IPV4_UDP,
        (True, IPPROTO_TCP): IPV6_TCP,
        (True, IPPROTO_UDP): IPV6_UDP,
    }[ip.ipv6, ip.proto]


def _l4_verdict(ip: _Ip) -> str | None:
    """The transport checksum over the pseudo-header and the segment (RFC 9293 §3.1, RFC 768,
    RFC 8200 §8.1): it sums to zero when the segment arrived as sent."""
    segment = ip.segment
    if segment is None:
        return None
    if ip.proto == IPPROTO_UDP and not ip.ipv6 and segment[6:8] == b"\0\0":
        return None  # no checksum sent
    value = inet_checksum(pseudo_header((ip.src, ip.dst), ip.proto, len(segment)) + segment)
    return "good" if value == 0 else "bad"


_TYPES = {
    (False, IPPROTO_TCP): RssType.IPV4_TCP,
    (False, IPPROTO_UDP): RssType.IPV4_UDP,
    (True, IPPROTO_TCP): RssType.IPV6_TCP,
    (True, IPPROTO_UDP): RssType.IPV6_UDP,
}


def rss_of(frame: bytes, view: RxView) -> tuple[int, int]:
    """(RssType, hash) the documents give ``frame`` under ``view``'s hash types and key."""
    ip = _ip(frame)
    if ip is None or not view.hash_types:
        return RssType.NONE, 0
    kind = RssType.NONE
    if ip.segment is not None and _TYPES[ip.ipv6, ip.proto] in view.hash_types:
        kind = _TYPES[ip.ipv6, ip.proto]
    elif (RssType.IPV6 if ip.ipv6 else RssType.IPV4) in view.hash_types:
        kind = RssType.IPV6 if ip.ipv6 else RssType.IPV4
    if kind is RssType.NONE:
        return kind, 0
    data = ip.src + ip.dst
    if kind not in (RssType.IPV4, RssType.IPV6):
        data += ip.segment[:4]  # source and destination port
    return kind, toeplitz(view.key, data)


def rx_predict(frame: bytes, view: RxView) -> RxExpect:
    """What the receive path of a function configured as ``view`` must make of ``frame``."""
    frame = bytes(frame)
    vlan = None
    if view.strip:
        frame, vlan = _vlan(frame)
    ip = _ip(frame) if (view.rxcsum or view.hash_types) else None
    ip_verdict = l4_verdict = None
    if view.rxcsum and ip is not None:
        if not ip.ipv6:
            ip_verdict = "good" if ip.header_ok else "bad"
        l4_verdict = ip.l4_verdict
    kind, value = rss_of(frame, view)
    if kind is RssType.NONE:
        queue = view.default_queue
    else:
        queue = view.table[value % device.RSS_RETA_SIZE]
    if queue >= view.num_queues:
        queue = 0
    return RxExpect(frame, queue, value, int(kind), vlan, ip_verdict, l4_verdict, l3l4_class(frame))


# -- TX ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TxRequest:
    """What a protocol stack asks of a driver for one frame (skb): checksums (CHECKSUM_PARTIAL:
    the TCP/UDP checksum, and the IPv4 header checksum), TCP segmentation (``gso_size``), an
    802.1Q tag to insert (``vlan``, a TCI)."""

    csum: bool = False
    gso_size: int = 0
    vlan: int | None = None

    @property
    def any(self) -> bool:
        return self.csum or bool(self.gso_size) or self.vlan is not None


def _with_tag(frame: bytes, tci: int) -> bytes:
    """``frame`` with an 802.1Q tag (TPID, then ``tci``: priority, DEI, VID) after its source address."""
    return frame[:ETHERTYPE_AT] + struct.pack("!HH", ETH_P_8021Q, tci & 0xFFFF) + frame[ETHERTYPE_AT:]


def _fill_l4(out: bytearray, at: int, proto: int, segment: bytes, pseudo: bytes) -> None:
    """Write the TCP or UDP checksum of ``segment`` (at ``at`` in ``out``) over ``pseudo`` and the
    segment with its checksum field zero; a UDP checksum that computes to 0 is sent as 0xFFFF
    (RFC 768)."""
    field = L4_CHECKSUM_AT[proto]
    check = inet_checksum(pseudo + segment[:field] + b"\0\0" + segment[field + 2 :])
    if proto == IPPROTO_UDP and check == 0:
        check = 0xFFFF
    out[at + field : at + field + 2] = check.to_bytes(2, "big")


def with_checksums(frame: bytes) -> bytes:
    """``frame`` with the checksums a stack leaves to the device filled in: the IPv4 header's
    (RFC 791 §3.1) and the TCP or UDP one of an IPv4 packet that is not a later fragment or of an
    IPv6 packet without extension headers, over the pseudo-header (RFC 9293 §3.1, RFC 768,
    RFC 8200 §8.1) and what the IP length says the segment holds."""
    ethertype, l3 = _l3(frame)
    out = bytearray(frame)
    if ethertype == ETH_P_IP and len(frame) >= l3 + 20:
        ihl = (frame[l3] & 0xF) * 4
        at = l3 + IPV4_CHECKSUM_AT
        out[at : at + 2] = inet_checksum(frame[l3:at] + b"\0\0" + frame[at + 2 : l3 + ihl]).to_bytes(2, "big")
        total, flags_offset, proto = struct.unpack_from("!2xH2xH1xB", frame, l3)
        if not flags_offset & IP_OFFSET and proto in L4_CHECKSUM_AT:
            segment = frame[l3 + ihl : l3 + max(total, ihl)]
            pseudo = pseudo_header(_addresses(frame[l3:], False), proto, max(total - ihl, 0))
            _fill_l4(out, l3 + ihl, proto, segment, pseudo)
    elif ethertype == ETH_P_IPV6 and len(frame) >= l3 + IPV6_HEADER:
        plen, nh = struct.unpack_from("!4xHB", frame, l3)
        if nh in L4_CHECKSUM_AT:
            segment = frame[l3 + IPV6_HEADER : l3 + IPV6_HEADER + plen]
            pseudo = pseudo_header(_addresses(frame[l3:], True), nh, len(segment))
            _fill_l4(out, l3 + IPV6_HEADER, nh, segment, pseudo)
    return bytes(out)


def tx_segments(frame: bytes, mss: int) -> list[bytes]:
    """Linux-style TCP segmentation of ``frame`` (after at most one 802.1Q tag, IPv4 or IPv6 without
    extension headers): the payload (what follows the TCP header) in ``mss`` pieces, each behind a
    copy of the frame's headers with the IPv4 ID incremented per segment, the sequence number
    advanced, FIN/PSH on the last segment only, CWR on the first only, the IP length and every
    checksum recomputed (IPv4 header, TCP over its pseudo-header)."""
    ethertype, l3 = _l3(frame)
    ipv6 = ethertype == ETH_P_IPV6
    iplen = IPV6_HEADER if ipv6 else (frame[l3] & 0xF) * 4
    l4 = l3 + iplen
    thl = (frame[l4 + 12] >> 4) * 4
    ip, tcp, payload = frame[l3:l4], frame[l4 : l4 + thl], frame[l4 + thl :]
    addresses = _addresses(ip, ipv6)
    seq, flags = int.from_bytes(tcp[4:8], "big"), tcp[13]
    ip_id = 0 if ipv6 else int.from_bytes(ip[4:6], "big")
    out = []
    for k, offset in enumerate(range(0, len(payload), mss)):
        piece = payload[offset : offset + mss]
        seg_flags = flags
        if offset + mss < len(payload):
            seg_flags &= ~(TCP_FIN | TCP_PSH)
        if k:
            seg_flags &= ~TCP_CWR
        head = tcp[:4] + ((seq + offset) % (1 << 32)).to_bytes(4, "big") + tcp[8:13] + bytes((seg_flags,))
        head += tcp[14:TCP_CHECKSUM_AT] + b"\0\0" + tcp[TCP_CHECKSUM_AT + 2 :]
        check = inet_checksum(pseudo_header(addresses, IPPROTO_TCP, thl + len(piece)) + head + piece)
        head = head[:TCP_CHECKSUM_AT] + check.to_bytes(2, "big") + head[TCP_CHECKSUM_AT + 2 :]
        if ipv6:
            header = ip[:4] + (thl + len(piece)).to_bytes(2, "big") + ip[6:]
        else:
            header = ip[:2] + struct.pack("!HH", iplen + thl + len(piece), (ip_id + k) & 0xFFFF) + ip[6:10]
            header += b"\0\0" + ip[IPV4_CHECKSUM_AT + 2 :]
            header = (
                header[:IPV4_CHECKSUM_AT] + inet_checksum(header).to_bytes(2, "big") + header[IPV4_CHECKSUM_AT + 2 :]
            )
        out.append(frame[:l3] + header + head + piece)
    return out


def tx_predict(frame: bytes, request: TxRequest, pvid: int | None = None) -> list[bytes]:
    """The frames that must enter the switch from a function (with port VLAN ``pvid``, which the
    switch tags itself and which overrides the requested tag) for ``frame`` sent with ``request``."""
    frame = bytes(frame)
    if request.gso_size:
        frames = tx_segments(frame, request.gso_size)
    elif request.csum:
        frames = [with_checksums(frame)]
    else:
        frames = [frame]
    if request.vlan is not None and pvid is None:
        frames = [_with_tag(f, request.vlan) for f in frames]
    return frames


# -- hand-made chains -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainDesc:
    """One descriptor of a hand-made TX chain, as the tb writes it."""

    length: int = 0  # data length (0 for a context descriptor)
    eop: bool = False
    offloads: int = 0  # VLE / IXSM / TXSM / TSE bits
    context: d.TxContext | None = None  # set: this is a context descriptor


@dataclass(frozen=True)
class Permits:
    txcsum: bool = False
    tso: bool = False
    txvlan: bool = False
    pvlan: bool = False


@dataclass(frozen=True)
class Refusal:
    status: str  # "ERR_LEN" or "ERR_OFFLOAD"
    reason: OffloadError | None = None


_CSUM_FIELD = {L4Type.TCP: L4_CHECKSUM_AT[IPPROTO_TCP], L4Type.UDP: L4_CHECKSUM_AT[IPPROTO_UDP]}


def tx_refusal(chain: Sequence[ChainDesc], permits: Permits) -> Refusal | None:
    """Whether the device must refuse ``chain`` (a closed chain: ended by EOP or at
    TX_MAX_FRAME_DESCS descriptors), and with which status and OffloadError, from the
    datasheet's rules; None if it must send it."""
    data = [c for c in chain if c.context is None]
    last = chain[-1]
    if last.context is not None or not last.eop or not data or any(c.length == 0 for c in data):
        return Refusal("ERR_LEN")
    first = data[0]
    total = sum(c.length for c in data)
    ixsm, txsm, tse, vle = (
        bool(first.offloads & f.mask) for f in (d.TX_CMD_IXSM, d.TX_CMD_TXSM, d.TX_CMD_TSE, d.TX_CMD_VLE)
    )
    if not tse and total > device.MAX_FRAME:
        return Refusal("ERR_LEN")
    where = [k for k, c in enumerate(chain) if c.context is not None]
    ctx = chain[where[0]].context if where else None

    def refuse(reason: OffloadError) -> Refusal:
        return Refusal("ERR_OFFLOAD", reason)

    if where and where != [0]:
        return refuse(OffloadError.CONTEXT)
    if (ixsm or txsm or tse) and ctx is None:
        return refuse(OffloadError.NO_CONTEXT)
    if ((ixsm or txsm) and not permits.txcsum) or (tse and not permits.tso):
        return refuse(OffloadError.NOT_PERMITTED)
    if vle and not permits.pvlan and not permits.txvlan:
        return refuse(OffloadError.NOT_PERMITTED)
    if not (ixsm or txsm or tse):
        return None
    ip_end = ctx.maclen + ctx.iplen
    if ctx.maclen < 14 or ctx.iplen < (40 if ctx.ipv6 else 20):
        return refuse(OffloadError.OFFSETS)
    if ixsm and (ctx.ipv6 or ip_end > total):
        return refuse(OffloadError.OFFSETS)
    if txsm and (ctx.l4t == L4Type.NONE or ip_end + _CSUM_FIELD[ctx.l4t] + 2 > total):
        return refuse(OffloadError.OFFSETS)
    if not tse:
        return None
    headers = ip_end + ctx.l4len
    if ctx.l4t != L4Type.TCP or ctx.l4len < 20:
        return refuse(OffloadError.OFFSETS)
    if headers > first.length:
        return refuse(OffloadError.HEADER_SPLIT)
    if ctx.mss < device.TSO_MIN_MSS or headers + ctx.mss > device.MAX_FRAME:
        return refuse(OffloadError.MSS)
    if not 1 <= total - headers <= device.TSO_MAX_PAYLOAD:
        return refuse(OffloadError.TSO_LENGTH)
    return None
