"""The offload request of one TX descriptor chain (``docs/datapath.md``, "TX offloads").

:func:`plan` judges a chain from its descriptors alone, before any buffer is read: its
structure (ERR_LEN) and its offload request (ERR_OFFLOAD with an
:class:`~datasheet.descriptors.OffloadError`). A refused chain is not read and not sent.
:func:`apply` then turns the frame's bytes into what goes to the switch:

* IXSM: the IPv4 header checksum over IPLEN bytes at MACLEN;
* TXSM: the TCP or UDP checksum over everything from MACLEN + IPLEN to the end of the frame,
  with the pseudo-header of the addresses in the IP header (a UDP checksum of 0 is sent as
  0xFFFF);
* TSE: the payload after MACLEN + IPLEN + L4LEN cut into MSS-byte segments, each with a copy
  of the headers: IPv4 total length / IPv6 payload length of the segment, IPv4 ID + k, TCP
  sequence number + its payload offset, FIN and PSH only on the last segment, CWR only on
  the first, and both checksums computed (IPv4 header and TCP);
* VLE: the 802.1Q tag of the first data descriptor inserted after the MAC addresses of every
  frame, unless the function has a port VLAN (the switch then inserts the port's tag and the
  descriptor's is ignored, as igb does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datasheet import descriptors as d
from datasheet import device
from datasheet.descriptors import L4Type, OffloadError, TxContext
from model.core.offload import csum
from model.core.offload.packet import (
    ETH_HLEN,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HLEN,
    IPV6_HLEN,
    L4_CSUM_OFFSET,
    L4_MIN,
    TPID_8021Q,
)

CSUM_CMDS = d.TX_CMD_IXSM.mask | d.TX_CMD_TXSM.mask | d.TX_CMD_TSE.mask
PROTO = {L4Type.TCP: IPPROTO_TCP, L4Type.UDP: IPPROTO_UDP}
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80


@dataclass(frozen=True)
class TxPermits:
    """What a function may ask of its TX path: FN_OFFLOAD's TXCSUM, TSO, TXVLAN, and whether it
    has a port VLAN (SW_FN_CTRL.PVLAN_EN), which overrides VLE."""

    txcsum: bool = False
    tso: bool = False
    txvlan: bool = False
    pvlan: bool = False


@dataclass(frozen=True)
class TxPlan:
    """A chain judged: its data buffers, its request and, if refused, why."""

    buffers: tuple[tuple[int, int], ...]  # (address, length) of each data descriptor, in order
    context: TxContext | None
    cmd: int  # offload requests (TX_OFFLOAD_CMDS bits of the first data descriptor)
    vlan: int | None  # the tag to insert, None if none
    vlan_overridden: bool  # VLE asked for on a port-VLAN function: ignored
    length: int  # bytes of the frame as the buffers hold it
    error: int = 0  # 0, or the write-back status bit that refuses the chain
    reason: str = ""
    offload_error: OffloadError | None = None

    @property
    def asks_offload(self) -> bool:
        return self.context is not None or bool(self.cmd)

    @property
    def tse(self) -> bool:
        return bool(self.cmd & d.TX_CMD_TSE.mask)


Descriptor = tuple[int, int, int, int]  # datasheet.descriptors.parse_read


def plan(descs: Sequence[Descriptor], permits: TxPermits) -> TxPlan:
    """Judge the chain ``descs`` (a context descriptor, data descriptors, the last with EOP).
    Command bits are tested by their masks: this runs once per frame sent."""
    ctx_bit = d.TX_CMD_CTX.mask
    contexts = [k for k, desc in enumerate(descs) if desc[2] & ctx_bit]
    data = [desc for desc in descs if not desc[2] & ctx_bit] if contexts else descs
    buffers = tuple((addr, length) for addr, length, _, _ in data)
    total = sum(length for _, length in buffers)
    cmd = data[0][2] & d.TX_OFFLOAD_CMDS if data else 0
    context = TxContext.decode(descs[contexts[0]][0], descs[contexts[0]][1]) if contexts else None
    vle = bool(cmd & d.TX_CMD_VLE.mask)
    base = TxPlan(
        buffers,
        context,
        cmd,
        data[0][3] if vle and not permits.pvlan else None,
        vle and permits.pvlan,
        total,
    )
    last = descs[-1][2]
    if last & ctx_bit or not last & d.TX_CMD_EOP.mask or not data or any(n == 0 for _, n in buffers):
        return _refused(base, d.STATUS_ERR_LEN.mask, f"buffer lengths {[n for _, n in buffers]} or no EOP")
    if not base.tse and total > device.MAX_FRAME:
        return _refused(base, d.STATUS_ERR_LEN.mask, f"frame of {total} bytes")
    why = _offload_error(base, contexts, permits)
    if why is not None:
        error, detail = why
        return _refused(base, d.STATUS_ERR_OFFLOAD.mask, f"{error.name}: {detail}", error)
    return base


def _refused(p: TxPlan, error: int, reason: str, offload_error: OffloadError | None = None) -> TxPlan:
    return TxPlan(p.buffers, p.context, p.cmd, p.vlan, p.vlan_overridden, p.length, error, reason, offload_error)


def _offload_error(p: TxPlan, contexts: list[int], permits: TxPermits) -> tuple[OffloadError, str] | None:
    if contexts not in ([], [0]):
        return OffloadError.CONTEXT, f"context descriptors at {contexts} of the chain"
    ixsm, txsm, tse = bool(p.cmd & d.TX_CMD_IXSM.mask), bool(p.cmd & d.TX_CMD_TXSM.mask), p.tse
    if (ixsm or txsm or tse) and p.context is None:
        return OffloadError.NO_CONTEXT, "checksum or segmentation asked without a context descriptor"
    if ((ixsm or txsm) and not permits.txcsum) or (tse and not permits.tso):
        return OffloadError.NOT_PERMITTED, f"command {p.cmd:#x}"
    if p.vlan is not None and not permits.txvlan:
        return OffloadError.NOT_PERMITTED, "VLAN insertion"
    if not (ixsm or txsm or tse):
        return None
    ctx = p.context
    l3_min = IPV6_HLEN if ctx.ipv6 else IPV4_HLEN
    l4 = ctx.maclen + ctx.iplen
    if ctx.maclen < ETH_HLEN or ctx.iplen < l3_min:
        return OffloadError.OFFSETS, f"MACLEN {ctx.maclen}, IPLEN {ctx.iplen}"
    if ixsm and (ctx.ipv6 or l4 > p.length):
        return OffloadError.OFFSETS, f"IPv4 header checksum at {ctx.maclen}+{ctx.iplen} of {p.length} bytes"
    if txsm and (ctx.l4t is L4Type.NONE or l4 + L4_CSUM_OFFSET[PROTO[ctx.l4t]] + 2 > p.length):
        return OffloadError.OFFSETS, f"{ctx.l4t.name} checksum at {l4} of {p.length} bytes"
    if not tse:
        return None
    header = l4 + ctx.l4len
    if ctx.l4t is not L4Type.TCP or ctx.l4len < L4_MIN[IPPROTO_TCP]:
        return OffloadError.OFFSETS, f"TSE over {ctx.l4t.name} with L4LEN {ctx.l4len}"
    if header > p.buffers[0][1]:
        return OffloadError.HEADER_SPLIT, f"{header} header bytes, first buffer {p.buffers[0][1]}"
    if ctx.mss < device.TSO_MIN_MSS or header + ctx.mss > device.MAX_FRAME:
        return OffloadError.MSS, f"MSS {ctx.mss} with {header} header bytes"
    if not 1 <= p.length - header <= device.TSO_MAX_PAYLOAD:
        return OffloadError.TSO_LENGTH, f"payload of {p.length - header} bytes"
    return None


def apply(p: TxPlan, data: bytes) -> list[bytes]:
    """The frames a judged, accepted chain whose buffers hold ``data`` puts on the switch."""
    if p.tse:
        frames = segment(data, p.context)
    else:
        frames = [insert_checksums(data, p.context, p.cmd) if p.cmd & CSUM_CMDS else bytes(data)]
    if p.vlan is not None:
        tag = TPID_8021Q + p.vlan.to_bytes(2, "big")
        frames = [f[:12] + tag + f[12:] for f in frames]
    return frames


def _put16(buf: bytearray, offset: int, value: int) -> None:
    buf[offset : offset + 2] = value.to_bytes(2, "big")


def _addresses(buf: bytes | bytearray, ctx: TxContext) -> tuple[bytes, bytes]:
    l3 = ctx.maclen
    if ctx.ipv6:
        return bytes(buf[l3 + 8 : l3 + 24]), bytes(buf[l3 + 24 : l3 + 40])
    return bytes(buf[l3 + 12 : l3 + 16]), bytes(buf[l3 + 16 : l3 + 20])


def _ipv4_checksum(buf: bytearray, ctx: TxContext) -> None:
    l3 = ctx.maclen
    _put16(buf, l3 + 10, 0)
    _put16(buf, l3 + 10, csum.checksum(bytes(buf[l3 : l3 + ctx.iplen])))


def _l4_checksum(buf: bytearray, ctx: TxContext, proto: int) -> None:
    l4 = ctx.maclen + ctx.iplen
    field = l4 + L4_CSUM_OFFSET[proto]
    _put16(buf, field, 0)
    src, dst = _addresses(buf, ctx)
    segment = bytes(buf[l4:])
    value = csum.checksum(segment, csum.pseudo_header_sum(src, dst, proto, len(segment)))
    _put16(buf, field, 0xFFFF if proto == IPPROTO_UDP and value == 0 else value)


def insert_checksums(data: bytes, ctx: TxContext, cmd: int) -> bytes:
    buf = bytearray(data)
    if d.TX_CMD_IXSM.get(cmd):
        _ipv4_checksum(buf, ctx)
    if d.TX_CMD_TXSM.get(cmd):
        _l4_checksum(buf, ctx, PROTO[ctx.l4t])
    return bytes(buf)


def segment(data: bytes, ctx: TxContext) -> list[bytes]:
    """TCP segmentation of one frame whose headers end at MACLEN + IPLEN + L4LEN."""
    l3, l4 = ctx.maclen, ctx.maclen + ctx.iplen
    header, payload = data[: l4 + ctx.l4len], data[l4 + ctx.l4len :]
    first_id = int.from_bytes(header[l3 + 4 : l3 + 6], "big")
    first_seq = int.from_bytes(header[l4 + 4 : l4 + 8], "big")
    flags = header[l4 + 13]
    out = []
    for k, offset in enumerate(range(0, len(payload), ctx.mss)):
        chunk = payload[offset : offset + ctx.mss]
        buf = bytearray(header)
        if ctx.ipv6:
            _put16(buf, l3 + 4, ctx.iplen - IPV6_HLEN + ctx.l4len + len(chunk))
        else:
            _put16(buf, l3 + 2, ctx.iplen + ctx.l4len + len(chunk))
            _put16(buf, l3 + 4, (first_id + k) & 0xFFFF)
            _ipv4_checksum(buf, ctx)
        buf[l4 + 4 : l4 + 8] = ((first_seq + offset) & 0xFFFFFFFF).to_bytes(4, "big")
        last = offset + ctx.mss >= len(payload)
        buf[l4 + 13] = flags & ~((0 if last else TCP_FIN | TCP_PSH) | (TCP_CWR if k else 0))
        buf += chunk
        _l4_checksum(buf, ctx, IPPROTO_TCP)
        out.append(bytes(buf))
    return out
