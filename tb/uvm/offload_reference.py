"""The offloads as the documents state them (``docs/datapath.md``, "Offloads"), for the
scoreboard: written from the datasheet with scapy doing the packet work, not from ``model/``.

* :func:`toeplitz` -- its own Toeplitz hash (a bit string walked left to right);
* :func:`rx_predict` -- what a function's receive path must do to a frame (VLAN strip,
  checksum verdicts, RSS hash, type and queue), given the function's configuration as its
  driver set it (:class:`RxView`);
* :func:`tx_predict` -- the frames a TX request (checksum, TSO, VLAN insertion, as a
  protocol stack asks them of a driver: :class:`TxRequest`) must put on the switch, built
  by scapy: checksums recomputed by scapy, segments cut by scapy;
* :func:`tx_refusal` -- whether a hand-made descriptor chain must be refused, and why.

``tests/test_offloads.py`` checks it against the published Toeplitz vectors and against
scapy's own checksum verification, without a simulator.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum as inet_checksum

from datasheet import descriptors as d
from datasheet import device
from datasheet.descriptors import L4Type, OffloadError, RssType

ETH_P_8021Q = 0x8100
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
TCP_MIN, UDP_MIN = 20, 8

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
    layer: object  # the scapy IP / IPv6 header (dissected without its payload)
    fragment: bool
    proto: int
    segment: bytes | None  # the transport segment when its header counts as present, else None
    header_ok: bool | None  # IPv4 header checksum verdict

    @functools.cached_property
    def transport(self):
        """The scapy TCP or UDP header of ``segment`` (present), dissected without its payload:
        the ports and checksum field are all that is read of it."""
        return TCP(self.segment[:TCP_MIN]) if self.proto == 6 else UDP(self.segment[:UDP_MIN])

    @functools.cached_property
    def l4_verdict(self) -> str | None:
        return _l4_verdict(self)

    @property
    def src(self) -> bytes:
        return socket.inet_pton(socket.AF_INET6 if self.ipv6 else socket.AF_INET, self.layer.src)

    @property
    def dst(self) -> bytes:
        return socket.inet_pton(socket.AF_INET6 if self.ipv6 else socket.AF_INET, self.layer.dst)


def _vlan(frame: bytes) -> tuple[bytes, int | None]:
    """(frame without its 802.1Q tag, the TCI) when tagged, else (frame, None)."""
    if len(frame) < 18 or Ether(frame[:14]).type != ETH_P_8021Q:
        return frame, None
    tag = Dot1Q(frame[14:18])
    return frame[:12] + frame[16:], tag.prio << 13 | tag.dei << 12 | tag.vlan


def _ip(frame: bytes) -> _Ip | None:
    """The IP packet of a frame (after at most one 802.1Q tag), per the documented parser rules."""
    return _parse_ip(bytes(frame))


#: frames parsed lately: a frame is predicted for each function it reaches and classified for
#: the coverage, and each of those asks for its IP packet (read only: nothing changes a parse;
#: the transport header and checksum verdict are worked out once per parse, when first asked)
PARSED_FRAMES = 256


@functools.lru_cache(maxsize=PARSED_FRAMES)
def _parse_ip(frame: bytes) -> _Ip | None:
    if len(frame) < 14:
        return None
    eth = Ether(frame[:14])
    ethertype, l3 = eth.type, 14
    if ethertype == ETH_P_8021Q:
        if len(frame) < 18:
            return None
        ethertype, l3 = Dot1Q(frame[14:18]).type, 18
    raw = frame[l3:]
    if ethertype == ETH_P_IP and len(raw) >= 20 and raw[0] >> 4 == 4:
        ihl = (raw[0] & 0xF) * 4
        if ihl < 20 or len(raw) < ihl:
            return None
        ip = IP(raw[:ihl])  # the header alone: its fields are all that is read (not the payload's layers)
        fragment = bool(ip.flags.MF) or ip.frag != 0
        minimum = TCP_MIN if ip.proto == 6 else UDP_MIN
        present = ip.proto in (6, 17) and not fragment and ihl + minimum <= ip.len <= len(raw)
        return _Ip(False, ip, fragment, ip.proto, raw[ihl : ip.len] if present else None, inet_checksum(raw[:ihl]) == 0)
    if ethertype == ETH_P_IPV6 and len(raw) >= 40 and raw[0] >> 4 == 6:
        ip6 = IPv6(raw[:40])
        minimum = TCP_MIN if ip6.nh == 6 else UDP_MIN
        present = ip6.nh in (6, 17) and minimum <= ip6.plen and 40 + ip6.plen <= len(raw)
        return _Ip(True, ip6, False, ip6.nh, raw[40 : 40 + ip6.plen] if present else None, None)
    return None


def l3l4_class(frame: bytes) -> str:
    ip = _ip(frame)
    if ip is None:
        return NON_IP
    if ip.fragment:
        return IPV4_FRAG
    if ip.segment is None:
        return IPV6_OTHER if ip.ipv6 else IPV4_OTHER
    return {(False, 6): IPV4_TCP, (False, 17): IPV4_UDP, (True, 6): IPV6_TCP, (True, 17): IPV6_UDP}[ip.ipv6, ip.proto]


def _l4_verdict(ip: _Ip) -> str | None:
    if ip.segment is None:
        return None
    if ip.proto == 17 and not ip.ipv6 and ip.transport.chksum == 0:
        return None  # no checksum sent
    value = (in6_chksum if ip.ipv6 else in4_chksum)(ip.proto, ip.layer, ip.segment)
    return "good" if value == 0 else "bad"


_TYPES = {
    (False, 6): RssType.IPV4_TCP,
    (False, 17): RssType.IPV4_UDP,
    (True, 6): RssType.IPV6_TCP,
    (True, 17): RssType.IPV6_UDP,
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
        layer = ip.transport
        data += layer.sport.to_bytes(2, "big") + layer.dport.to_bytes(2, "big")
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
    eth = Ether(frame)
    tagged = Ether(dst=eth.dst, src=eth.src, type=ETH_P_8021Q) / Dot1Q(
        prio=tci >> 13, dei=(tci >> 12) & 1, vlan=tci & 0xFFF, type=eth.type
    )
    return bytes(tagged / eth.payload)


def _recompute(pkt, ip_header: bool = True):
    """Delete the fields scapy must recompute: IPv4 total length and checksum (or IPv6 payload
    length) and the transport checksum."""
    if pkt.haslayer(IP):
        del pkt[IP].len
        if ip_header:
            del pkt[IP].chksum
    if pkt.haslayer(IPv6):
        del pkt[IPv6].plen
    for layer in (TCP, UDP):
        if pkt.haslayer(layer):
            del pkt[layer].chksum
    return pkt


def tx_segments(frame: bytes, mss: int) -> list[bytes]:
    """Linux-style TCP segmentation of ``frame`` by scapy: the payload in ``mss`` pieces, the IPv4 ID
    incremented per segment, the sequence number advanced, FIN/PSH on the last segment only, CWR on
    the first only, every length and checksum recomputed."""
    pkt = Ether(frame)
    tcp = pkt[TCP]
    payload = bytes(tcp.payload)
    headers = _recompute(pkt.copy())  # every segment's headers, before their own fields
    headers[TCP].remove_payload()
    out = []
    for k, offset in enumerate(range(0, len(payload), mss)):
        seg = headers.copy()
        seg[TCP].seq = (tcp.seq + offset) % (1 << 32)
        flags = int(tcp.flags)
        if offset + mss < len(payload):
            flags &= ~0x09  # FIN, PSH
        if k:
            flags &= ~0x80  # CWR
        seg[TCP].flags = flags
        if seg.haslayer(IP):
            seg[IP].id = (pkt[IP].id + k) & 0xFFFF
        seg.add_payload(Raw(payload[offset : offset + mss]))  # ``seg / Raw(...)`` copied seg once more
        out.append(bytes(seg))
    return out


def tx_predict(frame: bytes, request: TxRequest, pvid: int | None = None) -> list[bytes]:
    """The frames that must enter the switch from a function (with port VLAN ``pvid``, which the
    switch tags itself and which overrides the requested tag) for ``frame`` sent with ``request``."""
    frame = bytes(frame)
    if request.gso_size:
        frames = tx_segments(frame, request.gso_size)
    elif request.csum:
        pkt = Ether(frame)
        if pkt.haslayer(IP):
            del pkt[IP].chksum
        for layer in (TCP, UDP):
            if pkt.haslayer(layer):
                del pkt[layer].chksum
        frames = [bytes(pkt)]
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


_CSUM_FIELD = {L4Type.TCP: 16, L4Type.UDP: 6}


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
